package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// Subjects. Producers publish events to arbiter.events.<anything> (for example
// arbiter.events.payments) and outcomes to arbiter.outcomes.<anything>.
const (
	SubjectEvents      = "arbiter.events.>"
	SubjectOutcomes    = "arbiter.outcomes.>"
	SubjectDecisions   = "arbiter.decisions"   // .<action>: retry, message, escalate, suppress
	SubjectRevocations = "arbiter.revocations" // .<customer> (SubjectToken)
	SubjectDead        = "arbiter.dead"        // .<reason>
)

// Streams the edge creates or checks at Setup.
const (
	StreamEvents      = "ARBITER_EVENTS"
	StreamOutcomes    = "ARBITER_OUTCOMES"
	StreamDecisions   = "ARBITER_DECISIONS"
	StreamRevocations = "ARBITER_REVOCATIONS"
	StreamDead        = "ARBITER_DEAD"
)

// Durable consumers of the edge; every replica of the service shares them.
const (
	ConsumerEvents   = "arbiter-decide"
	ConsumerOutcomes = "arbiter-outcomes"
)

// Headers of the messages the edge publishes.
const (
	HeaderContentType   = "Content-Type"
	HeaderDecisionID    = "Arbiter-Decision-Id"
	HeaderEventID       = "Arbiter-Event-Id"
	HeaderCustomerID    = "Arbiter-Customer-Id"
	HeaderAction        = "Arbiter-Action"
	HeaderPolicyID      = "Arbiter-Policy-Id"
	HeaderPolicyVersion = "Arbiter-Policy-Version"
	HeaderDegraded      = "Arbiter-Degraded" // "true" on a degraded decision (WithDegraded)
	// Dead letters: the error, where the message came from, how often it was delivered, and
	// whether its payload was withheld (it held a card number).
	HeaderError     = "Arbiter-Error"
	HeaderSubject   = "Arbiter-Subject"
	HeaderStream    = "Arbiter-Stream"
	HeaderSequence  = "Arbiter-Stream-Sequence"
	HeaderDelivered = "Arbiter-Delivered"
	HeaderWithheld  = "Arbiter-Payload-Withheld"
)

// Dead-letter reasons: the last token of arbiter.dead.<reason>.
const (
	DeadDecode        = "decode"        // not the expected message in its Content-Type, or too large
	DeadInvalid       = "invalid"       // a field is invalid (the error names it)
	DeadCardNumber    = "card_number"   // a field holds a card number; the payload is withheld
	DeadNotFound      = "not_found"     // an outcome for a decision the store does not know
	DeadUndeliverable = "undeliverable" // failed for an unexpected reason on every delivery
)

var deadReasons = []string{DeadDecode, DeadInvalid, DeadCardNumber, DeadNotFound, DeadUndeliverable}

// Service is what the edge decides and records through: the DecisionService implementation,
// called in process, so that the stream and the RPC share validation, idempotency and
// guardrails. *server.Server satisfies it. Errors are gRPC statuses, as the RPCs return them.
type Service interface {
	Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error)
	RecordOutcome(ctx context.Context, req *arbiterv1.RecordOutcomeRequest) (*arbiterv1.RecordOutcomeResponse, error)
}

// consumerKind is one of the edge's two consumers.
type consumerKind uint8

const (
	consumerEvents consumerKind = iota
	consumerOutcomes
	consumerCount
)

var consumerNames = [consumerCount]string{"events", "outcomes"}

// Edge is the streaming edge: create it with New, call Setup once, then Run. It is safe for
// concurrent use.
type Edge struct {
	js      jetstream.JetStream
	svc     Service
	opts    options
	enc     encoder
	metrics *metrics
}

// New returns an Edge that consumes and publishes over the JetStream of nc and decides
// through svc.
func New(nc *nats.Conn, svc Service, opts ...Option) (*Edge, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	m, err := newMetrics(o.meterProvider)
	if err != nil {
		// Only an invalid instrument definition fails, which is a bug caught by the tests.
		o.logger.Error("create stream metrics", "err", err)
		m, _ = newMetrics(metricnoop.NewMeterProvider())
	}
	return &Edge{js: js, svc: svc, opts: o, enc: newEncoder(o.encoding), metrics: m}, nil
}

// streamConfigs returns the configurations of the streams the edge needs.
func (e *Edge) streamConfigs() []jetstream.StreamConfig {
	o := e.opts
	cfg := func(name, subject string, maxAge, dup time.Duration) jetstream.StreamConfig {
		return jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, MaxAge: maxAge, Duplicates: dup, Replicas: o.replicas}
	}
	return []jetstream.StreamConfig{
		cfg(StreamEvents, SubjectEvents, o.maxAge, 2*time.Minute),
		cfg(StreamOutcomes, SubjectOutcomes, o.maxAge, 2*time.Minute),
		cfg(StreamDecisions, SubjectDecisions+".>", o.maxAge, o.duplicateWindow),
		cfg(StreamRevocations, SubjectRevocations+".>", o.maxAge, o.duplicateWindow),
		cfg(StreamDead, SubjectDead+".>", 4*o.maxAge, o.duplicateWindow),
	}
}

// Setup creates the streams and the durable consumers the edge needs, or checks the streams
// that exist: a stream of the same name must capture the same subjects (an operator's other
// settings, such as retention or replicas, are kept). A duplicate window shorter than the
// edge's is logged, as it shortens the exactly-once guarantee.
func (e *Edge) Setup(ctx context.Context) error {
	for _, cfg := range e.streamConfigs() {
		s, err := e.js.CreateStream(ctx, cfg)
		if err == nil {
			continue
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		if s, err = e.js.Stream(ctx, cfg.Name); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		have := s.CachedInfo().Config
		if !slices.Contains(have.Subjects, cfg.Subjects[0]) {
			return fmt.Errorf("stream %s exists with subjects %v: want it to capture %s", cfg.Name, have.Subjects, cfg.Subjects[0])
		}
		if have.Duplicates < cfg.Duplicates {
			e.opts.logger.Warn("stream duplicate window shorter than the edge's: a decision republished after it is not dropped",
				"stream", cfg.Name, "duplicates", have.Duplicates.String(), "want", cfg.Duplicates.String())
		}
	}
	for _, c := range []struct{ stream, name, subject string }{
		{StreamEvents, ConsumerEvents, SubjectEvents},
		{StreamOutcomes, ConsumerOutcomes, SubjectOutcomes},
	} {
		if _, err := e.js.CreateOrUpdateConsumer(ctx, c.stream, e.consumerConfig(c.name, c.subject)); err != nil {
			return fmt.Errorf("consumer %s on %s: %w", c.name, c.stream, err)
		}
	}
	return nil
}

func (e *Edge) consumerConfig(name, subject string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "Arbiter's streaming edge (docs/streams.md)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.opts.ackWait,
		MaxAckPending: e.opts.maxAckPending,
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1, // the edge dead-letters what keeps failing itself
	}
}

// Run consumes events and outcomes until ctx is done, then stops pulling, lets the messages in
// hand finish (each within the call timeout), hands back the ones buffered, and returns nil.
// Setup must have run. It returns an error only when a consumer cannot be found at all.
func (e *Edge) Run(ctx context.Context) error {
	events, err := e.js.Consumer(ctx, StreamEvents, ConsumerEvents)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ConsumerEvents, err)
	}
	outcomes, err := e.js.Consumer(ctx, StreamOutcomes, ConsumerOutcomes)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ConsumerOutcomes, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { e.consume(ctx, consumerEvents, events, e.handleEvent) })
	wg.Go(func() { e.consume(ctx, consumerOutcomes, outcomes, e.handleOutcome) })
	wg.Go(func() { e.pollLag(ctx, consumerEvents, events) })
	wg.Go(func() { e.pollLag(ctx, consumerOutcomes, outcomes) })
	wg.Wait()
	return nil
}

// verdict is what became of one message.
type verdict uint8

const (
	verdictDone  verdict = iota // acknowledged (decided, recorded or dead-lettered)
	verdictRetry                // handed back for redelivery
	verdictPause                // handed back; the service is out: pause the consumer
	verdictShed                 // handed back: the service sheds load; tried again after its delay
)

type handler func(ctx context.Context, msg jetstream.Msg) (verdict, error)

// consume runs consumer c until ctx is done, pausing while the service is out.
func (e *Edge) consume(ctx context.Context, c consumerKind, cons jetstream.Consumer, handle handler) {
	log := e.opts.logger.With("consumer", consumerNames[c])
	for ctx.Err() == nil {
		cause := e.pull(ctx, c, cons, handle)
		if ctx.Err() != nil {
			return
		}
		// Paused: wait until the service is ready again.
		e.metrics.paused[c].Store(true)
		e.metrics.pauses.Add(ctx, 1, e.metrics.consumerAttrs[c])
		log.Warn("stream consumption paused: the service cannot decide, or NATS is away", "err", cause)
		start := time.Now()
		e.waitReady(ctx)
		e.metrics.paused[c].Store(false)
		if ctx.Err() == nil {
			log.Info("stream consumption resumed", "paused_for", time.Since(start).Round(time.Millisecond).String())
		}
	}
}

// ready reports whether the service says it is ready (WithReady); without a probe, false.
func (e *Edge) ready(ctx context.Context) bool {
	if e.opts.ready == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return e.opts.ready(ctx) == nil
}

// waitReady probes the NATS connection and the service with growing intervals until both are
// ready or ctx is done.
func (e *Edge) waitReady(ctx context.Context) {
	wait := e.opts.pauseProbe
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		// NATS itself must be back too (the client reconnects by itself).
		if e.js.Conn().IsConnected() && (e.opts.ready == nil || e.ready(ctx)) {
			return
		}
		wait = min(2*wait, e.opts.pauseProbeMax)
	}
}

// pull runs the workers on fetched batches until ctx is done or a message says the service is
// out; it returns that message's error (nil when ctx ended). It pulls in bounded batches
// (Fetch: fetchers requests at once, each waiting at most fetchWait), so that once it stops
// pulling no pull request is left on the server to hand messages to nobody: what arrives in the
// last batches is handed back (Nak) for redelivery.
func (e *Edge) pull(ctx context.Context, c consumerKind, cons jetstream.Consumer, handle handler) error {
	var (
		stopping atomic.Bool
		once     sync.Once
		cause    error
	)
	stop := func(err error) {
		once.Do(func() {
			cause = err
			stopping.Store(true)
		})
	}
	stopWatch := context.AfterFunc(ctx, func() { stop(nil) })
	defer stopWatch()
	msgs := make(chan jetstream.Msg, e.opts.workers)
	var fetching sync.WaitGroup
	for range fetchers {
		fetching.Go(func() {
			for !stopping.Load() {
				batch, err := cons.Fetch(e.opts.workers, jetstream.FetchMaxWait(fetchWait))
				if err != nil {
					stop(fmt.Errorf("pull: %w", err))
					return
				}
				for msg := range batch.Messages() {
					msgs <- msg
				}
				if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
					stop(fmt.Errorf("pull: %w", err))
					return
				}
			}
		})
	}
	go func() {
		fetching.Wait()
		close(msgs)
	}()
	// Messages in hand finish after ctx ends, within the call timeout: their decision is
	// committed and published, or they are handed back, never half done.
	work := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range e.opts.workers {
		wg.Go(func() {
			for msg := range msgs {
				if stopping.Load() {
					// Fetched as consumption stopped: handed back after a probe interval, so
					// that the last batch does not fetch it again at once.
					_ = msg.NakWithDelay(e.opts.pauseProbe)
					e.metrics.result(work, c, resultPaused)
					continue
				}
				e.observe(work, c, msg)
				v, err := handle(work, msg)
				switch v {
				case verdictPause:
					if e.ready(work) {
						// A slow call (a store budget spent under load), not an outage: this
						// message is tried again soon, and this worker waits as long, so that
						// the edge offers less while the store is slow.
						_ = msg.NakWithDelay(slowRetry)
						e.metrics.result(work, c, resultRetry)
						time.Sleep(slowRetry)
						continue
					}
					_ = msg.NakWithDelay(e.opts.pauseProbe)
					e.metrics.result(work, c, resultPaused)
					stop(err)
				case verdictShed:
					// The server's admission control refused it: back pressure, not a fault.
					// This worker waits out the delay too, so that the edge offers less while
					// the server sheds, instead of cycling its backlog through refusals.
					d := shedDelay(err, e.opts.pauseProbe)
					_ = msg.NakWithDelay(d)
					e.metrics.result(work, c, resultRetry)
					time.Sleep(d)
				case verdictRetry:
					_ = msg.NakWithDelay(e.retryDelay(msg))
					e.metrics.result(work, c, resultRetry)
					e.opts.logger.Warn("stream message handed back for redelivery", "consumer", consumerNames[c],
						"stream_seq", streamSeq(msg), "err", err)
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return cause
}

// slowRetry is how soon an event whose call was slow (degraded while the service is ready) is
// tried again, and how long its worker waits before it takes another.
const slowRetry = 50 * time.Millisecond

// Pulling: fetchers batches are requested at once (one is decided while the next arrives),
// each waiting at most fetchWait for messages.
const (
	fetchers  = 2
	fetchWait = time.Second
)

// updateLag sets the lag of consumer c from JetStream's view of it: messages not delivered yet,
// plus those handed out and not acknowledged (in flight, or handed back for redelivery).
func (e *Edge) updateLag(ctx context.Context, c consumerKind, cons jetstream.Consumer) {
	if !e.js.Conn().IsConnected() {
		return
	}
	ictx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if info, err := cons.Info(ictx); err == nil {
		e.metrics.lag[c].Store(int64(info.NumPending) + int64(info.NumAckPending))
	}
}

// lagPoll is how often a running consumer's lag is read from JetStream.
const lagPoll = 2 * time.Second

// pollLag keeps consumer c's lag current until ctx is done.
func (e *Edge) pollLag(ctx context.Context, c consumerKind, cons jetstream.Consumer) {
	t := time.NewTicker(lagPoll)
	defer t.Stop()
	for {
		e.updateLag(ctx, c, cons)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observe records a redelivery.
func (e *Edge) observe(ctx context.Context, c consumerKind, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	if md.NumDelivered > 1 {
		e.metrics.redelivered.Add(ctx, 1, e.metrics.consumerAttrs[c])
	}
}

// retryDelay grows with the deliveries of msg: 1 s, 2 s, 4 s... up to 30 s.
func (e *Edge) retryDelay(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	return min(time.Second<<min(n-1, 5), 30*time.Second)
}

// shedDelay is the retry delay a RESOURCE_EXHAUSTED status asks for (google.rpc.RetryInfo),
// else def.
func shedDelay(err error, def time.Duration) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return def
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return min(ri.GetRetryDelay().AsDuration(), 30*time.Second)
		}
	}
	return def
}

func streamSeq(msg jetstream.Msg) uint64 {
	if md, err := msg.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}

func deliveries(msg jetstream.Msg) uint64 {
	if md, err := msg.Metadata(); err == nil {
		return md.NumDelivered
	}
	return 1
}

// callError sorts an error of the service: bad input is dead-lettered with its reason, an
// outage pauses, anything else is retried and dead-lettered once it failed on DefaultMaxDeliver
// deliveries.
func (e *Edge) callError(msg jetstream.Msg, err error) (v verdict, deadReason string) {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.AlreadyExists:
		return verdictDone, DeadInvalid
	case codes.NotFound:
		return verdictDone, DeadNotFound
	case codes.ResourceExhausted:
		return verdictShed, ""
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Canceled:
		return verdictPause, ""
	}
	if deliveries(msg) >= uint64(e.opts.maxDeliver) {
		return verdictDone, DeadUndeliverable
	}
	return verdictRetry, ""
}

// errDegraded is the pause cause of a degraded decision the edge does not publish.
var errDegraded = errors.New("the store is out: the decision degraded (not published without WithDegraded)")

// errDryRun refuses a dry run on the stream: a decision published there is acted on.
var errDryRun = rpcstatus.Invalid("options.dry_run", "not allowed on the stream, where decisions are acted on; use the Decide RPC")

// handleEvent decides one event and publishes its decision (and revocation), then acks it.
func (e *Edge) handleEvent(ctx context.Context, msg jetstream.Msg) (verdict, error) {
	req := &arbiterv1.DecideRequest{}
	if err := decode(msg.Headers().Get(HeaderContentType), msg.Data(), req); err != nil {
		return e.deadLetter(ctx, msg, DeadDecode, err)
	}
	if err := checkRequest(req, e.opts.now()); err != nil {
		return e.deadLetter(ctx, msg, deadReasonOf(err), err)
	}
	if req.GetOptions().GetDryRun() {
		return e.deadLetter(ctx, msg, DeadInvalid, errDryRun)
	}
	cctx, cancel := context.WithTimeout(ctx, e.opts.callTimeout)
	resp, err := e.svc.Decide(cctx, req)
	cancel()
	if err != nil {
		v, reason := e.callError(msg, err)
		if reason != "" {
			return e.deadLetter(ctx, msg, reason, err)
		}
		return v, err
	}
	if resp.GetDegraded() && !e.opts.degraded {
		return verdictPause, errDegraded
	}
	if err := e.publishDecision(ctx, req, resp); err != nil {
		return verdictRetry, err
	}
	if revoking := e.revokeCodes(resp); len(revoking) > 0 {
		r := &arbiterv1.Revocation{
			CustomerId: req.GetCustomer().GetId(), DecisionId: resp.GetDecisionId(), EventId: req.GetEvent().GetId(),
			ReasonCodes: revoking, RevokedAt: resp.GetDecidedAt(), Scope: arbiterv1.RevocationScope_REVOCATION_SCOPE_CUSTOMER,
			Policy: resp.GetPolicy(),
		}
		if err := e.Revoke(ctx, r); err != nil {
			return verdictRetry, err
		}
	}
	_ = msg.Ack() // a lost ack redelivers the event, whose decision replays and is dropped as a duplicate
	e.metrics.result(ctx, consumerEvents, resultDecided)
	return verdictDone, nil
}

// revokeCodes returns the reason codes of resp that revoke the customer's pending actions.
func (e *Edge) revokeCodes(resp *arbiterv1.DecideResponse) []string {
	if resp.GetDegraded() || len(e.opts.revokeCodes) == 0 {
		return nil
	}
	var out []string
	for _, r := range resp.GetReasons() {
		if slices.Contains(e.opts.revokeCodes, r.GetCode()) && !slices.Contains(out, r.GetCode()) {
			out = append(out, r.GetCode())
		}
	}
	return out
}

// publishDecision publishes resp to arbiter.decisions.<action> with the decision id as
// Nats-Msg-Id and waits for JetStream's acknowledgement.
func (e *Edge) publishDecision(ctx context.Context, req *arbiterv1.DecideRequest, resp *arbiterv1.DecideResponse) error {
	// What goes out is the decision, the same on every delivery: a replay after a crash is
	// the same message, which JetStream drops as a duplicate.
	resp.Replayed = false
	data, err := e.enc.marshal(resp)
	if err != nil {
		return fmt.Errorf("encode decision: %w", err)
	}
	action := actionToken(resp.GetAction().String())
	m := nats.NewMsg(SubjectDecisions + "." + action)
	m.Data = data
	m.Header.Set(HeaderContentType, e.enc.contentType)
	m.Header.Set(HeaderDecisionID, resp.GetDecisionId())
	m.Header.Set(HeaderEventID, req.GetEvent().GetId())
	m.Header.Set(HeaderCustomerID, req.GetCustomer().GetId())
	m.Header.Set(HeaderAction, action)
	m.Header.Set(HeaderPolicyID, resp.GetPolicy().GetId())
	m.Header.Set(HeaderPolicyVersion, resp.GetPolicy().GetVersion())
	if resp.GetDegraded() {
		m.Header.Set(HeaderDegraded, "true")
	}
	if _, err := e.js.PublishMsg(ctx, m, jetstream.WithMsgID(resp.GetDecisionId()), jetstream.WithExpectStream(StreamDecisions)); err != nil {
		return fmt.Errorf("publish decision: %w", err)
	}
	return nil
}

// Revoke publishes r to arbiter.revocations.<customer> (SubjectToken of r.customer_id) and waits
// for JetStream's acknowledgement. Its Nats-Msg-Id is the scope and the decision id, so a
// revocation published again within the duplicate window is dropped. It is the hook for
// callers other than the edge's own decisions: the Confirm RPC calls it (server.WithRevocations,
// wired by arbiter serve --nats) with REVOCATION_SCOPE_DECISION for a decision it tells the
// executor not to proceed with. It fills in an unset revoked_at (now) and scope (REVOCATION_SCOPE_CUSTOMER) in
// r. It is safe for concurrent use.
func (e *Edge) Revoke(ctx context.Context, r *arbiterv1.Revocation) error {
	if r.GetCustomerId() == "" || r.GetDecisionId() == "" {
		return errors.New("revoke: customer_id and decision_id are required")
	}
	if r.GetRevokedAt() == nil {
		r.RevokedAt = timestamppb.New(e.opts.now())
	}
	if r.GetScope() == arbiterv1.RevocationScope_REVOCATION_SCOPE_UNSPECIFIED {
		r.Scope = arbiterv1.RevocationScope_REVOCATION_SCOPE_CUSTOMER
	}
	data, err := e.enc.marshal(r)
	if err != nil {
		return fmt.Errorf("encode revocation: %w", err)
	}
	m := nats.NewMsg(SubjectRevocations + "." + SubjectToken(r.GetCustomerId()))
	m.Data = data
	m.Header.Set(HeaderContentType, e.enc.contentType)
	m.Header.Set(HeaderCustomerID, r.GetCustomerId())
	m.Header.Set(HeaderDecisionID, r.GetDecisionId())
	if r.GetEventId() != "" {
		m.Header.Set(HeaderEventID, r.GetEventId())
	}
	id := "revoke-" + strconv.Itoa(int(r.GetScope())) + "-" + r.GetDecisionId()
	if _, err := e.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamRevocations)); err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	return nil
}

// handleOutcome records one outcome, then acks it.
func (e *Edge) handleOutcome(ctx context.Context, msg jetstream.Msg) (verdict, error) {
	req := &arbiterv1.RecordOutcomeRequest{}
	if err := decode(msg.Headers().Get(HeaderContentType), msg.Data(), req); err != nil {
		return e.deadLetter(ctx, msg, DeadDecode, err)
	}
	if err := checkRequest(req, e.opts.now()); err != nil {
		return e.deadLetter(ctx, msg, deadReasonOf(err), err)
	}
	cctx, cancel := context.WithTimeout(ctx, e.opts.callTimeout)
	_, err := e.svc.RecordOutcome(cctx, req)
	cancel()
	if err != nil {
		v, reason := e.callError(msg, err)
		if reason != "" {
			return e.deadLetter(ctx, msg, reason, err)
		}
		return v, err
	}
	_ = msg.Ack()
	e.metrics.result(ctx, consumerOutcomes, resultRecorded)
	return verdictDone, nil
}

// deadLetter publishes msg to arbiter.dead.<reason> with the error and acks it. The payload
// goes along unless it holds a card number. The dead letter's Nats-Msg-Id is the message's
// stream and sequence: a redelivered poison message is dead-lettered once.
func (e *Edge) deadLetter(ctx context.Context, msg jetstream.Msg, reason string, cause error) (verdict, error) {
	md, err := msg.Metadata()
	if err != nil {
		return verdictRetry, fmt.Errorf("dead letter: %w", err)
	}
	m := nats.NewMsg(SubjectDead + "." + reason)
	m.Header.Set(HeaderError, publicError(cause))
	m.Header.Set(HeaderSubject, msg.Subject())
	m.Header.Set(HeaderStream, md.Stream)
	m.Header.Set(HeaderSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	m.Header.Set(HeaderDelivered, strconv.FormatUint(md.NumDelivered, 10))
	if reason == DeadCardNumber || holdsCardNumber(msg.Data()) {
		m.Header.Set(HeaderWithheld, "card number")
	} else {
		m.Data = msg.Data()
		if ct := msg.Headers().Get(HeaderContentType); ct != "" && len(ct) <= 128 {
			m.Header.Set(HeaderContentType, ct)
		}
	}
	id := "dead-" + md.Stream + "-" + strconv.FormatUint(md.Sequence.Stream, 10)
	if _, err := e.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamDead)); err != nil {
		return verdictRetry, fmt.Errorf("publish dead letter: %w", err)
	}
	_ = msg.Ack()
	e.metrics.dead.Add(ctx, 1, deadAttrs(reason))
	c := consumerEvents
	if md.Stream == StreamOutcomes {
		c = consumerOutcomes
	}
	e.metrics.result(ctx, c, resultDead)
	e.opts.logger.Info("stream message dead-lettered", "stream", md.Stream, "stream_seq", md.Sequence.Stream, "reason", reason)
	return verdictDone, nil
}

// publicError is the text of err for a dead letter: a gRPC status's message (which names
// fields, never values) or the edge's own fixed errors.
func publicError(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// Package relay copies the decision records of Redis's outbox into the archive in
// PostgreSQL. The outbox is the store's per-bucket audit streams: every commit appends its
// decision to its bucket's stream in the same atomic step as the decision itself, so an
// answered decision is in the outbox. The relay reads the streams as a Redis consumer group
// (featurestore.AuditExporter), appends each batch to the archive (archive.Append, idempotent
// per decision id), and acknowledges the batch only after PostgreSQL committed it; acknowledged
// entries then leave the streams. Every replica runs a relay in the same group, under its own
// consumer name: Redis hands each entry to one of them, a replica that dies leaves its entries
// pending, and another claims them after WithClaimIdle. A batch written twice (a crash between
// the archive's commit and the acknowledgement) is archived once.
//
// While PostgreSQL is down, decisions go on and the outbox grows; the relay retries with
// back-off, and Lag (the arbiter.archive.lag metric, and /readyz) says how far behind it is.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// Defaults of a Relay.
const (
	// Group is the consumer group of the relays on the audit streams.
	Group = "arbiter-archive"
	// DefaultPoll is how long a relay that found nothing waits before it reads again: with the
	// time to write a batch, the relay's lag in normal operation.
	DefaultPoll = 100 * time.Millisecond
	// DefaultClaimIdle is how long entries of a relay that stopped answering stay pending
	// before another relay takes them over.
	DefaultClaimIdle = 10 * time.Second
	// DefaultMaintainEvery is how often a relay creates the coming days' partitions and drops
	// the partitions past the archive's retention.
	DefaultMaintainEvery = time.Hour
	// maxBackoff bounds the wait between failed passes.
	maxBackoff = 5 * time.Second
)

// Sink is a featurestore.AuditSink that appends the audit trail to an archive. It decodes each
// record for the archive's search columns and keeps its bytes as they are.
type Sink struct {
	a *archive.Archive
}

var _ featurestore.AuditSink = (*Sink)(nil)

// NewSink returns a Sink writing into a.
func NewSink(a *archive.Archive) *Sink { return &Sink{a: a} }

// WriteAudit appends entries to the archive in one transaction, each decision once, however
// often it is delivered. An entry whose record does not decode is an error of the store
// (featurestore.ErrCorrupt), and the batch is not acknowledged.
func (s *Sink) WriteAudit(ctx context.Context, entries []featurestore.AuditEntry) error {
	recs := make([]archive.Record, 0, len(entries))
	var outs []archive.Outcome
	for _, e := range entries {
		if o := e.Outcome; o != nil {
			outs = append(outs, archive.Outcome{DecisionID: e.DecisionID, Outcome: arbiterv1.Outcome(o.Outcome).String(),
				OccurredAt: o.OccurredAt, RecordedAt: o.RecordedAt})
			continue
		}
		r, err := Record(e.DecisionID, e.Record)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	// Decisions first: an outcome is always committed after its decision, and a reader that
	// finds an outcome in the archive finds its decision.
	if err := s.appendChunks(ctx, recs); err != nil {
		return err
	}
	if len(outs) > 0 {
		if _, err := s.a.AppendOutcomes(ctx, outs); err != nil {
			return err
		}
	}
	return nil
}

// Appends of a large batch: chunks of appendChunk records, appendWorkers of them at once.
// PostgreSQL commits several transactions in one WAL flush, so concurrent appends archive
// more decisions a second than one large transaction (archive's BenchmarkAppend).
const (
	appendChunk   = 1000
	appendWorkers = 4
)

// appendChunks appends recs in chunks, several at once; every chunk is idempotent, so a
// failure of one leaves the batch unacknowledged and all of it is written again later.
func (s *Sink) appendChunks(ctx context.Context, recs []archive.Record) error {
	if len(recs) <= appendChunk {
		if len(recs) == 0 {
			return nil
		}
		_, err := s.a.Append(ctx, recs)
		return err
	}
	chunks := make(chan []archive.Record)
	errs := make(chan error, appendWorkers)
	var wg sync.WaitGroup
	for range appendWorkers {
		wg.Go(func() {
			var first error
			for c := range chunks {
				if first == nil {
					_, first = s.a.Append(ctx, c)
				}
			}
			errs <- first
		})
	}
	for len(recs) > 0 {
		n := min(appendChunk, len(recs))
		chunks <- recs[:n]
		recs = recs[n:]
	}
	close(chunks)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Record returns the archive's row for an encoded arbiterv1.DecisionRecord.
func Record(decisionID string, body []byte) (archive.Record, error) {
	var rec arbiterv1.DecisionRecord
	if err := proto.Unmarshal(body, &rec); err != nil {
		return archive.Record{}, fmt.Errorf("%w: record of decision %s: %w", featurestore.ErrCorrupt, decisionID, err)
	}
	resp := rec.GetResponse()
	reasons := make([]string, len(resp.GetReasons()))
	for i, r := range resp.GetReasons() {
		reasons[i] = r.GetCode()
	}
	decidedAt := resp.GetDecidedAt().AsTime()
	if resp.GetDecidedAt() == nil {
		decidedAt = rec.GetRecordedAt().AsTime()
	}
	return archive.Record{
		DecisionID:    decisionID,
		CustomerID:    rec.GetCustomerId(),
		EventID:       rec.GetEventId(),
		EventType:     rec.GetEventType().String(),
		Action:        resp.GetAction().String(),
		Reasons:       reasons,
		PolicyID:      rec.GetPolicy().GetId(),
		PolicyVersion: rec.GetPolicy().GetVersion(),
		PolicyDigest:  rec.GetPolicy().GetDigest(),
		DecidedAt:     decidedAt,
		Degraded:      resp.GetDegraded(),
		Body:          body,
		ExperimentID:  resp.GetExperiment().GetId(),
		ExperimentArm: resp.GetExperiment().GetArm(),
	}, nil
}

// Drainer is what a Relay runs: featurestore.AuditExporter's Drain, which ships everything in
// the outbox when it starts and returns.
type Drainer interface {
	Drain(ctx context.Context) (featurestore.AuditStats, error)
}

// Maintainer keeps the archive's partitions: *archive.Archive satisfies it.
type Maintainer interface {
	EnsurePartitions(ctx context.Context) error
	DropExpired(ctx context.Context) ([]string, error)
}

// Relay runs a Drainer into the archive until its context ends, and measures its lag.
type Relay struct {
	d     Drainer
	m     Maintainer
	o     options
	start time.Time

	mu        sync.Mutex
	caughtUp  time.Time // when the last drain that ended without error began
	lastErr   error
	delivered metric.Int64Counter
	failures  metric.Int64Counter
}

// Option configures a Relay.
type Option func(*options)

type options struct {
	poll          time.Duration
	maintainEvery time.Duration
	logger        *slog.Logger
	meterProvider metric.MeterProvider
	now           func() time.Time
}

// WithPoll sets how long the relay waits after a drain that found nothing (default
// DefaultPoll).
func WithPoll(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.poll = d
		}
	}
}

// WithMaintainEvery sets how often the relay keeps the archive's partitions (default
// DefaultMaintainEvery).
func WithMaintainEvery(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.maintainEvery = d
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider sets the provider of the relay's metrics (default: no-op).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithClock sets the clock of the lag (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New returns a relay that drains d into the archive and keeps the archive's partitions with
// m (nil: no maintenance).
func New(d Drainer, m Maintainer, opts ...Option) (*Relay, error) {
	o := options{
		poll: DefaultPoll, maintainEvery: DefaultMaintainEvery,
		logger: slog.New(slog.DiscardHandler), meterProvider: metricnoop.NewMeterProvider(), now: time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Relay{d: d, m: m, o: o, start: o.now()}
	meter := o.meterProvider.Meter("github.com/arbiter-dev/arbiter/relay")
	var err error
	if r.delivered, err = meter.Int64Counter("arbiter.archive.delivered",
		metric.WithDescription("Decision records handed to the archive (re-deliveries included)."),
		metric.WithUnit("{record}")); err != nil {
		return nil, err
	}
	if r.failures, err = meter.Int64Counter("arbiter.archive.failures",
		metric.WithDescription("Relay passes that failed (archive or Redis unavailable); the outbox keeps the records."),
		metric.WithUnit("{pass}")); err != nil {
		return nil, err
	}
	// Both counters start at zero, so that they are scraped from the start; a measurement's
	// context only carries exemplars and baggage.
	r.delivered.Add(context.Background(), 0)
	r.failures.Add(context.Background(), 0)
	if _, err = meter.Float64ObservableGauge("arbiter.archive.lag",
		metric.WithDescription("How old the oldest decision not yet archived can be: the time since the relay last caught up with the outbox."),
		metric.WithUnit("s"),
		metric.WithFloat64Callback(func(_ context.Context, ob metric.Float64Observer) error {
			ob.Observe(r.Lag().Seconds())
			return nil
		})); err != nil {
		return nil, err
	}
	return r, nil
}

// Lag returns how old the oldest decision not yet in the archive can be: the time since the
// start of the last drain that ended without error (everything in the outbox then is archived
// now), or since the relay started when none has yet.
func (r *Relay) Lag() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	since := r.caughtUp
	if since.IsZero() {
		since = r.start
	}
	return max(r.o.now().Sub(since), 0)
}

// Err returns the error of the last pass, nil when it succeeded.
func (r *Relay) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Run relays until ctx ends: a drain, then a pause of the poll interval when it found nothing,
// or a growing back-off after an error (the outbox keeps the records). It keeps the archive's
// partitions at start and every WithMaintainEvery.
func (r *Relay) Run(ctx context.Context) {
	backoff := r.o.poll
	var maintained time.Time
	for ctx.Err() == nil {
		if r.m != nil && r.o.now().Sub(maintained) >= r.o.maintainEvery {
			if err := r.maintain(ctx); err == nil {
				maintained = r.o.now()
			}
		}
		began := r.o.now()
		st, err := r.d.Drain(ctx)
		if st.Delivered > 0 {
			r.delivered.Add(ctx, int64(st.Delivered))
		}
		if st.Lost > 0 || st.Expired > 0 {
			// Redis dropped entries before they were archived: the relay was down for
			// longer than the records live in Redis (the replay window).
			r.o.logger.LogAttrs(ctx, slog.LevelError, "decision records left Redis before the archive had them",
				slog.Int("lost", st.Lost), slog.Int("expired", st.Expired))
		}
		if st.Erased > 0 {
			// Their customers were erased before the relay got to them: nothing to archive.
			r.o.logger.LogAttrs(ctx, slog.LevelInfo, "decisions erased before they were archived; not archived",
				slog.Int("erased", st.Erased))
		}
		r.mu.Lock()
		r.lastErr = err
		if err == nil {
			r.caughtUp = began
		}
		r.mu.Unlock()
		wait := r.o.poll
		switch {
		case err != nil && ctx.Err() == nil:
			r.failures.Add(ctx, 1)
			r.o.logger.LogAttrs(ctx, slog.LevelWarn, "archive relay pass failed; the outbox keeps the records",
				slog.Duration("retry_in", backoff), slog.Any("err", err))
			wait, backoff = backoff, min(2*backoff, maxBackoff)
		case err == nil:
			backoff = r.o.poll
			if st.Delivered > 0 {
				continue // more may be waiting
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// maintain creates the coming days' partitions and drops those past the retention.
func (r *Relay) maintain(ctx context.Context) error {
	if err := r.m.EnsurePartitions(ctx); err != nil {
		r.o.logger.LogAttrs(ctx, slog.LevelWarn, "archive partitions not created; retrying later", slog.Any("err", err))
		return err
	}
	dropped, err := r.m.DropExpired(ctx)
	if len(dropped) > 0 {
		r.o.logger.LogAttrs(ctx, slog.LevelInfo, "archive partitions past the retention dropped", slog.Any("partitions", dropped))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		r.o.logger.LogAttrs(ctx, slog.LevelWarn, "archive retention not applied; retrying later", slog.Any("err", err))
	}
	return err
}

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// Reason codes the server itself adds.
const (
	// ReasonStoreUnavailable: the customer's state could not be read or the decision could
	// not be committed; the decision was made without it and fails closed.
	ReasonStoreUnavailable = "STORE_UNAVAILABLE"
	// ReasonStoreCorrupt: the customer's stored state is malformed; the decision was made
	// without it and fails closed.
	ReasonStoreCorrupt = "STORE_CORRUPT"
	// ReasonStoreConflict: the customer's state kept changing under concurrent decisions;
	// the answer is SUPPRESS.
	ReasonStoreConflict = "STORE_CONFLICT"
	// ReasonStoreOutcomeUnknown: the decision's commit was sent but its result did not come
	// back, and the store did not answer again in time: the event may have a committed
	// decision, which a resend of the event returns once the store answers.
	ReasonStoreOutcomeUnknown = "STORE_OUTCOME_UNKNOWN"
)

// ruleServer is the rule_id of reasons the server adds.
const ruleServer = "server"

// Decide returns one explainable action for an event: see the package documentation for the
// pipeline.
func (s *Server) Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	start := time.Now()
	resp, err := s.decide(ctx, req, start)
	if err != nil {
		return nil, s.toStatus(ctx, "Decide", err)
	}
	s.metrics.recordDecision(ctx, resp, time.Since(start))
	if s.opts.logger.Enabled(ctx, slog.LevelDebug) {
		s.opts.logger.LogAttrs(ctx, slog.LevelDebug, "decision",
			slog.String("decision_id", resp.GetDecisionId()), slog.String("event_id", req.GetEvent().GetId()),
			slog.String("action", resp.GetAction().String()), slog.Bool("replayed", resp.GetReplayed()),
			slog.Bool("degraded", resp.GetDegraded()), slog.Bool("dry_run", resp.GetDryRun()))
	}
	return resp, nil
}

// phase timings of one decision.
type timings struct {
	read, evaluate time.Duration
}

// call is one Decide call as its steps share it: the request, the engine's input built from
// it, the policy it is decided under, and what has been measured so far.
type call struct {
	req    *arbiterv1.DecideRequest
	in     decision.Input
	pol    *decision.Policy
	id     string // the decision id of the answer
	dryRun bool
	prior  string    // on a dry run, the decision id the event id already has ("" for none)
	start  time.Time // when the call arrived, for the record's total time
	t      timings
	// unknown is set when a commit of this call may have been applied: its degraded answer
	// says so (ReasonStoreOutcomeUnknown).
	unknown bool
	// rebuilt is set once the call rebuilt its customer's state from the archive.
	rebuilt bool
	// sig is what the call tells its shard's admission when it ends.
	sig admissionSignal
}

func (s *Server) decide(ctx context.Context, req *arbiterv1.DecideRequest, start time.Time) (*arbiterv1.DecideResponse, error) {
	// Validate.
	if err := validateDecide(req); err != nil {
		return nil, err
	}
	pol := s.policies.Load()
	if pol == nil {
		return nil, rpcstatus.ErrNoPolicy
	}
	now := s.opts.clock()
	c := &call{req: req, pol: pol, dryRun: req.GetOptions().GetDryRun(), start: start,
		in: decision.Input{Now: now, Explain: req.GetOptions().GetExplain()}}
	toInput(req, &c.in)
	c.id = featurestore.NewDecisionID(c.in.Customer.ID, now)

	// Admission: beyond what the customer's shard is learned to take, shed the call now.
	if as := s.opts.admission; as != nil {
		shard := ""
		if s.sharded != nil {
			shard = s.sharded.ShardOf(ctx, c.in.Customer.ID)
		}
		a := as.of(shard)
		if !a.acquire() {
			s.metrics.shed.Add(ctx, 1)
			return nil, rpcstatus.ResourceExhausted("the customer state store is overloaded: retry shortly", admissionRetryAfter)
		}
		// A call counts as a sign of spare capacity only if its store phase took under half
		// its budget: the limit grows until the store's latency nears the budget, not beyond.
		calm := s.budget().For(ctx, start) / 2
		defer func() {
			now := time.Now()
			if c.sig == admissionOK && now.Sub(start) > calm {
				c.sig = admissionNone
			}
			a.release(c.sig, now)
		}()
	}

	// The store calls share one budget derived from the caller's deadline.
	sctx, cancel := s.budget().Context(ctx, start)
	defer cancel()

	for attempt := 1; ; attempt++ {
		// Read the customer's state, or the stored answer to this event id.
		var loaded featurestore.Loaded
		t0 := time.Now()
		loaded, err := storeDo(s, sctx, opLoad, c.in.Customer.ID, func(ctx context.Context) (featurestore.Loaded, error) {
			if s.narrow != nil {
				// Only what the decision reads of the ledger and history is built.
				payment, card := decision.NarrowedLedger(&c.in.Event)
				return s.narrow.LoadNarrow(ctx, c.in.Customer.ID, c.in.Event.ID, now, featurestore.Narrowing{Payment: payment, CardRef: card})
			}
			return s.store.Load(ctx, c.in.Customer.ID, c.in.Event.ID, now)
		})
		c.t.read += time.Since(t0)
		if err != nil {
			return s.degradeOn(ctx, c, err)
		}
		c.sig = admissionOK
		if loaded.Record != nil || loaded.ArchivedID != "" {
			if !c.dryRun {
				return s.replayStored(ctx, c, loaded.Record, loaded.ArchivedID)
			}
			// A dry run evaluates afresh, on the customer's state as it is now (with the
			// effects of that decision), and says which decision the event id already has.
			if loaded, err = s.dryRunOnDecided(sctx, c, loaded.Record, loaded.ArchivedID); err != nil {
				return s.degradeOn(ctx, c, err)
			}
		}
		if loaded.Unverified && s.opts.archive != nil {
			if resp, err := s.verify(ctx, c); resp != nil || err != nil {
				return resp, err
			}
			continue // rebuilt: read it again
		}
		c.in.State = loaded.State
		// The record keeps the state the decision reads, not the customer's whole history.
		decision.Narrow(&c.in)

		// Evaluate.
		t1 := time.Now()
		res, err := pol.Decide(ctx, &c.in)
		c.t.evaluate += time.Since(t1)
		if err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		resp, err := toResponse(c.id, res, now)
		if err != nil {
			return nil, err
		}
		if c.dryRun {
			resp.DryRun, resp.PriorDecisionId = true, c.prior
			return resp, nil
		}

		// Commit the record and the effects atomically.
		w, err := s.newCommit(c, res, resp)
		if err != nil {
			return nil, err
		}
		w.Version = loaded.Version
		committed, err := s.commit(sctx, w)
		switch {
		case err != nil:
			// The commit may have been applied (its reply lost, or it outlived the budget):
			// find out before answering, so that an applied decision is never answered as
			// another.
			return s.settle(ctx, c, err)
		case committed.Record != nil || committed.ArchivedID != "":
			return s.replayStored(ctx, c, committed.Record, committed.ArchivedID)
		case committed.Conflict == "":
			s.opts.shadow.Observe(ctx, &c.in, res) // never changes resp or the store
			return resp, nil
		}
		s.metrics.conflicts.Add(ctx, 1)
		if attempt >= s.opts.maxAttempts {
			return s.conflicted(ctx, sctx, c, res, committed.Conflict)
		}
	}
}

// newCommit builds the atomic write of c's decision res, answered resp: its record and its
// effects.
func (s *Server) newCommit(c *call, res *decision.Result, resp *arbiterv1.DecideResponse) (*featurestore.Commit, error) {
	in := &c.in
	b, err := newRecord(c, resp)
	if err != nil {
		return nil, err
	}
	// The engine does not know the decision id; the reserved slot names it.
	effects := res.Effects
	if m := effects.Message; m != nil && m.DecisionID == "" {
		slot := *m
		slot.DecisionID = resp.GetDecisionId()
		effects.Message = &slot
	}
	codes := make([]string, len(res.Reasons))
	for i, r := range res.Reasons {
		codes[i] = r.Code
	}
	return &featurestore.Commit{
		CustomerID: in.Customer.ID,
		EventID:    in.Event.ID,
		DecisionID: resp.GetDecisionId(),
		Now:        in.Now,
		Record:     b,
		Summary: decision.DecisionSummary{
			DecisionID: resp.GetDecisionId(), EventID: in.Event.ID, EventType: in.Event.Type,
			Action: res.Action, ReasonCodes: codes, DecidedAt: in.Now,
		},
		Effects: effects,
	}, nil
}

// newRecord encodes the audit record of an answered decision: the request, the response, the
// state it was decided on and the phase timings. A commit stores it, and so does the audit
// spool for a degraded decision.
func newRecord(c *call, resp *arbiterv1.DecideResponse) ([]byte, error) {
	in, req, t := &c.in, c.req, c.t
	snap, err := toSnapshot(&in.State)
	if err != nil {
		return nil, err
	}
	rec := &arbiterv1.DecisionRecord{
		DecisionId: resp.GetDecisionId(),
		EventId:    in.Event.ID,
		EventType:  req.GetEvent().GetType(),
		CustomerId: in.Customer.ID,
		Request:    req,
		Response:   resp,
		Policy:     resp.GetPolicy(),
		Snapshot:   snap,
		Timings: &arbiterv1.Timings{
			ReadUs:     t.read.Microseconds(),
			EvaluateUs: t.evaluate.Microseconds(),
			TotalUs:    time.Since(c.start).Microseconds(),
		},
		RecordedAt: ts(in.Now),
	}
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode decision record: %w", err)
	}
	return b, nil
}

// dryRunOnDecided prepares a dry run of an event id decided before, whose stored record is raw
// (or, archived and dropped from the store, the decision archivedID): it notes that decision's
// id in c.prior and reads the customer's current state, which Load does not return for a
// decided event.
func (s *Server) dryRunOnDecided(sctx context.Context, c *call, raw []byte, archivedID string) (featurestore.Loaded, error) {
	c.prior = archivedID
	if raw != nil {
		var rec arbiterv1.DecisionRecord
		if err := proto.Unmarshal(raw, &rec); err != nil {
			return featurestore.Loaded{}, fmt.Errorf("%w: decision record: %v", featurestore.ErrCorrupt, err)
		}
		c.prior = rec.GetDecisionId()
	}
	t0 := time.Now()
	st, err := storeDo(s, sctx, opState, c.in.Customer.ID, func(ctx context.Context) (decision.State, error) {
		return s.store.State(ctx, c.in.Customer.ID, c.in.Now)
	})
	c.t.read += time.Since(t0)
	return featurestore.Loaded{State: st}, err
}

// replayStored answers c with the decision its event already has: raw, the record the store
// holds, or the record of decision archivedID, which the store archived and dropped (read
// from the archive: unavailable while the archive is).
func (s *Server) replayStored(ctx context.Context, c *call, raw []byte, archivedID string) (*arbiterv1.DecideResponse, error) {
	if raw == nil {
		if s.opts.archive == nil {
			return nil, fmt.Errorf("%w: event %s was decided as %s, whose record the store no longer holds, and there is no archive",
				featurestore.ErrCorrupt, c.in.Event.ID, archivedID)
		}
		rec, err := s.opts.archive.Get(ctx, archivedID)
		if err != nil {
			return nil, fmt.Errorf("replay decision %s from the archive: %w", archivedID, err)
		}
		raw = rec.Body
	}
	return replay(c, raw)
}

// replay answers c with the stored response of its event, decided before. The event id is an
// idempotency key: a request that differs from the one decided (options aside) is refused,
// so that a new event sent under a used id is not silently answered with another's decision.
func replay(c *call, raw []byte) (*arbiterv1.DecideResponse, error) {
	var rec arbiterv1.DecisionRecord
	if err := proto.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("%w: decision record: %v", featurestore.ErrCorrupt, err)
	}
	resp := rec.GetResponse()
	if resp == nil {
		return nil, fmt.Errorf("%w: decision record %s has no response", featurestore.ErrCorrupt, rec.GetDecisionId())
	}
	if stored := rec.GetRequest(); stored != nil && !sameRequest(stored, c.req) {
		return nil, rpcstatus.Invalid("event.id", "already decided for a different request (decision "+
			rec.GetDecisionId()+"): an event id is an idempotency key, so send a new event with a new id")
	}
	resp.Replayed = true
	return resp, nil
}

// sameRequest reports whether two requests are the same event for the same customer: equal
// but for their options (dry_run, explain), which change how an event is answered, not which.
func sameRequest(a, b *arbiterv1.DecideRequest) bool {
	if a.GetOptions() == nil && b.GetOptions() == nil {
		return proto.Equal(a, b)
	}
	ac, bc := proto.CloneOf(a), proto.CloneOf(b)
	ac.Options, bc.Options = nil, nil
	return proto.Equal(ac, bc)
}

// narrowLoader is a store whose Load can build only what a decision reads of the customer's
// ledger and history (featurestore.Redis and featurestore.Memory): the state then comes
// narrowed, as decision.Narrow leaves it.
type narrowLoader interface {
	LoadNarrow(ctx context.Context, customerID, eventID string, now time.Time, n featurestore.Narrowing) (featurestore.Loaded, error)
}

var (
	_ narrowLoader = (*featurestore.Redis)(nil)
	_ narrowLoader = (*featurestore.Memory)(nil)
)

// settle answers a call whose commit failed without saying whether it was applied: it reads
// the event again, within the store budget anew (bounded by the caller's deadline). An event
// that now has a decision is answered with it (replayed), so an applied commit is never
// answered as another decision; an event without one was not committed, and the call degrades;
// a store that does not answer leaves the outcome unknown, and the degraded answer says so.
func (s *Server) settle(ctx context.Context, c *call, commitErr error) (*arbiterv1.DecideResponse, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	sctx, cancel := s.budget().Context(ctx, time.Now())
	defer cancel()
	loaded, err := storeDo(s, sctx, opLoad, c.in.Customer.ID, func(ctx context.Context) (featurestore.Loaded, error) {
		return s.store.Load(ctx, c.in.Customer.ID, c.in.Event.ID, c.in.Now)
	})
	switch {
	case err == nil && (loaded.Record != nil || loaded.ArchivedID != ""):
		return s.replayStored(ctx, c, loaded.Record, loaded.ArchivedID)
	case err == nil:
		return s.degradeOn(ctx, c, commitErr)
	}
	c.unknown = true
	return s.degradeOn(ctx, c, commitErr)
}

// commit writes c through the store within the store budget of sctx.
func (s *Server) commit(sctx context.Context, c *featurestore.Commit) (featurestore.Committed, error) {
	return storeDo(s, sctx, opCommit, c.CustomerID, func(ctx context.Context) (featurestore.Committed, error) {
		return s.store.Commit(ctx, c)
	})
}

// degradeOn handles a store error of Decide: the caller's own deadline or cancellation ends
// the call; an unavailable store, a spent store budget or malformed stored state give a
// degraded decision; anything else is an error.
func (s *Server) degradeOn(ctx context.Context, c *call, err error) (*arbiterv1.DecideResponse, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr
	}
	reason, msg := ReasonStoreUnavailable, "customer state unavailable: decided without it"
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, featurestore.ErrBusy) {
		c.sig = admissionOverrun // the store is there but too slow for the load: shed some
	}
	switch {
	case isUnavailable(err):
	case errors.Is(err, featurestore.ErrCorrupt):
		reason, msg = ReasonStoreCorrupt, "customer state malformed: decided without it"
	default:
		return nil, err
	}
	s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "decision degraded",
		slog.String("decision_id", featurestore.DegradedDecisionID(c.in.Customer.ID, c.in.Event.ID)),
		slog.String("reason", reason), slog.Any("err", err))
	return s.degraded(ctx, c, reason, msg)
}

// degraded decides without the customer's state: the engine fails closed, and the server
// makes sure of it by never answering MESSAGE or RETRY in this mode. Nothing is committed; the
// record goes to the audit spool before the answer (the store takes it later), and a decision
// that cannot be recorded is not answered.
func (s *Server) degraded(ctx context.Context, c *call, reason, msg string) (*arbiterv1.DecideResponse, error) {
	// Every degraded answer to an event has the same id, on every replica: one decision and
	// one record per event, however often it is resent while the store is away.
	c.id = featurestore.DegradedDecisionID(c.in.Customer.ID, c.in.Event.ID)
	in := &c.in
	in.Degraded = true
	in.State = decision.State{}
	res, err := c.pol.Decide(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("evaluate degraded: %w", err)
	}
	if res.Action == decision.ActionRetry || res.Action == decision.ActionMessage || res.Action == decision.ActionUnspecified {
		res.Action, res.Retry, res.Message = decision.ActionSuppress, nil, nil
		res.Suppress = &decision.Suppress{}
	}
	if !hasReason(res.Reasons, reason) {
		res.Reasons = append(res.Reasons, decision.Reason{Code: reason, Message: msg, RuleID: ruleServer})
	}
	if c.unknown {
		res.Reasons = append(res.Reasons, decision.Reason{Code: ReasonStoreOutcomeUnknown, RuleID: ruleServer,
			Message: "the event may have a committed decision: resend it once the store answers to learn it"})
	}
	resp, err := toResponse(c.id, res, in.Now)
	if err != nil {
		return nil, err
	}
	resp.Degraded, resp.DryRun = true, c.dryRun
	if c.dryRun {
		resp.PriorDecisionId = c.prior
	}
	if !c.dryRun {
		if err := s.spoolDegraded(ctx, c, resp); err != nil {
			return nil, err
		}
	}
	s.metrics.degraded.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	return resp, nil
}

// conflicted answers SUPPRESS with STORE_CONFLICT after the commit kept conflicting, and
// records that answer (with no effects, so it cannot conflict) so that the event id replays it.
func (s *Server) conflicted(ctx, sctx context.Context, c *call, lost *decision.Result, check string) (*arbiterv1.DecideResponse, error) {
	s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "decision failed closed after commit conflicts",
		slog.String("decision_id", c.id), slog.String("check", check))
	res := &decision.Result{
		Action:   decision.ActionSuppress,
		Suppress: &decision.Suppress{},
		Policy:   lost.Policy,
		Reasons: []decision.Reason{{Code: ReasonStoreConflict, RuleID: ruleServer,
			Message: "the customer's state kept changing under concurrent decisions"}},
	}
	resp, err := toResponse(c.id, res, c.in.Now)
	if err != nil {
		return nil, err
	}
	w, err := s.newCommit(c, res, resp)
	if err != nil {
		return nil, err
	}
	committed, err := s.commit(sctx, w)
	switch {
	case err != nil:
		return s.settle(ctx, c, err)
	case committed.Record != nil || committed.ArchivedID != "":
		return s.replayStored(ctx, c, committed.Record, committed.ArchivedID)
	}
	return resp, nil
}

func hasReason(rs []decision.Reason, code string) bool {
	for _, r := range rs {
		if r.Code == code {
			return true
		}
	}
	return false
}

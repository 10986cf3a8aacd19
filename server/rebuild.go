package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// ReasonStateUnverified: the store could not vouch for the customer's state (Redis lost its
// data) and it could not be rebuilt from the archive in time: the decision was made without
// it and fails closed.
const ReasonStateUnverified = "STATE_UNVERIFIED"

// stateWindow is how far back a customer's state reaches: the store keeps reserved messages
// and ledger entries for 31 days.
const stateWindow = 31 * 24 * time.Hour

// rebuilder is a store that rebuilds a customer's state (featurestore.Redis with
// featurestore.WithStateMarker).
type rebuilder interface {
	Rebuild(ctx context.Context, customerID string, st *featurestore.Rebuilt, now time.Time) error
}

var _ rebuilder = (*featurestore.Redis)(nil)

// verify answers a call whose customer's state the store cannot vouch for (Redis lost its
// data): it rebuilds the state from the archive, once per call, and returns nil, nil for the
// caller to read it again; never is a decision made on a state that may have forgotten a
// reached cap or a counted retry. A state that cannot be rebuilt gives a degraded answer with
// ReasonStateUnverified.
func (s *Server) verify(ctx context.Context, c *call) (*arbiterv1.DecideResponse, error) {
	if c.rebuilt {
		return s.degraded(ctx, c, ReasonStateUnverified, "customer state not verified after a rebuild: decided without it")
	}
	c.rebuilt = true
	if err := s.rebuild(ctx, c); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "customer state not rebuilt from the archive", slog.Any("err", err))
		return s.degraded(ctx, c, ReasonStateUnverified, "customer state could not be rebuilt from the archive: decided without it")
	}
	return nil, nil
}

// rebuild recomputes c's customer's state from the archive (the decisions of the state window
// and their outcomes, through the policy's own effects, and what erasures kept) and merges it into the store, so that
// a cap reached, a retry counted or a stop set before Redis lost its data holds after it.
func (s *Server) rebuild(ctx context.Context, c *call) error {
	rb, ok := s.store.(rebuilder)
	if !ok {
		return fmt.Errorf("%w: the store cannot rebuild state", featurestore.ErrUnavailable)
	}
	start := time.Now()
	cust := c.in.Customer.ID
	hist, err := s.opts.archive.CustomerHistory(ctx, cust, c.in.Now.Add(-stateWindow))
	if err != nil {
		return err
	}
	type decided struct {
		in  decision.Input
		res *decision.Result
	}
	byID := make(map[string]decided, len(hist))
	ids := make([]string, 0, len(hist))
	var st featurestore.Rebuilt
	for _, r := range hist {
		var rec arbiterv1.DecisionRecord
		if err := proto.Unmarshal(r.Body, &rec); err != nil {
			return fmt.Errorf("%w: archived record %s: %v", featurestore.ErrCorrupt, r.DecisionID, err)
		}
		if rec.GetResponse() == nil || rec.GetResponse().GetDegraded() || rec.GetResponse().GetDryRun() {
			continue // committed nothing
		}
		in := inputFromRecord(&rec)
		res := fromResponse(rec.GetResponse())
		eff := c.pol.Effects(&in, res)
		if m := eff.Message; m != nil {
			slot := *m
			slot.DecisionID = r.DecisionID
			st.Messages = append(st.Messages, slot)
		}
		st.Ledger = append(st.Ledger, eff.Ledger...)
		st.Stops = append(st.Stops, eff.Stops...)
		byID[r.DecisionID] = decided{in: in, res: res}
		ids = append(ids, r.DecisionID)
	}
	// An erasure deleted the customer's decisions but kept the suppression record in its
	// tombstone: what it kept counts as the decisions did.
	tombs, err := s.opts.archive.Erasures(ctx, cust)
	if err != nil {
		return err
	}
	since := c.in.Now.Add(-stateWindow)
	for _, t := range tombs {
		var kept featurestore.Kept
		if err := json.Unmarshal(t.Kept, &kept); err != nil {
			return fmt.Errorf("%w: erasure tombstone of %s: %v", featurestore.ErrCorrupt, t.ErasedAt.Format(time.RFC3339), err)
		}
		for _, m := range kept.Messages {
			if !m.At.Before(since) {
				st.Messages = append(st.Messages, m)
			}
		}
		for _, l := range kept.Ledger {
			if !l.At.Before(since) {
				st.Ledger = append(st.Ledger, l)
			}
		}
		for _, stop := range kept.Stops {
			if stop.Until.After(c.in.Now) {
				st.Stops = append(st.Stops, stop)
			}
		}
	}
	outs, err := s.opts.archive.OutcomesOf(ctx, ids)
	if err != nil {
		return err
	}
	for _, o := range outs {
		d, ok := byID[o.DecisionID]
		if !ok {
			continue
		}
		oe := c.pol.Outcome(&d.in, d.res, decision.Outcome(arbiterv1.Outcome_value[o.Outcome]), o.RecordedAt)
		if m := oe.ReleaseMessage; m != nil {
			st.Messages = slices.DeleteFunc(st.Messages, func(x decision.SentMessage) bool { return x.DecisionID == o.DecisionID })
		}
		if f := oe.FailChannel; f != nil {
			if st.Failing == nil {
				st.Failing = map[decision.Channel]time.Time{}
			}
			if f.Until.After(st.Failing[f.Channel]) {
				st.Failing[f.Channel] = f.Until
			}
		}
		if r := oe.ResetLedger; r != nil {
			st.Ledger = slices.DeleteFunc(st.Ledger, func(e decision.LedgerEntry) bool {
				return e.CardRef == r.CardRef && !e.At.After(o.RecordedAt)
			})
		}
	}
	_, err = storeDo(s, ctx, opLoad, cust, func(ctx context.Context) (struct{}, error) { return struct{}{}, rb.Rebuild(ctx, cust, &st, c.in.Now) })
	s.opts.logger.LogAttrs(ctx, slog.LevelInfo, "customer state rebuilt from the archive",
		slog.Int("decisions", len(ids)), slog.Int("messages", len(st.Messages)), slog.Int("ledger_entries", len(st.Ledger)),
		slog.Int("stops", len(st.Stops)), slog.Duration("took", time.Since(start)), slog.Any("err", err))
	return err
}

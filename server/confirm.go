package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// Confirm implements DecisionService/Confirm: an executor asks, right before it sends a
// MESSAGE or runs a RETRY, whether the decision still holds. It reads the decision and the
// customer's state now, re-checks them with the active policy's guardrails
// (decision.Policy.Recheck), and records the answer on the decision; a revocation releases
// the decision's frequency-cap reservation or retry-ledger slot, once. It fails closed: when
// the store cannot be read or written, the answer is proceed false with STORE_UNAVAILABLE,
// and nothing is recorded.
func (s *Server) Confirm(ctx context.Context, req *arbiterv1.ConfirmRequest) (*arbiterv1.ConfirmResponse, error) {
	id := req.GetDecisionId()
	if err := checkID("decision_id", id, true); err != nil {
		return nil, s.toStatus(ctx, "Confirm", err)
	}
	pol := s.policies.Load()
	if pol == nil {
		return nil, s.toStatus(ctx, "Confirm", rpcstatus.ErrNoPolicy)
	}
	now := s.opts.clock()
	rec, outs, state, haveState, err := s.readForConfirm(ctx, id, now)
	if err != nil {
		if isUnavailable(err) {
			return storeUnavailable(now), nil
		}
		return nil, s.toStatus(ctx, "Confirm", err)
	}
	resp := rec.GetResponse()
	action := decision.Action(resp.GetAction())
	if action != decision.ActionMessage && action != decision.ActionRetry {
		return nil, s.toStatus(ctx, "Confirm", rpcstatus.FailedPrecondition(
			"decision "+id+" is "+resp.GetAction().String()+": only MESSAGE and RETRY decisions are confirmed before execution"))
	}
	in := inputFromRecord(rec)
	customer := rec.GetCustomerId()
	if !haveState {
		state, err = storeDo(s, ctx, opState, customer, func(ctx context.Context) (decision.State, error) {
			return s.store.State(ctx, customer, now)
		})
		if err != nil {
			if isUnavailable(err) {
				return storeUnavailable(now), nil
			}
			return nil, s.toStatus(ctx, "Confirm", err)
		}
	}
	in.State, in.Now, in.Degraded, in.Explain = state, now, false, false

	pd := decision.Pending{DecisionID: id, EventType: decision.EventType(rec.GetEventType()), Action: action,
		DecidedAt: fromTS(resp.GetDecidedAt())}
	conf := &featurestore.Confirmation{CustomerID: customer, DecisionID: id, CheckedAt: now}
	for _, o := range outs {
		if o.Outcome == decision.OutcomePaid || o.Outcome == decision.OutcomeRetryApproved {
			pd.Paid = true
		}
	}
	if m := resp.GetMessage(); m != nil {
		pd.Channel, pd.Purpose, pd.SendAt = decision.Channel(m.GetChannel()), decision.Purpose(m.GetPurpose()), fromTS(m.GetSendAt())
		conf.Message = &decision.SentMessage{DecisionID: id, Channel: pd.Channel, Purpose: pd.Purpose, At: pd.SendAt}
	}
	if r := resp.GetRetry(); r != nil {
		pd.NotBefore = fromTS(r.GetNotBefore())
		for i := range state.Ledger {
			if e := &state.Ledger[i]; e.Kind == decision.LedgerRetry && e.EventID == rec.GetEventId() {
				conf.Retry = e
			}
		}
		// A payment clears the credential's ledger (RecordOutcome PAID): a retry whose own
		// entry is gone while its time is still ahead was paid for since.
		if conf.Retry == nil && !now.After(pd.NotBefore.Add(decision.ConfirmValidity)) {
			pd.Paid = true
		}
	}
	reasons := pol.Recheck(&in, &pd)
	conf.Proceed = len(reasons) == 0
	if conf.Proceed {
		reasons = []decision.Reason{{Code: decision.CodeStillValid, Message: "nothing that stops it has changed"}}
	}
	conf.Reasons = make([]string, len(reasons))
	for i, r := range reasons {
		conf.Reasons[i] = r.Code
	}
	prior, err := storeDoDecision(s, ctx, opConfirm, id, func(ctx context.Context) (*featurestore.StoredConfirmation, error) {
		return s.store.Confirm(ctx, conf)
	})
	if err != nil {
		if isUnavailable(err) {
			return storeUnavailable(now), nil
		}
		return nil, s.toStatus(ctx, "Confirm", err)
	}
	if prior != nil {
		// Revoked before: that answer stands.
		out := &arbiterv1.ConfirmResponse{CheckedAt: ts(prior.CheckedAt)}
		for _, c := range prior.Reasons {
			out.Reasons = append(out.Reasons, &arbiterv1.Reason{Code: c, Message: "revoked by an earlier Confirm"})
		}
		return out, nil
	}
	if !conf.Proceed && s.opts.revoke != nil {
		r := &arbiterv1.Revocation{CustomerId: customer, DecisionId: id, EventId: rec.GetEventId(),
			ReasonCodes: conf.Reasons, RevokedAt: ts(now), Scope: arbiterv1.RevocationScope_REVOCATION_SCOPE_DECISION,
			Policy: resp.GetPolicy()}
		if err := s.opts.revoke(ctx, r); err != nil {
			s.opts.logger.WarnContext(ctx, "revocation not published", slog.String("decision_id", id), slog.Any("err", err))
		}
	}
	return &arbiterv1.ConfirmResponse{Proceed: conf.Proceed, Reasons: toReasons(reasons), CheckedAt: ts(now)}, nil
}

// confirmReader is a store that reads a decision and its customer's state in one round trip
// (featurestore.Redis and featurestore.Memory).
type confirmReader interface {
	ReadForConfirm(ctx context.Context, decisionID string, now time.Time) (*featurestore.ConfirmRead, error)
}

var (
	_ confirmReader = (*featurestore.Redis)(nil)
	_ confirmReader = (*featurestore.Memory)(nil)
)

// readForConfirm reads the decision id, its outcomes and, when it can in the same round trip,
// its customer's state at now (haveState). A decision the store no longer holds is read from
// the archive, without the state.
func (s *Server) readForConfirm(ctx context.Context, id string, now time.Time) (rec *arbiterv1.DecisionRecord, outs []featurestore.StoredOutcome, st decision.State, haveState bool, err error) {
	cr, ok := s.store.(confirmReader)
	if !ok {
		rec, outs, _, err = s.getDecision(ctx, id)
		return rec, outs, st, false, err
	}
	read, err := storeDoDecision(s, ctx, opConfirm, id, func(ctx context.Context) (*featurestore.ConfirmRead, error) {
		return cr.ReadForConfirm(ctx, id, now)
	})
	if errors.Is(err, featurestore.ErrNotFound) {
		// Past the store's replay window (or the relay archived it and dropped the record).
		rec, outs, _, err = s.pastStore(ctx, id)
		return rec, outs, st, false, err
	}
	if err != nil {
		return nil, nil, st, false, err
	}
	if rec, err = decodeRecord(id, read.Record); err != nil {
		return nil, nil, st, false, err
	}
	haveState = read.CustomerID != "" && read.CustomerID == rec.GetCustomerId()
	return rec, read.Outcomes, read.State, haveState, nil
}

// storeUnavailable is Confirm's answer when the store cannot be used: do not execute.
func storeUnavailable(now time.Time) *arbiterv1.ConfirmResponse {
	return &arbiterv1.ConfirmResponse{CheckedAt: ts(now), Reasons: []*arbiterv1.Reason{{
		Code: decision.CodeStoreUnavailable, Message: "the customer's state could not be checked: do not execute now; confirm again later",
	}}}
}

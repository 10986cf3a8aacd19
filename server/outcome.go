package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// RecordOutcome reports what happened after a decision was executed. The active policy works
// out the state changes (a failed delivery releases the message slot and marks the channel as
// failing, an approved retry resets the ledger...), and the store applies them once: the same
// outcome for the same decision again is a duplicate and changes nothing.
func (s *Server) RecordOutcome(ctx context.Context, req *arbiterv1.RecordOutcomeRequest) (*arbiterv1.RecordOutcomeResponse, error) {
	dup, err := s.recordOutcome(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "RecordOutcome", err)
	}
	return &arbiterv1.RecordOutcomeResponse{Duplicate: dup}, nil
}

func (s *Server) recordOutcome(ctx context.Context, req *arbiterv1.RecordOutcomeRequest) (bool, error) {
	if err := validateRecordOutcome(req); err != nil {
		return false, err
	}
	pol := s.policies.Load()
	if pol == nil {
		return false, rpcstatus.ErrNoPolicy
	}
	rec, _, archived, err := s.getDecision(ctx, req.GetDecisionId())
	if err != nil {
		return false, err
	}
	in := inputFromRecord(rec)
	res := fromResponse(rec.GetResponse())
	now := s.opts.clock()
	occurred := now
	if req.OccurredAt != nil {
		occurred = req.GetOccurredAt().AsTime()
	}
	o := decision.Outcome(req.GetOutcome())
	eff := pol.Outcome(&in, res, o, now)
	if m := eff.ReleaseMessage; m != nil && m.DecisionID == "" {
		m.DecisionID = rec.GetDecisionId()
	}
	dup, err := storeDo(s, ctx, opRecordOutcome, rec.GetCustomerId(), func(ctx context.Context) (bool, error) {
		return s.store.RecordOutcome(ctx, &featurestore.OutcomeCommit{
			CustomerID: rec.GetCustomerId(),
			DecisionID: rec.GetDecisionId(),
			Outcome:    o,
			OccurredAt: occurred,
			Now:        now,
			Effects:    eff,
			Archived:   archived,
		})
	})
	if err == nil && !dup {
		s.metrics.recordOutcome(ctx, req.GetOutcome(), rec.GetResponse())
	}
	return dup, err
}

// GetDecision returns the stored record of a decision with the outcomes reported for it.
// Dry-run and degraded decisions are not recorded: NOT_FOUND.
func (s *Server) GetDecision(ctx context.Context, req *arbiterv1.GetDecisionRequest) (*arbiterv1.GetDecisionResponse, error) {
	if err := checkID("decision_id", req.GetDecisionId(), true); err != nil {
		return nil, s.toStatus(ctx, "GetDecision", err)
	}
	rec, err := s.decisionRecord(ctx, req.GetDecisionId())
	if err != nil {
		return nil, s.toStatus(ctx, "GetDecision", err)
	}
	return &arbiterv1.GetDecisionResponse{Record: rec}, nil
}

// decisionRecord reads a decision with its outcomes and confirmations.
func (s *Server) decisionRecord(ctx context.Context, id string) (*arbiterv1.DecisionRecord, error) {
	rec, outs, _, err := s.getDecision(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, o := range outs {
		rec.Outcomes = append(rec.Outcomes, toOutcomeRecord(o))
	}
	confs, err := storeDoDecision(s, ctx, opConfirm, id, func(ctx context.Context) ([]featurestore.StoredConfirmation, error) {
		return s.store.Confirmations(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	for _, c := range confs {
		rec.Confirmations = append(rec.Confirmations, &arbiterv1.Confirmation{
			Proceed: c.Proceed, ReasonCodes: c.Reasons, CheckedAt: ts(c.CheckedAt),
		})
	}
	return rec, nil
}

// getDecision reads a decision and its outcomes from the store or, past the store's replay
// window, from the archive (archived is then true).
func (s *Server) getDecision(ctx context.Context, id string) (rec *arbiterv1.DecisionRecord, outs []featurestore.StoredOutcome, archived bool, err error) {
	type stored struct {
		raw  []byte
		outs []featurestore.StoredOutcome
	}
	got, err := storeDoDecision(s, ctx, opGetDecision, id, func(ctx context.Context) (stored, error) {
		raw, outs, err := s.store.GetDecision(ctx, id)
		return stored{raw, outs}, err
	})
	if errors.Is(err, featurestore.ErrNotFound) {
		return s.pastStore(ctx, id)
	}
	if err != nil {
		return nil, nil, false, err
	}
	if rec, err = decodeRecord(id, got.raw); err != nil {
		return nil, nil, false, err
	}
	return rec, got.outs, false, nil
}

// pastStore reads a decision the store does not hold: past the store's replay window, the
// archive has it (archived true); without an archive, or when the archive has none either, it
// is NOT_FOUND.
func (s *Server) pastStore(ctx context.Context, id string) (rec *arbiterv1.DecisionRecord, outs []featurestore.StoredOutcome, archived bool, err error) {
	if s.opts.archive == nil {
		return nil, nil, false, rpcstatus.NotFound("decision", id)
	}
	raw, outs, err := s.archivedDecision(ctx, id)
	if errors.Is(err, featurestore.ErrNotFound) || errors.Is(err, archive.ErrNotFound) {
		return nil, nil, false, rpcstatus.NotFound("decision", id)
	}
	if err != nil {
		return nil, nil, false, err
	}
	if rec, err = decodeRecord(id, raw); err != nil {
		return nil, nil, false, err
	}
	return rec, outs, true, nil
}

// archivedDecision reads a decision and its outcomes from the archive.
func (s *Server) archivedDecision(ctx context.Context, id string) ([]byte, []featurestore.StoredOutcome, error) {
	rec, err := s.opts.archive.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	aouts, err := s.opts.archive.Outcomes(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	outs := make([]featurestore.StoredOutcome, 0, len(aouts))
	for _, o := range aouts {
		outs = append(outs, fromArchivedOutcome(o))
	}
	return rec.Body, outs, nil
}

// fromArchivedOutcome is an archived outcome as the store returns one.
func fromArchivedOutcome(o archive.Outcome) featurestore.StoredOutcome {
	return featurestore.StoredOutcome{Outcome: decision.Outcome(arbiterv1.Outcome_value[o.Outcome]),
		OccurredAt: o.OccurredAt, RecordedAt: o.RecordedAt}
}

// toOutcomeRecord is a stored outcome as a record shows it.
func toOutcomeRecord(o featurestore.StoredOutcome) *arbiterv1.OutcomeRecord {
	return &arbiterv1.OutcomeRecord{Outcome: arbiterv1.Outcome(o.Outcome), OccurredAt: ts(o.OccurredAt), RecordedAt: ts(o.RecordedAt)}
}

// decodeRecord decodes the stored record of decision id; one that does not decode is
// featurestore.ErrCorrupt.
func decodeRecord(id string, raw []byte) (*arbiterv1.DecisionRecord, error) {
	rec := &arbiterv1.DecisionRecord{}
	if err := proto.Unmarshal(raw, rec); err != nil {
		return nil, fmt.Errorf("%w: decision record %s: %v", featurestore.ErrCorrupt, id, err)
	}
	return rec, nil
}

package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// customerRecords is a store that exports and erases a customer's data: featurestore.Redis
// and featurestore.Memory.
type customerRecords interface {
	DecisionsOf(ctx context.Context, customerID string) ([]string, error)
	EraseCustomer(ctx context.Context, e *featurestore.Erasure) error
	Erasures(ctx context.Context, customerID string) ([]featurestore.StoredErasure, error)
}

var (
	_ customerRecords = (*featurestore.Redis)(nil)
	_ customerRecords = (*featurestore.Memory)(nil)
)

// Limits of the customer's-rights calls.
const (
	// MaxEraseReasonLen bounds EraseCustomerRequest.reason, in bytes.
	MaxEraseReasonLen = 256
	// maxExportDecisions bounds the decisions one export returns; the rest is left out, and
	// said so in the log. At the default replay window a customer has far fewer.
	maxExportDecisions = 10_000
)

// DisputeWindow is how long an erasure keeps a customer's retry ledger in the archive's
// tombstone: card-scheme chargebacks can be raised up to 120 days after a transaction, and the
// ledger is the evidence of which retries were made and why.
const DisputeWindow = 120 * 24 * time.Hour

// The bases for keeping data, as EraseCustomer states them in the tombstone.
const (
	basisSuppression = "suppression record: the customer must not be contacted against it (GDPR art. 17(3)(b), 21(3); ICO guidance on suppression lists)"
	basisCaps        = "frequency-cap reservations until they age out of their cap windows: erasing them would let the customer be contacted over a cap"
	basisLedger      = "retry ledger for the card schemes' retry rules and the 120-day dispute window (GDPR art. 17(3)(b), (e))"
	basisStops       = "retry stops until they end: a stopped credential must not be retried"
)

// records returns the store's customerRecords, or an error when it has none.
func (s *Server) records() (customerRecords, error) {
	r, ok := s.store.(customerRecords)
	if !ok {
		return nil, fmt.Errorf("%w: the store cannot export or erase a customer", featurestore.ErrUnavailable)
	}
	return r, nil
}

// ExportCustomer returns everything Arbiter holds about a customer (GDPR article 15).
func (s *Server) ExportCustomer(ctx context.Context, req *arbiterv1.ExportCustomerRequest) (*arbiterv1.ExportCustomerResponse, error) {
	resp, err := s.exportCustomer(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "ExportCustomer", err)
	}
	return resp, nil
}

func (s *Server) exportCustomer(ctx context.Context, req *arbiterv1.ExportCustomerRequest) (*arbiterv1.ExportCustomerResponse, error) {
	cust := req.GetCustomerId()
	if err := checkID("customer_id", cust, true); err != nil {
		return nil, err
	}
	rs, err := s.records()
	if err != nil {
		return nil, err
	}
	state, err := s.customerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: cust})
	if err != nil {
		return nil, err
	}
	resp := &arbiterv1.ExportCustomerResponse{CustomerId: cust, State: state, ExportedAt: ts(s.opts.clock())}
	ids, err := storeDo(s, ctx, opExport, cust, func(ctx context.Context) ([]string, error) { return rs.DecisionsOf(ctx, cust) })
	if err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if len(resp.Decisions) == maxExportDecisions {
			break
		}
		rec, err := s.decisionRecord(ctx, id)
		if err != nil {
			if isNotFound(err) {
				continue // expired or erased since it was listed
			}
			return nil, err
		}
		seen[id] = struct{}{}
		resp.Decisions = append(resp.Decisions, rec)
	}
	if a := s.opts.archive; a != nil {
		resp.ArchiveIncluded = true
		if err := s.exportArchived(ctx, a, cust, seen, resp); err != nil {
			return nil, err
		}
		tombs, err := a.Erasures(ctx, cust)
		if err != nil {
			return nil, err
		}
		for _, t := range tombs {
			var kept featurestore.Kept
			if err := json.Unmarshal(t.Kept, &kept); err != nil {
				return nil, fmt.Errorf("%w: erasure tombstone: %v", featurestore.ErrCorrupt, err)
			}
			resp.Erasures = append(resp.Erasures, toErasure(cust, t.ErasedAt, t.Actor, t.Reason, t.Erased, &kept))
		}
	} else {
		tombs, err := storeDo(s, ctx, opExport, cust, func(ctx context.Context) ([]featurestore.StoredErasure, error) {
			return rs.Erasures(ctx, cust)
		})
		if err != nil {
			return nil, err
		}
		for _, t := range tombs {
			resp.Erasures = append(resp.Erasures, toErasure(cust, t.At, t.Actor, t.Reason, t.Erased, &t.Kept))
		}
	}
	if len(resp.Decisions) == maxExportDecisions {
		s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "customer export truncated", slog.Int("decisions", maxExportDecisions))
	}
	slices.SortStableFunc(resp.Decisions, func(a, b *arbiterv1.DecisionRecord) int {
		return cmp.Or(a.GetResponse().GetDecidedAt().AsTime().Compare(b.GetResponse().GetDecidedAt().AsTime()),
			cmp.Compare(a.GetDecisionId(), b.GetDecisionId()))
	})
	return resp, nil
}

// exportArchived adds the customer's archived decisions that the store did not return (seen).
func (s *Server) exportArchived(ctx context.Context, a Archive, cust string, seen map[string]struct{}, resp *arbiterv1.ExportCustomerResponse) error {
	hist, err := a.CustomerHistory(ctx, cust, time.Time{})
	if err != nil {
		return err
	}
	var recs []*arbiterv1.DecisionRecord
	var ids []string
	for _, r := range hist {
		if _, dup := seen[r.DecisionID]; dup || len(resp.Decisions)+len(recs) == maxExportDecisions {
			continue
		}
		rec, err := decodeRecord(r.DecisionID, r.Body)
		if err != nil {
			return err
		}
		recs, ids = append(recs, rec), append(ids, r.DecisionID)
	}
	if len(ids) == 0 {
		return nil
	}
	outs, err := a.OutcomesOf(ctx, ids)
	if err != nil {
		return err
	}
	byID := make(map[string]*arbiterv1.DecisionRecord, len(recs))
	for i, rec := range recs {
		byID[ids[i]] = rec
	}
	for _, o := range outs {
		if rec := byID[o.DecisionID]; rec != nil {
			rec.Outcomes = append(rec.Outcomes, toOutcomeRecord(fromArchivedOutcome(o)))
		}
	}
	resp.Decisions = append(resp.Decisions, recs...)
	return nil
}

// EraseCustomer erases a customer's data (GDPR article 17) from the store and the archive and
// returns the tombstone. It keeps the customer's suppression record (featurestore.Kept), and
// in the archive's tombstone the retry ledger for the DisputeWindow.
//
// The store goes first and reports the ids of the decisions it held; the archive then deletes
// the customer's decisions and marks those ids, so that a relay still copying one of them
// from the outbox archives nothing. When the archive cannot be reached after the store was
// erased, the call fails UNAVAILABLE and may be repeated: the store then has nothing more to
// erase, and the archive's part runs again.
func (s *Server) EraseCustomer(ctx context.Context, req *arbiterv1.EraseCustomerRequest) (*arbiterv1.EraseCustomerResponse, error) {
	resp, err := s.eraseCustomer(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "EraseCustomer", err)
	}
	return resp, nil
}

func (s *Server) eraseCustomer(ctx context.Context, req *arbiterv1.EraseCustomerRequest) (*arbiterv1.EraseCustomerResponse, error) {
	cust := req.GetCustomerId()
	if err := checkID("customer_id", cust, true); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.GetReason(), MaxEraseReasonLen); err != nil {
		return nil, err
	}
	rs, err := s.records()
	if err != nil {
		return nil, err
	}
	e := &featurestore.Erasure{CustomerID: cust, At: s.opts.clock(), Actor: actor(ctx), Reason: req.GetReason()}
	if _, err := storeDo(s, ctx, opErase, cust, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, rs.EraseCustomer(ctx, e)
	}); err != nil {
		return nil, err
	}
	erased := e.Erased
	if a := s.opts.archive; a != nil {
		kept := e.Kept
		kept.Ledger = slices.DeleteFunc(slices.Clone(kept.Ledger), func(l decision.LedgerEntry) bool {
			return l.At.Before(e.At.Add(-DisputeWindow))
		})
		body, err := json.Marshal(kept)
		if err != nil {
			return nil, err
		}
		ae, err := a.Erase(ctx, archive.Erasure{
			CustomerID: cust, ErasedAt: e.At, Actor: e.Actor, Reason: e.Reason,
			Erased: e.Erased, Kept: body, DecisionIDs: e.DecisionIDs,
		})
		if err != nil {
			return nil, fmt.Errorf("erased from the store, not yet from the archive (call again): %w", err)
		}
		erased = ae.Erased
	}
	s.opts.logger.LogAttrs(ctx, slog.LevelInfo, "customer erased", slog.String("actor", e.Actor),
		slog.Any("erased", erased), slog.Bool("archive", s.opts.archive != nil))
	return &arbiterv1.EraseCustomerResponse{Erasure: toErasure(cust, e.At, e.Actor, e.Reason, erased, &e.Kept)}, nil
}

// toErasure builds a tombstone message.
func toErasure(cust string, at time.Time, actor, reason string, erased map[string]int64, kept *featurestore.Kept) *arbiterv1.Erasure {
	out := &arbiterv1.Erasure{CustomerId: cust, ErasedAt: ts(at), Actor: actor, Reason: reason, Erased: erased}
	var suppress, denials int64
	for name := range kept.Features {
		if strings.HasPrefix(name, "consent_") {
			denials++
		} else {
			suppress++
		}
	}
	add := func(kind string, n int64, basis string, until time.Time) {
		if n == 0 {
			return
		}
		k := &arbiterv1.KeptData{Kind: kind, Count: n, Basis: basis}
		if !until.IsZero() {
			k.Until = ts(until)
		}
		out.Kept = append(out.Kept, k)
	}
	add("protective_features", suppress, basisSuppression, time.Time{})
	add("consent_denials", denials, basisSuppression, time.Time{})
	var last time.Time
	for _, m := range kept.Messages {
		last = later(last, m.At.Add(31*24*time.Hour))
	}
	add("message_reservations", int64(len(kept.Messages)), basisCaps, last)
	last = time.Time{}
	for _, l := range kept.Ledger {
		last = later(last, l.At.Add(DisputeWindow))
	}
	add("retry_ledger", int64(len(kept.Ledger)), basisLedger, last)
	last = time.Time{}
	for _, st := range kept.Stops {
		last = later(last, st.Until)
	}
	add("retry_stops", int64(len(kept.Stops)), basisStops, last)
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// isNotFound reports a NOT_FOUND answer of getDecision.
func isNotFound(err error) bool {
	return errors.Is(err, featurestore.ErrNotFound) || errors.Is(err, archive.ErrNotFound) || status.Code(err) == codes.NotFound
}

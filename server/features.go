package server

import (
	"context"
	"slices"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// PutFeatures merges features into the customer's stored features; a null value deletes one.
// Limits: MaxFeatures entries, MaxFeatureValueLen bytes per value and MaxFeaturesLen in
// total (JSON-encoded), ttl positive and at most MaxFeatureTTL.
func (s *Server) PutFeatures(ctx context.Context, req *arbiterv1.PutFeaturesRequest) (*arbiterv1.PutFeaturesResponse, error) {
	features, ttl, err := validatePutFeatures(req)
	if err == nil {
		_, err = storeDo(s, ctx, opPutFeatures, req.GetCustomerId(), func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.store.PutFeatures(ctx, req.GetCustomerId(), features, ttl)
		})
	}
	if err != nil {
		return nil, s.toStatus(ctx, "PutFeatures", err)
	}
	return &arbiterv1.PutFeaturesResponse{}, nil
}

// GetCustomerState returns the live picture of a customer: features, the frequency-cap
// counters of the active policy, reserved messages, retry ledgers summarised per credential,
// retry stops, failing channels and recent decisions. An unknown customer has an empty state.
func (s *Server) GetCustomerState(ctx context.Context, req *arbiterv1.GetCustomerStateRequest) (*arbiterv1.GetCustomerStateResponse, error) {
	resp, err := s.customerState(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "GetCustomerState", err)
	}
	return resp, nil
}

func (s *Server) customerState(ctx context.Context, req *arbiterv1.GetCustomerStateRequest) (*arbiterv1.GetCustomerStateResponse, error) {
	if err := checkID("customer_id", req.GetCustomerId(), true); err != nil {
		return nil, err
	}
	now := s.opts.clock()
	st, err := storeDo(s, ctx, opState, req.GetCustomerId(), func(ctx context.Context) (decision.State, error) {
		return s.store.State(ctx, req.GetCustomerId(), now)
	})
	if err != nil {
		return nil, err
	}
	features, err := toValues(st.Features)
	if err != nil {
		return nil, err
	}
	resp := &arbiterv1.GetCustomerStateResponse{
		CustomerId:      req.GetCustomerId(),
		Features:        features,
		RetryLedgers:    summariseLedger(st.Ledger, now),
		RetryStops:      toStops(st.Stops),
		FailingChannels: toFailing(st.FailingChannels),
		RecentDecisions: toSummaries(st.Recent),
	}
	for _, m := range st.Messages {
		resp.Messages = append(resp.Messages, toSentMessage(m))
	}
	if pol := s.policies.Load(); pol != nil {
		resp.Counters = toCounters(pol.Counters(st, now))
	}
	return resp, nil
}

// ledgerKey is a credential as the retry ledger counts it.
type ledgerKey struct {
	cardRef, merchantID, currency string
	amount                        int64
	initiator                     decision.Initiator
	network                       decision.Network
}

// summariseLedger counts the ledger per credential, merchant, amount, currency, initiator and
// network, in the order each credential first appears.
func summariseLedger(entries []decision.LedgerEntry, now time.Time) []*arbiterv1.RetryLedger {
	var out []*arbiterv1.RetryLedger
	index := map[ledgerKey]*arbiterv1.RetryLedger{}
	dayAgo, monthAgo := now.Add(-24*time.Hour), now.Add(-30*24*time.Hour)
	for _, e := range entries {
		k := ledgerKey{e.CardRef, e.MerchantID, e.Currency, e.AmountMinor, e.Initiator, e.Network}
		l := index[k]
		if l == nil {
			l = &arbiterv1.RetryLedger{
				CardRef: e.CardRef, MerchantId: e.MerchantID, AmountMinor: e.AmountMinor, Currency: e.Currency,
				Initiator: arbiterv1.Initiator(e.Initiator), Network: arbiterv1.CardNetwork(e.Network),
			}
			index[k] = l
			out = append(out, l)
		}
		if e.At.Before(monthAgo) {
			continue
		}
		switch e.Kind {
		case decision.LedgerDecline:
			l.Declines_30D++
			if !e.At.Before(dayAgo) {
				l.Declines_24H++
			}
		case decision.LedgerRetry:
			l.Retries_30D++
		}
	}
	return slices.Clip(out)
}

package server

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

func TestRecordOutcome(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			resp, err := h.dc.Decide(ctx, overdue("ev-1", "cust-1"))
			if err != nil {
				t.Fatalf("Decide() error: %v", err)
			}
			c.Advance(time.Minute)
			occurred := testNow.Add(30 * time.Second)
			req := &arbiterv1.RecordOutcomeRequest{
				DecisionId: resp.GetDecisionId(), Outcome: arbiterv1.Outcome_OUTCOME_DELIVERY_FAILED,
				OccurredAt: timestamppb.New(occurred),
			}
			for i, wantDup := range []bool{false, true} {
				got, err := h.dc.RecordOutcome(ctx, req)
				if err != nil {
					t.Fatalf("RecordOutcome() #%d error: %v", i+1, err)
				}
				if got.GetDuplicate() != wantDup {
					t.Errorf("RecordOutcome() #%d duplicate = %v, want %v", i+1, got.GetDuplicate(), wantDup)
				}
			}
			dec, err := h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()})
			if err != nil {
				t.Fatalf("GetDecision() error: %v", err)
			}
			want := []*arbiterv1.OutcomeRecord{{
				Outcome: arbiterv1.Outcome_OUTCOME_DELIVERY_FAILED, OccurredAt: timestamppb.New(occurred),
				RecordedAt: timestamppb.New(testNow.Add(time.Minute)),
			}}
			if diff := cmp.Diff(want, dec.GetRecord().GetOutcomes(), protocmp.Transform()); diff != "" {
				t.Errorf("GetDecision().outcomes mismatch (-want +got):\n%s", diff)
			}
			// A failed delivery releases the message slot and marks the channel as failing.
			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			if len(st.GetMessages()) != 0 {
				t.Errorf("GetCustomerState().messages after DELIVERY_FAILED = %v, want the slot released", st.GetMessages())
			}
			if fs := st.GetFailingChannels(); len(fs) != 1 || fs[0].GetChannel() != arbiterv1.Channel_CHANNEL_EMAIL {
				t.Errorf("GetCustomerState().failing_channels after DELIVERY_FAILED = %v, want CHANNEL_EMAIL", fs)
			}
		})
	}
}

func TestRecordOutcomeInvalid(t *testing.T) {
	c := newClock(testNow)
	h := newHarness(t, memoryStore(t, c), c)
	tests := []struct {
		name string
		req  *arbiterv1.RecordOutcomeRequest
		code codes.Code
	}{
		{"no decision id", &arbiterv1.RecordOutcomeRequest{Outcome: arbiterv1.Outcome_OUTCOME_PAID}, codes.InvalidArgument},
		{"no outcome", &arbiterv1.RecordOutcomeRequest{DecisionId: "x"}, codes.InvalidArgument},
		{"unknown outcome", &arbiterv1.RecordOutcomeRequest{DecisionId: "x", Outcome: 99}, codes.InvalidArgument},
		{"unknown decision", &arbiterv1.RecordOutcomeRequest{DecisionId: "00-0190f5a2-7c1e-7d4b-9a51-0c3e5b7d9f21", Outcome: arbiterv1.Outcome_OUTCOME_PAID}, codes.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.dc.RecordOutcome(t.Context(), tc.req)
			if got := status.Code(err); got != tc.code {
				t.Errorf("RecordOutcome(%s) = %v (%v), want %v", tc.name, got, err, tc.code)
			}
		})
	}
	if _, err := h.dc.GetDecision(t.Context(), &arbiterv1.GetDecisionRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetDecision(no id) error = %v, want InvalidArgument", err)
	}
}

package server

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestSnapshotRoundTrip checks that a state survives toSnapshot, encoding and fromSnapshot
// exactly: replay depends on it.
func TestSnapshotRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 8, 30, 0, 123_000_000, time.UTC)
	tests := []struct {
		name string
		st   decision.State
	}{
		{"empty", decision.State{}},
		{"full", decision.State{
			Features: map[string]any{
				"opted_out": true, "risk_score": 0.75, "timezone": "Europe/London", "none": nil,
				"list": []any{"a", 1.0, false}, "map": map[string]any{"k": "v"},
			},
			Messages: []decision.SentMessage{{DecisionID: "d1", Channel: decision.ChannelSMS, Purpose: decision.PurposeCollections, At: at}},
			Ledger: []decision.LedgerEntry{
				{Kind: decision.LedgerDecline, EventID: "e1", CardRef: "tok", MerchantID: "m", AmountMinor: 100, Currency: "EUR",
					Initiator: decision.InitiatorMerchant, Network: decision.NetworkMastercard, At: at},
				{Kind: decision.LedgerRetry, EventID: "e1", CardRef: "tok", At: at.Add(time.Hour)},
			},
			Stops:           []decision.RetryStop{{CardRef: "tok", MerchantID: "m", Until: at.Add(30 * 24 * time.Hour), ReasonCode: "MAC_DO_NOT_RETRY"}},
			FailingChannels: []decision.ChannelFailure{{Channel: decision.ChannelEmail, Until: at.Add(24 * time.Hour)}},
			Recent: []decision.DecisionSummary{{DecisionID: "d1", EventID: "e1", EventType: decision.EventPaymentFailed,
				Action: decision.ActionRetry, ReasonCodes: []string{"SOFT_DECLINE"}, DecidedAt: at}},
		}},
		// A narrowed state keeps its counts, zero included.
		{"narrowed", decision.State{Narrowed: true, LedgerDeclines30d: 7, RecentDecisions24h: 2,
			Ledger: []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: "e1", CardRef: "tok", At: at}}}},
		{"narrowed, no counts", decision.State{Narrowed: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := toSnapshot(&tc.st)
			if err != nil {
				t.Fatalf("toSnapshot() error: %v", err)
			}
			b, err := proto.Marshal(snap)
			if err != nil {
				t.Fatalf("proto.Marshal() error: %v", err)
			}
			var back arbiterv1.StateSnapshot
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Fatalf("proto.Unmarshal() error: %v", err)
			}
			got := fromSnapshot(&back)
			if diff := cmp.Diff(tc.st, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("fromSnapshot(toSnapshot(state)) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestResponseRoundTrip checks that a recorded answer rebuilds the result RecordOutcome needs.
func TestResponseRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)
	tests := []struct {
		name string
		res  *decision.Result
		want *decision.Result
	}{
		{"message", &decision.Result{
			Action:  decision.ActionMessage,
			Message: &decision.Message{Channel: decision.ChannelSMS, TemplateID: "t", Purpose: decision.PurposeService, SendAt: at, FallbackChannels: []decision.Channel{decision.ChannelEmail}},
			Reasons: []decision.Reason{{Code: "X", Message: "m", RuleID: "r"}},
			Policy:  decision.PolicyRef{ID: "p", Version: "1", Digest: "d"},
		}, nil},
		{"retry", &decision.Result{Action: decision.ActionRetry, Retry: &decision.Retry{NotBefore: at, Acquirer: "a", Attempt: 2}}, nil},
		{"escalate", &decision.Result{Action: decision.ActionEscalate, Escalate: &decision.Escalate{Queue: "q", Priority: 1, Context: map[string]string{"k": "v"}}}, nil},
		{"suppress", &decision.Result{Action: decision.ActionSuppress, Suppress: &decision.Suppress{Until: at}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := toResponse("00-id", tc.res, at)
			if err != nil {
				t.Fatalf("toResponse() error: %v", err)
			}
			got := fromResponse(resp)
			want := *tc.res
			if want.Message != nil {
				want.Effects.Message = &decision.SentMessage{DecisionID: "00-id", Channel: want.Message.Channel, Purpose: want.Message.Purpose, At: at}
			}
			if diff := cmp.Diff(&want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("fromResponse(toResponse(result)) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidateDecideAllocatesNothing: a valid request, attributes and consents included, is
// checked without allocating: field names are built only for an error.
func TestValidateDecideAllocatesNothing(t *testing.T) {
	req := declined("ev-alloc", "cust-alloc")
	req.Event.Attributes = map[string]string{"order_id": "o-1", "channel": "web", "basket": "3 items"}
	if err := validateDecide(req); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = validateDecide(req) }); n != 0 {
		t.Errorf("validateDecide of a valid request: %v allocations, want 0", n)
	}
}

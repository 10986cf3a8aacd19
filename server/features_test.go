package server

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

func mustValue(t *testing.T, v any) *structpb.Value {
	t.Helper()
	pv, err := structpb.NewValue(v)
	if err != nil {
		t.Fatalf("structpb.NewValue(%v): %v", v, err)
	}
	return pv
}

func TestPutFeaturesAndState(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			features := map[string]*structpb.Value{
				"opted_out":     mustValue(t, false),
				"days_past_due": mustValue(t, 12.0),
				"timezone":      mustValue(t, "Europe/Paris"),
				"tags":          mustValue(t, []any{"gold", 3.0}),
				"address":       mustValue(t, map[string]any{"country": "FR"}),
				"gone":          mustValue(t, "soon"),
			}
			if _, err := h.fc.PutFeatures(ctx, &arbiterv1.PutFeaturesRequest{
				CustomerId: "cust-1", Features: features, Ttl: durationpb.New(24 * time.Hour),
			}); err != nil {
				t.Fatalf("PutFeatures() error: %v", err)
			}
			// A null value deletes a feature.
			if _, err := h.fc.PutFeatures(ctx, &arbiterv1.PutFeaturesRequest{
				CustomerId: "cust-1", Features: map[string]*structpb.Value{"gone": structpb.NewNullValue()},
			}); err != nil {
				t.Fatalf("PutFeatures(null) error: %v", err)
			}
			delete(features, "gone")
			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			if diff := cmp.Diff(features, st.GetFeatures(), protocmp.Transform()); diff != "" {
				t.Errorf("GetCustomerState().features mismatch (-want +got):\n%s", diff)
			}
			if st.GetCustomerId() != "cust-1" {
				t.Errorf("GetCustomerState().customer_id = %q, want cust-1", st.GetCustomerId())
			}

			// Decisions read the stored features: past 8 days due, the reminder is an SMS
			// (here without SMS consent, so the e-mail fallback, still a MESSAGE).
			resp, err := h.dc.Decide(ctx, overdue("ev-1", "cust-1"))
			if err != nil {
				t.Fatalf("Decide() error: %v", err)
			}
			rec, err := h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()})
			if err != nil {
				t.Fatalf("GetDecision() error: %v", err)
			}
			if diff := cmp.Diff(features, rec.GetRecord().GetSnapshot().GetFeatures(), protocmp.Transform()); diff != "" {
				t.Errorf("GetDecision().snapshot.features mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPutFeaturesNullDeletes: JSON null deletes a feature in each form it reaches the server
// through a real gRPC call: protojson's null_value (arbiter features, any protojson client), a
// map entry whose value is an empty message, and a map entry with no value at all, which is how
// grpcurl (dynamic messages) encodes `"name": null`.
func TestPutFeaturesNullDeletes(t *testing.T) {
	// wireNoValue is PutFeaturesRequest{customer_id: "cust-1", features: {"c": <absent>}} as
	// grpcurl puts it on the wire: the map entry holds its key and no value field.
	var entry []byte
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "c")
	var wireNoValue []byte
	wireNoValue = protowire.AppendTag(wireNoValue, 1, protowire.BytesType)
	wireNoValue = protowire.AppendString(wireNoValue, "cust-1")
	wireNoValue = protowire.AppendTag(wireNoValue, 2, protowire.BytesType)
	wireNoValue = protowire.AppendBytes(wireNoValue, entry)

	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			put := func(what string, req *arbiterv1.PutFeaturesRequest) {
				t.Helper()
				if _, err := h.fc.PutFeatures(ctx, req); err != nil {
					t.Fatalf("PutFeatures(%s) error: %v", what, err)
				}
			}
			var req arbiterv1.PutFeaturesRequest
			if err := protojson.Unmarshal([]byte(`{"customer_id": "cust-1", "features": {"a": 1, "b": "x", "c": true, "d": [1]}}`), &req); err != nil {
				t.Fatal(err)
			}
			put("a, b, c, d", &req)

			// protojson: "a": null.
			req.Reset()
			if err := protojson.Unmarshal([]byte(`{"customer_id": "cust-1", "features": {"a": null}}`), &req); err != nil {
				t.Fatalf("protojson.Unmarshal(a: null): %v", err)
			}
			put("a: null (protojson)", &req)
			// A map entry whose value is an empty google.protobuf.Value.
			put("b: empty Value", &arbiterv1.PutFeaturesRequest{CustomerId: "cust-1", Features: map[string]*structpb.Value{"b": {}}})
			// A map entry with no value (grpcurl).
			req.Reset()
			if err := proto.Unmarshal(wireNoValue, &req); err != nil {
				t.Fatalf("proto.Unmarshal(entry without value): %v", err)
			}
			put("c: entry without value (grpcurl)", &req)

			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			want := map[string]*structpb.Value{"d": mustValue(t, []any{1.0})}
			if diff := cmp.Diff(want, st.GetFeatures(), protocmp.Transform()); diff != "" {
				t.Errorf("GetCustomerState().features after three deletes mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPutFeaturesInvalid(t *testing.T) {
	c := newClock(testNow)
	h := newHarness(t, memoryStore(t, c), c)
	many := map[string]*structpb.Value{}
	for i := range MaxFeatures + 1 {
		many[strings.Repeat("f", 1+i%100)+string(rune('a'+i/100))] = structpb.NewBoolValue(true)
	}
	big := structpb.NewStringValue(strings.Repeat("x", MaxFeatureValueLen))
	tests := []struct {
		name  string
		req   *arbiterv1.PutFeaturesRequest
		field string
	}{
		{"no customer", &arbiterv1.PutFeaturesRequest{Features: map[string]*structpb.Value{"a": structpb.NewBoolValue(true)}}, "customer_id"},
		{"no features", &arbiterv1.PutFeaturesRequest{CustomerId: "c"}, "features"},
		{"too many features", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: many}, "features"},
		{"value too large", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"a": big}}, `features["a"]`},
		{"control character in name", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"a\tb": structpb.NewBoolValue(true)}}, "features key"},
		{"NaN", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"score": structpb.NewNumberValue(math.NaN())}}, `features["score"]`},
		{"infinity", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"score": structpb.NewNumberValue(math.Inf(1))}}, `features["score"]`},
		{"minus infinity in a struct", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"risk": structpb.NewStructValue(&structpb.Struct{
			Fields: map[string]*structpb.Value{"score": structpb.NewNumberValue(math.Inf(-1))},
		})}}, `features["risk"]["score"]`},
		{"NaN in a list", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"scores": structpb.NewListValue(&structpb.ListValue{
			Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewNumberValue(math.NaN())},
		})}}, `features["scores"][1]`},
		{"negative ttl", &arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"a": structpb.NewBoolValue(true)}, Ttl: durationpb.New(-time.Second)}, "ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.fc.PutFeatures(t.Context(), tc.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "invalid "+tc.field+": ") {
				t.Errorf("PutFeatures(%s) = %v %q, want InvalidArgument naming %q", tc.name, st.Code(), st.Message(), tc.field)
			}
		})
	}
	if _, err := h.fc.GetCustomerState(t.Context(), &arbiterv1.GetCustomerStateRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetCustomerState(no id) error = %v, want InvalidArgument", err)
	}
}

func TestGetCustomerStateLedger(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			var retries int64
			for i, ev := range []string{"d-1", "d-2"} {
				resp, err := h.dc.Decide(ctx, declined(ev, "cust-1"))
				if err != nil {
					t.Fatalf("Decide(decline %d) error: %v", i, err)
				}
				if resp.GetAction() == arbiterv1.Action_ACTION_RETRY {
					retries++
				}
				c.Advance(time.Hour)
			}
			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			want := []*arbiterv1.RetryLedger{{
				CardRef: "tok_abc", MerchantId: "m-1", AmountMinor: 1999, Currency: "GBP",
				Initiator: arbiterv1.Initiator_INITIATOR_MERCHANT, Network: arbiterv1.CardNetwork_CARD_NETWORK_VISA,
				Declines_24H: 2, Declines_30D: 2, Retries_30D: retries,
			}}
			if diff := cmp.Diff(want, st.GetRetryLedgers(), protocmp.Transform()); diff != "" {
				t.Errorf("GetCustomerState().retry_ledgers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSummariseLedger(t *testing.T) {
	now := testNow
	e := func(kind decision.LedgerKind, card string, ago time.Duration) decision.LedgerEntry {
		return decision.LedgerEntry{Kind: kind, CardRef: card, Currency: "EUR", AmountMinor: 5, At: now.Add(-ago)}
	}
	got := summariseLedger([]decision.LedgerEntry{
		e(decision.LedgerDecline, "a", time.Hour),
		e(decision.LedgerDecline, "a", 48*time.Hour),
		e(decision.LedgerRetry, "a", 48*time.Hour),
		e(decision.LedgerDecline, "b", 40*24*time.Hour), // outside 30 days
	}, now)
	want := []*arbiterv1.RetryLedger{
		{CardRef: "a", Currency: "EUR", AmountMinor: 5, Declines_24H: 1, Declines_30D: 2, Retries_30D: 1},
		{CardRef: "b", Currency: "EUR", AmountMinor: 5},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("summariseLedger() mismatch (-want +got):\n%s", diff)
	}
}

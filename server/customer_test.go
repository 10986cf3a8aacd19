package server

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// A customer who opted out asks for their data and then for its erasure: the export holds the
// decision with its outcome; after the erasure the decision is gone everywhere, the opt-out,
// the consent denial and the cap reservation stay, a tombstone says who erased what, and the
// next event still finds the customer unreachable.
func TestExportAndEraseCustomer(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			const cust = "cust-gdpr"
			put := func(f map[string]any) {
				t.Helper()
				s, err := structpb.NewStruct(f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := h.fc.PutFeatures(ctx, &arbiterv1.PutFeaturesRequest{CustomerId: cust, Features: s.GetFields()}); err != nil {
					t.Fatalf("PutFeatures() = %v", err)
				}
			}
			put(map[string]any{"segment": "gold", "consent_sms_marketing": false})
			resp, err := h.dc.Decide(ctx, overdue("ev-1", cust))
			if err != nil || resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
				t.Fatalf("Decide(overdue) = %v, %v; want a MESSAGE", resp.GetAction(), err)
			}
			if _, err := h.dc.RecordOutcome(ctx, &arbiterv1.RecordOutcomeRequest{DecisionId: resp.GetDecisionId(),
				Outcome: arbiterv1.Outcome_OUTCOME_DELIVERED, OccurredAt: timestamppb.New(testNow)}); err != nil {
				t.Fatalf("RecordOutcome() = %v", err)
			}

			exp, err := h.fc.ExportCustomer(ctx, &arbiterv1.ExportCustomerRequest{CustomerId: cust})
			if err != nil {
				t.Fatalf("ExportCustomer() = %v", err)
			}
			if n := len(exp.GetDecisions()); n != 1 || exp.GetDecisions()[0].GetDecisionId() != resp.GetDecisionId() ||
				len(exp.GetDecisions()[0].GetOutcomes()) != 1 {
				t.Fatalf("ExportCustomer() = %d decisions, want the one decided, with its outcome", n)
			}
			if f := exp.GetState().GetFeatures(); f["segment"].GetStringValue() != "gold" || len(exp.GetState().GetMessages()) != 1 {
				t.Errorf("ExportCustomer().state = features %v, %d messages; want the features and the reserved message", f, len(exp.GetState().GetMessages()))
			}
			if exp.GetArchiveIncluded() || len(exp.GetErasures()) != 0 {
				t.Errorf("ExportCustomer() archive_included %v, %d erasures; want false, none", exp.GetArchiveIncluded(), len(exp.GetErasures()))
			}

			put(map[string]any{"opted_out": true})
			c.Advance(time.Minute)
			er, err := h.fc.EraseCustomer(ctx, &arbiterv1.EraseCustomerRequest{CustomerId: cust, Reason: "ticket-1"})
			if err != nil {
				t.Fatalf("EraseCustomer() = %v", err)
			}
			tomb := er.GetErasure()
			if got := tomb.GetErased(); got["decisions"] != 1 || got["events"] != 1 || got["outcomes"] != 1 || got["features"] != 1 {
				t.Errorf("EraseCustomer().erased = %v, want 1 decision, event, outcome and feature", got)
			}
			kept := map[string]int64{}
			for _, k := range tomb.GetKept() {
				kept[k.GetKind()] = k.GetCount()
				if k.GetBasis() == "" {
					t.Errorf("kept %s without a basis", k.GetKind())
				}
			}
			if kept["protective_features"] != 1 || kept["consent_denials"] != 1 || kept["message_reservations"] != 1 {
				t.Errorf("EraseCustomer().kept = %v, want the opt-out, the consent denial and the cap reservation", kept)
			}
			if tomb.GetActor() == "" || tomb.GetReason() != "ticket-1" || !tomb.GetErasedAt().AsTime().Equal(testNow.Add(time.Minute)) {
				t.Errorf("EraseCustomer() tombstone = actor %q reason %q at %v", tomb.GetActor(), tomb.GetReason(), tomb.GetErasedAt().AsTime())
			}

			if _, err := h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()}); status.Code(err) != codes.NotFound {
				t.Errorf("GetDecision(erased) = %v, want NotFound", err)
			}
			exp, err = h.fc.ExportCustomer(ctx, &arbiterv1.ExportCustomerRequest{CustomerId: cust})
			if err != nil {
				t.Fatalf("ExportCustomer(after erasure) = %v", err)
			}
			if len(exp.GetDecisions()) != 0 || len(exp.GetErasures()) != 1 || len(exp.GetState().GetRecentDecisions()) != 0 {
				t.Errorf("ExportCustomer(after erasure) = %d decisions, %d erasures, %d recent; want 0, 1, 0",
					len(exp.GetDecisions()), len(exp.GetErasures()), len(exp.GetState().GetRecentDecisions()))
			}
			f := exp.GetState().GetFeatures()
			if len(f) != 2 || !f["opted_out"].GetBoolValue() || f["segment"] != nil {
				t.Errorf("ExportCustomer(after erasure).state.features = %v, want only the opt-out and the consent denial", f)
			}

			// The event replayed after the erasure is decided afresh, and the opt-out holds.
			again, err := h.dc.Decide(ctx, overdue("ev-1", cust))
			if err != nil || again.GetReplayed() || again.GetAction() == arbiterv1.Action_ACTION_MESSAGE {
				t.Errorf("Decide(after erasure) = %v replayed %v, %v; want no MESSAGE", again.GetAction(), again.GetReplayed(), err)
			}
		})
	}
}

func TestEraseCustomerInvalid(t *testing.T) {
	c := newClock(testNow)
	h := newHarness(t, memoryStore(t, c), c)
	for _, tt := range []struct {
		name  string
		req   *arbiterv1.EraseCustomerRequest
		field string
	}{
		{"no customer", &arbiterv1.EraseCustomerRequest{}, "customer_id"},
		{"control character", &arbiterv1.EraseCustomerRequest{CustomerId: "c", Reason: "a\nb"}, "reason"},
		{"long reason", &arbiterv1.EraseCustomerRequest{CustomerId: "c", Reason: string(make([]byte, 300))}, "reason"},
	} {
		_, err := h.fc.EraseCustomer(t.Context(), tt.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.field) {
			t.Errorf("EraseCustomer(%s) = %v, want InvalidArgument naming %s", tt.name, err, tt.field)
		}
	}
	if _, err := h.fc.ExportCustomer(t.Context(), &arbiterv1.ExportCustomerRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ExportCustomer(no customer) = %v, want InvalidArgument", err)
	}
}

package server

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
)

const experimentBundle = "../policies/examples/champion-challenger"

// softDecline is a Visa "51" for customer, which the example experiment decides.
func softDecline(eventID, customer string) *arbiterv1.DecideRequest {
	req := declined(eventID, customer)
	req.Customer.Consents = []*arbiterv1.Consent{
		{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true},
	}
	return req
}

// Two replicas, each with its own copy of the bundle loaded from disk, on one store (a
// restart is the same: nothing but the bundle and the customer id decides the arm): every
// customer gets the same arm from both, the one Policy.Assign gives, and the answer, the
// record and the metrics name it. An outcome is counted by rule, version and arm.
func TestExperimentArmsAcrossReplicas(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			store := sf.make(t, c)
			reader := sdkmetric.NewManualReader()
			var hs [2]*harness
			var pol *decision.Policy
			for i := range hs {
				p, err := decision.LoadPolicy(experimentBundle)
				if err != nil {
					t.Fatalf("LoadPolicy(%s) = %v", experimentBundle, err)
				}
				pol = p
				opts := []Option{}
				if i == 0 {
					opts = append(opts, WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
				}
				hs[i] = newHarness(t, store, c, opts...)
				hs[i].srv.policies = rollout.NewHolder(p)
			}
			arms := map[string]int{}
			var paidID, paidArm string
			for i := range 60 {
				cust := fmt.Sprintf("x-cust-%d", i)
				want, ok := pol.Assign("retry-backoff-2026q4", cust)
				if !ok {
					t.Fatalf("Assign(%s) not ok", cust)
				}
				for r, h := range hs {
					resp, err := h.dc.Decide(ctx, softDecline(fmt.Sprintf("ev-%d-%d", i, r), cust))
					if err != nil {
						t.Fatalf("Decide(%s on replica %d) = %v", cust, r, err)
					}
					x := resp.GetExperiment()
					if x.GetId() != "retry-backoff-2026q4" || x.GetArm() != want {
						t.Fatalf("Decide(%s on replica %d).experiment = %v, want retry-backoff-2026q4/%s", cust, r, x, want)
					}
					if r == 0 && want != decision.HoldoutArm && paidID == "" && resp.GetAction() == arbiterv1.Action_ACTION_RETRY {
						paidID, paidArm = resp.GetDecisionId(), want
					}
					if r == 0 {
						got, err := h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()})
						if err != nil || got.GetRecord().GetResponse().GetExperiment().GetArm() != want {
							t.Fatalf("GetDecision(%s).record.response.experiment = %v, %v; want arm %s", resp.GetDecisionId(),
								got.GetRecord().GetResponse().GetExperiment(), err, want)
						}
					}
				}
				arms[want]++
			}
			if len(arms) != 3 {
				t.Errorf("60 customers landed in arms %v, want all three arms used", arms)
			}

			if paidID == "" {
				t.Fatal("no RETRY in an arm with retries")
			}
			if _, err := hs[0].dc.RecordOutcome(ctx, &arbiterv1.RecordOutcomeRequest{DecisionId: paidID,
				Outcome: arbiterv1.Outcome_OUTCOME_RETRY_APPROVED, OccurredAt: timestamppb.New(testNow.Add(time.Hour))}); err != nil {
				t.Fatalf("RecordOutcome() = %v", err)
			}
			m, ok := collect(t, reader, "arbiter.outcomes")
			if !ok {
				t.Fatal("metric arbiter.outcomes not found")
			}
			var found bool
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				get := func(k string) string { v, _ := dp.Attributes.Value(attribute.Key(k)); return v.AsString() }
				if get("outcome") == "retry_approved" && get("arm") == paidArm && get("experiment") == "retry-backoff-2026q4" &&
					get("rule") == "payment-soft-retry" && get("policy_version") == pol.Ref().Version && dp.Value == 1 {
					found = true
				}
			}
			if !found {
				t.Errorf("arbiter.outcomes = %+v, want retry_approved=1 for arm %s, rule payment-soft-retry", m.Data, paidArm)
			}
			d, ok := collect(t, reader, "arbiter.experiment.decisions")
			if !ok {
				t.Fatal("metric arbiter.experiment.decisions not found")
			}
			var total int64
			for _, dp := range d.Data.(metricdata.Sum[int64]).DataPoints {
				total += dp.Value
			}
			if total != 60 {
				t.Errorf("arbiter.experiment.decisions on replica 0 = %d, want 60", total)
			}
		})
	}
}

// An OUTCOME_OPTED_OUT opts the customer out: the next reminder is not sent.
func TestOutcomeOptedOut(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			resp, err := h.dc.Decide(ctx, overdue("ev-1", "cust-oo"))
			if err != nil || resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
				t.Fatalf("Decide() = %v, %v; want a MESSAGE", resp.GetAction(), err)
			}
			if _, err := h.dc.RecordOutcome(ctx, &arbiterv1.RecordOutcomeRequest{DecisionId: resp.GetDecisionId(),
				Outcome: arbiterv1.Outcome_OUTCOME_OPTED_OUT}); err != nil {
				t.Fatalf("RecordOutcome(opted out) = %v", err)
			}
			c.Advance(48 * time.Hour)
			next, err := h.dc.Decide(ctx, overdue("ev-2", "cust-oo"))
			if err != nil || next.GetAction() == arbiterv1.Action_ACTION_MESSAGE || !respHasReason(next, decision.CodeOptedOut) {
				t.Errorf("Decide(after opt-out outcome) = %v %v, %v; want no MESSAGE, with OPTED_OUT", next.GetAction(), next.GetReasons(), err)
			}
		})
	}
}

func respHasReason(resp *arbiterv1.DecideResponse, code string) bool {
	for _, r := range resp.GetReasons() {
		if r.GetCode() == code {
			return true
		}
	}
	return false
}

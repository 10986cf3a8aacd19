package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/rollout"
)

// replayStore is a store with an audit trail.
type replayStore interface {
	Store
	AuditScanner
}

// recordTraffic sends a varied day of traffic through srv under the default policy, with the
// clock moving, so that later decisions read state earlier ones wrote (messages, ledgers,
// features), and returns the recorded answers by decision id.
func recordTraffic(t *testing.T, srv *Server, clk *clock) map[string]*arbiterv1.DecideResponse {
	t.Helper()
	ctx := context.Background()
	recorded := map[string]*arbiterv1.DecideResponse{}
	for c := range 6 {
		cust := fmt.Sprintf("cust-%d", c)
		feats := map[string]*structpb.Value{"days_past_due": structpb.NewNumberValue(float64(3 + 14*c))}
		if c == 4 {
			feats["vulnerable"] = structpb.NewBoolValue(true)
		}
		if _, err := srv.PutFeatures(ctx, &arbiterv1.PutFeaturesRequest{CustomerId: cust, Features: feats}); err != nil {
			t.Fatalf("PutFeatures(%s): %v", cust, err)
		}
	}
	for step := range 12 {
		for c := range 6 {
			cust := fmt.Sprintf("cust-%d", c)
			var req *arbiterv1.DecideRequest
			switch (step + c) % 4 {
			case 0:
				req = govOverdue(fmt.Sprintf("od-%d-%d", step, c), cust)
			case 1:
				req = &arbiterv1.DecideRequest{
					Event: &arbiterv1.Event{Id: fmt.Sprintf("pf-%d-%d", step, c), Type: arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED,
						Payment: &arbiterv1.PaymentFailure{DeclineCode: []string{"51", "05", "54", "91"}[step%4], Network: arbiterv1.CardNetwork_CARD_NETWORK_VISA,
							AmountMinor: 1999, Currency: "GBP", Acquirer: "acq-a", CardRef: fmt.Sprintf("tok-%s-%d", cust, step%2),
							Initiator: arbiterv1.Initiator_INITIATOR_MERCHANT, MerchantId: "m-1"}},
					Customer: govOverdue("", cust).GetCustomer(),
				}
			case 2:
				// A call reads the declines on every card (recent.declines_30d).
				req = &arbiterv1.DecideRequest{
					Event:    &arbiterv1.Event{Id: fmt.Sprintf("ic-%d-%d", step, c), Type: arbiterv1.EventType_EVENT_TYPE_INBOUND_CONTACT},
					Customer: govOverdue("", cust).GetCustomer(),
				}
			default:
				req = &arbiterv1.DecideRequest{
					Event:    &arbiterv1.Event{Id: fmt.Sprintf("rl-%d-%d", step, c), Type: arbiterv1.EventType_EVENT_TYPE_RISKY_LOGIN, Attributes: map[string]string{"risk": "high"}},
					Customer: govOverdue("", cust).GetCustomer(),
				}
			}
			resp, err := srv.Decide(ctx, req)
			if err != nil {
				t.Fatalf("Decide(%s): %v", req.GetEvent().GetId(), err)
			}
			recorded[resp.GetDecisionId()] = resp
		}
		clk.Advance(97 * time.Minute)
	}
	return recorded
}

func TestReplayDeterminism(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T, clk *clock) replayStore
	}{
		{"memory", func(t *testing.T, clk *clock) replayStore { return newMemoryFeatureStore(t, clk.Now) }},
		{"redis", func(t *testing.T, clk *clock) replayStore {
			return featurestore.NewRedis(newRedisClientForTest(t, redistest.Start(t)), featurestore.WithClock(clk.Now))
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newClock(govNow)
			store := st.open(t, clk)
			made := decision.DefaultPolicy()
			srv := New(store, rollout.NewHolder(made), WithClock(clk.Now), WithStoreBudget(slowMachineBudget))
			recorded := recordTraffic(t, srv, clk)
			actions := map[arbiterv1.Action]int{}
			for _, r := range recorded {
				actions[r.GetAction()]++
			}
			t.Logf("recorded %d decisions: %v", len(recorded), actions)
			if len(actions) < 3 {
				t.Fatalf("recorded actions %v: the traffic should exercise at least three actions", actions)
			}

			// Under the version that made them: every decision reproduces.
			rep, err := Replay(ctx, store, decision.DefaultPolicy(), ReplayOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Replayed != len(recorded) || rep.Same != len(recorded) || rep.Changed != 0 || rep.Skipped != 0 {
				t.Errorf("Replay(same version) = replayed %d, same %d, changed %d, skipped %d; want all %d the same",
					rep.Replayed, rep.Same, rep.Changed, rep.Skipped, len(recorded))
				for _, ex := range rep.Examples {
					t.Logf("changed %s: recorded %v, replayed %v", ex.EventID, ex.Recorded, ex.Replayed)
				}
			}

			// Under another version: the overdue reminders become escalations, and the other
			// journeys, which the small bundle has no rule for, change too.
			other := mustParse(t, govBundle("9", "escalate"))
			rep, err = Replay(ctx, store, other, ReplayOptions{Examples: 3})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Replayed != len(recorded) || rep.Changed == 0 || rep.Same+rep.Changed != rep.Replayed {
				t.Errorf("Replay(other version) = replayed %d, same %d, changed %d; want %d replayed, some changed",
					rep.Replayed, rep.Same, rep.Changed, len(recorded))
			}
			wantMsgToEsc := 0
			for _, r := range recorded {
				if r.GetAction() == arbiterv1.Action_ACTION_MESSAGE && hasReasonCode(r, "OVERDUE_REMINDER") {
					wantMsgToEsc++
				}
			}
			pair := policystore.ActionPair{Active: decision.ActionMessage, Shadow: decision.ActionEscalate}
			if wantMsgToEsc == 0 || rep.Actions[pair] < wantMsgToEsc {
				t.Errorf("Replay(other version).Actions[MESSAGE→ESCALATE] = %d, want at least the %d overdue reminders", rep.Actions[pair], wantMsgToEsc)
			}
			if rep.ReasonsAdded["COLLECTIONS_REFERRAL"] == 0 {
				t.Errorf("Replay(other version).ReasonsAdded = %v, want COLLECTIONS_REFERRAL", rep.ReasonsAdded)
			}
			if len(rep.Examples) != 3 {
				t.Fatalf("Replay(other version).Examples = %d, want 3", len(rep.Examples))
			}
			for _, ex := range rep.Examples {
				if sameAnswer(ex.Recorded, ex.Replayed) || ex.RecordedVersion != made.Ref().Version {
					t.Errorf("example %s: recorded %v under %q, replayed %v; want a difference, recorded under %q",
						ex.EventID, ex.Recorded.GetAction(), ex.RecordedVersion, ex.Replayed.GetAction(), made.Ref().Version)
				}
			}
		})
	}
}

func hasReasonCode(r *arbiterv1.DecideResponse, code string) bool {
	for _, x := range r.GetReasons() {
		if x.GetCode() == code {
			return true
		}
	}
	return false
}

package server

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
)

// confirmEnv is a server on a store with a clock the test moves.
type confirmEnv struct {
	t       *testing.T
	srv     *Server
	store   Store
	now     atomic.Int64
	revoked []*arbiterv1.Revocation
}

func (e *confirmEnv) at(t time.Time) { e.now.Store(t.UnixNano()) }

func (e *confirmEnv) decide(req *arbiterv1.DecideRequest) *arbiterv1.DecideResponse {
	e.t.Helper()
	resp, err := e.srv.Decide(e.t.Context(), req)
	if err != nil || resp.GetDegraded() {
		e.t.Fatalf("Decide() = %v, %v", resp, err)
	}
	return resp
}

func (e *confirmEnv) confirm(id string) *arbiterv1.ConfirmResponse {
	e.t.Helper()
	resp, err := e.srv.Confirm(e.t.Context(), &arbiterv1.ConfirmRequest{DecisionId: id})
	if err != nil {
		e.t.Fatalf("Confirm(%s) = %v", id, err)
	}
	return resp
}

func (e *confirmEnv) put(customer string, features map[string]any) {
	e.t.Helper()
	fs, err := structpb.NewStruct(features)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.srv.PutFeatures(e.t.Context(), &arbiterv1.PutFeaturesRequest{CustomerId: customer, Features: fs.GetFields()}); err != nil {
		e.t.Fatalf("PutFeatures() = %v", err)
	}
}

func (e *confirmEnv) state(customer string) decision.State {
	e.t.Helper()
	st, err := e.store.State(e.t.Context(), customer, time.Unix(0, e.now.Load()))
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func codesOf(rs []*arbiterv1.Reason) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetCode())
	}
	return out
}

func reserved(st decision.State, decisionID string) bool {
	return slices.ContainsFunc(st.Messages, func(m decision.SentMessage) bool { return m.DecisionID == decisionID })
}

// TestConfirm: on the embedded store and on a real Redis, a decision handed out for later is
// re-checked when its executor confirms it: an opt-out, a fraud hold, quiet hours, a newer
// decision or the time passed revoke it and give its reservation back, once; a decision that
// still holds is confirmed; the confirmations show on the decision.
func TestConfirm(t *testing.T) {
	stores := map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store { return featurestore.NewMemory() },
		"redis":  func(t *testing.T) Store { return dialStore(t, "redis://"+redistest.Start(t)) },
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			e := &confirmEnv{t: t, store: open(t)}
			e.at(faultNow)
			e.srv = New(e.store, rollout.NewHolder(decision.DefaultPolicy()),
				WithClock(func() time.Time { return time.Unix(0, e.now.Load()).UTC() }),
				WithRevocations(func(_ context.Context, r *arbiterv1.Revocation) error {
					e.revoked = append(e.revoked, r)
					return nil
				}))
			london, _ := time.LoadLocation("Europe/London")
			night := time.Date(2026, time.March, 10, 23, 0, 0, 0, london)

			t.Run("OptOutAfterDeferredReminder", func(t *testing.T) {
				e.t = t
				e.at(night)
				resp := e.decide(overdueFor("c-ev-1", "c-cust-1"))
				m := resp.GetMessage()
				if m == nil || !m.GetSendAt().AsTime().After(night) {
					t.Fatalf("Decide at 23:00 = %v, want a MESSAGE deferred past quiet hours", resp)
				}
				if !reserved(e.state("c-cust-1"), resp.GetDecisionId()) {
					t.Fatal("the deferred message holds no cap reservation")
				}
				e.put("c-cust-1", map[string]any{"opted_out": true})
				e.at(m.GetSendAt().AsTime())
				got := e.confirm(resp.GetDecisionId())
				if got.GetProceed() || !slices.Contains(codesOf(got.GetReasons()), decision.CodeOptedOut) {
					t.Fatalf("Confirm after an opt-out = %v, want proceed false with OPTED_OUT", got)
				}
				if reserved(e.state("c-cust-1"), resp.GetDecisionId()) {
					t.Error("the revoked message still holds its cap reservation")
				}
				// Opting back in does not revive it: a revocation is final.
				e.put("c-cust-1", map[string]any{"opted_out": false})
				again := e.confirm(resp.GetDecisionId())
				if again.GetProceed() || !slices.Contains(codesOf(again.GetReasons()), decision.CodeOptedOut) {
					t.Errorf("second Confirm = %v, want the first revocation", again)
				}
				rec, err := e.srv.GetDecision(t.Context(), &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()})
				if err != nil {
					t.Fatal(err)
				}
				if cs := rec.GetRecord().GetConfirmations(); len(cs) != 1 || cs[0].GetProceed() || !slices.Contains(cs[0].GetReasonCodes(), decision.CodeOptedOut) {
					t.Errorf("GetDecision confirmations = %v, want the one revocation", cs)
				}
				if len(e.revoked) != 1 || e.revoked[0].GetDecisionId() != resp.GetDecisionId() ||
					e.revoked[0].GetScope() != arbiterv1.RevocationScope_REVOCATION_SCOPE_DECISION {
					t.Errorf("revocations published = %v, want one for the decision", e.revoked)
				}
			})

			t.Run("StillValid", func(t *testing.T) {
				e.t = t
				e.at(faultNow)
				resp := e.decide(overdueFor("c-ev-2", "c-cust-2"))
				e.at(faultNow.Add(time.Minute))
				got := e.confirm(resp.GetDecisionId())
				if !got.GetProceed() || !slices.Equal(codesOf(got.GetReasons()), []string{decision.CodeStillValid}) {
					t.Fatalf("Confirm a minute later = %v, want proceed with STILL_VALID", got)
				}
				if !reserved(e.state("c-cust-2"), resp.GetDecisionId()) {
					t.Error("a confirmed message lost its reservation")
				}
			})

			t.Run("EarlyConfirmOfDeferredMessage", func(t *testing.T) {
				e.t = t
				e.at(night)
				resp := e.decide(overdueFor("c-ev-8", "c-cust-8"))
				e.at(resp.GetMessage().GetSendAt().AsTime().Add(-time.Minute))
				got := e.confirm(resp.GetDecisionId())
				if !got.GetProceed() {
					t.Fatalf("Confirm a minute before the deferred send time = %v, want proceed (it is sent at send_at)", got)
				}
			})

			// Decided at noon, confirmed when time alone revokes it.
			for i, tc := range []struct {
				name string
				at   time.Time
				want string
			}{
				{"QuietHoursNow", time.Date(2026, time.March, 10, 23, 30, 0, 0, london), decision.CodeQuietHours},
				{"Expired", faultNow.Add(49 * time.Hour), decision.CodeExpired},
			} {
				t.Run(tc.name, func(t *testing.T) {
					e.t = t
					e.at(faultNow)
					resp := e.decide(overdueFor(fmt.Sprintf("c-ev-t%d", i), fmt.Sprintf("c-cust-t%d", i)))
					e.at(tc.at)
					got := e.confirm(resp.GetDecisionId())
					if got.GetProceed() || !slices.Contains(codesOf(got.GetReasons()), tc.want) {
						t.Fatalf("Confirm at %v = %v, want %s", tc.at, got, tc.want)
					}
				})
			}

			t.Run("Superseded", func(t *testing.T) {
				e.t = t
				e.at(faultNow)
				first := e.decide(overdueFor("c-ev-5", "c-cust-5"))
				e.at(faultNow.Add(time.Hour))
				e.decide(overdueFor("c-ev-6", "c-cust-5"))
				got := e.confirm(first.GetDecisionId())
				if got.GetProceed() || !slices.Contains(codesOf(got.GetReasons()), decision.CodeSuperseded) {
					t.Fatalf("Confirm of the older of two overdue decisions = %v, want SUPERSEDED", got)
				}
			})

			t.Run("FraudHoldAfterScheduledRetry", func(t *testing.T) {
				e.t = t
				e.at(faultNow)
				resp := e.decide(declineFor("c-ev-7", "c-cust-7"))
				if resp.GetRetry() == nil {
					t.Fatalf("Decide on a soft decline = %v, want RETRY", resp)
				}
				hasRetry := func() bool {
					return slices.ContainsFunc(e.state("c-cust-7").Ledger, func(l decision.LedgerEntry) bool {
						return l.Kind == decision.LedgerRetry && l.EventID == "c-ev-7"
					})
				}
				if !hasRetry() {
					t.Fatal("the retry holds no ledger slot")
				}
				e.put("c-cust-7", map[string]any{"fraud_hold": true})
				e.at(resp.GetRetry().GetNotBefore().AsTime())
				got := e.confirm(resp.GetDecisionId())
				if got.GetProceed() || !slices.Contains(codesOf(got.GetReasons()), decision.CodeFraudHold) {
					t.Fatalf("Confirm after a fraud flag = %v, want FRAUD_HOLD", got)
				}
				if hasRetry() {
					t.Error("the revoked retry still holds its ledger slot")
				}
			})

			t.Run("NotFound", func(t *testing.T) {
				e.t = t
				_, err := e.srv.Confirm(t.Context(), &arbiterv1.ConfirmRequest{DecisionId: featurestore.NewDecisionID("nobody", faultNow)})
				if status.Code(err) != codes.NotFound {
					t.Errorf("Confirm of an unknown id = %v, want NOT_FOUND", err)
				}
				_, err = e.srv.Confirm(t.Context(), &arbiterv1.ConfirmRequest{})
				if status.Code(err) != codes.InvalidArgument {
					t.Errorf("Confirm without an id = %v, want INVALID_ARGUMENT", err)
				}
			})
		})
	}
}

// roundTrips counts a Redis client's round trips: one per command sent alone, one per
// pipeline or transaction.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// Confirm costs two Redis round trips: one read of the decision with its customer's state,
// one write of the confirmation.
func TestConfirmRoundTrips(t *testing.T) {
	rdb, err := featurestore.Dial("redis://" + redistest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	store := featurestore.NewRedis(rdb)
	t.Cleanup(func() { _ = store.Close() })
	if err := store.Warm(t.Context()); err != nil { // scripts loaded: no NOSCRIPT retry in the count
		t.Fatal(err)
	}
	e := &confirmEnv{t: t, store: store}
	e.at(faultNow)
	e.srv = New(store, rollout.NewHolder(decision.DefaultPolicy()), WithClock(func() time.Time { return time.Unix(0, e.now.Load()).UTC() }))
	london, _ := time.LoadLocation("Europe/London")
	e.at(time.Date(2026, time.March, 10, 11, 0, 0, 0, london))
	resp := e.decide(overdueFor("rt-ev-1", "rt-cust-1"))
	e.confirm(resp.GetDecisionId()) // the first call loads the read script
	var rt roundTrips
	rdb.AddHook(&rt)
	e.confirm(resp.GetDecisionId())
	if got := rt.n.Load(); got != 2 {
		t.Errorf("Confirm took %d Redis round trips, want 2", got)
	}
}

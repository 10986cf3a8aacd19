package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/rollout"
)

// replica is one in-process Arbiter replica: its own Redis clients, store, policy holder,
// server and policy sync, sharing a redis-server with the others.
type replica struct {
	srv    *Server
	holder *rollout.Holder
	sync   *rollout.Sync
}

// startReplica starts a replica on addr whose sync runs until the test ends.
func startReplica(t *testing.T, addr string, src rollout.Source) *replica {
	t.Helper()
	if src == nil {
		src = policystore.NewRedis(newRedisClientForTest(t, addr))
	}
	holder := rollout.NewHolder(decision.DefaultPolicy())
	ps := rollout.NewSync(src, holder, rollout.NewShadow(nil))
	store := featurestore.NewRedis(newRedisClientForTest(t, addr))
	r := &replica{srv: New(store, holder, WithClock(func() time.Time { return govNow }), WithPolicySync(ps), WithStoreBudget(slowMachineBudget)), holder: holder, sync: ps}
	runInBackground(t, ps.Run)
	return r
}

// slowMachineBudget gives store calls in tests room on a loaded machine (and under -race), so
// that a slow Redis round trip does not degrade a decision the test checks.
var slowMachineBudget = Budget{Max: 5 * time.Second, Fraction: 1}

func TestActivationReachesReplicasWithinOneSecond(t *testing.T) {
	addr := redistest.Start(t)
	admin := newTestPolicyService(policystore.NewRedis(newRedisClientForTest(t, addr)))
	ctx := asClient("ops")
	for _, v := range []string{"1", "2"} {
		kind := map[string]string{"1": "message", "2": "escalate"}[v]
		if _, err := admin.PublishPolicy(ctx, &arbiterv1.PublishPolicyRequest{Files: govBundle(v, kind), Comment: "v" + v}); err != nil {
			t.Fatalf("PublishPolicy(%s): %v", v, err)
		}
	}
	a := startReplica(t, addr, nil)
	b := startReplica(t, addr, nil)
	// A replica that misses every notification still follows through its periodic check.
	c := startReplica(t, addr, quietSource{policystore.NewRedis(newRedisClientForTest(t, addr))})
	if got := a.holder.Load().Ref().ID; got != "arbiter-default" {
		t.Fatalf("before any activation, replica serves %q, want the default policy it started with", got)
	}

	for _, step := range []struct {
		name    string
		change  func() error
		version string
		action  arbiterv1.Action
	}{
		{"activate 1", func() error {
			_, err := admin.ActivatePolicy(ctx, &arbiterv1.ActivatePolicyRequest{Version: "1", Comment: "launch"})
			return err
		}, "1", arbiterv1.Action_ACTION_MESSAGE},
		{"activate 2", func() error {
			_, err := admin.ActivatePolicy(ctx, &arbiterv1.ActivatePolicyRequest{Version: "2", Comment: "escalate instead"})
			return err
		}, "2", arbiterv1.Action_ACTION_ESCALATE},
		{"rollback", func() error {
			_, err := admin.RollbackPolicy(ctx, &arbiterv1.RollbackPolicyRequest{Comment: "too many escalations"})
			return err
		}, "1", arbiterv1.Action_ACTION_MESSAGE},
	} {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		notified := waitServing(t, step.version, time.Second, a, b)
		polled := waitServing(t, step.version, time.Second, a, b, c) + notified
		t.Logf("%s: notified replicas serve %s after %v, the one without notifications after %v", step.name, step.version, notified, polled)
		for i, r := range []*replica{a, b} {
			resp, err := r.srv.Decide(context.Background(), govOverdue("evt-"+step.name+string(rune('a'+i)), "cust-"+step.name))
			if err != nil {
				t.Fatalf("%s: replica %d Decide: %v", step.name, i, err)
			}
			if resp.GetPolicy().GetVersion() != step.version || resp.GetAction() != step.action {
				t.Errorf("%s: replica %d Decide() = %v %v under %q, want %v under %q", step.name, i,
					resp.GetAction(), resp.GetReasons(), resp.GetPolicy().GetVersion(), step.action, step.version)
			}
		}
	}
}

func TestReplicaKeepsLastGoodVersion(t *testing.T) {
	addr := redistest.Start(t)
	store := policystore.NewRedis(newRedisClientForTest(t, addr))
	ctx := context.Background()
	good := policystore.Bundle{PolicyVersion: policystore.PolicyVersion{Version: "1", Digest: "d1"}, Files: govBundle("1", "message")}
	// A version that does not compile on this replica (for example written by a newer
	// Arbiter), put in the store directly: PublishPolicy would have refused it.
	bad := policystore.Bundle{PolicyVersion: policystore.PolicyVersion{Version: "2", Digest: "d2"},
		Files: map[string][]byte{"bundle.yaml": []byte("id: x\nversion: \"2\"\nrules:\n  - id: r\n    on: [NOT_AN_EVENT]\n")}}
	for _, b := range []policystore.Bundle{good, bad} {
		if _, _, err := store.PublishPolicy(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	r := startReplica(t, addr, nil)
	if _, err := store.ActivatePolicy(ctx, policystore.Change{To: "1", Actor: "ops", At: govNow, Comment: "go"}); err != nil {
		t.Fatal(err)
	}
	waitServing(t, "1", time.Second, r)
	if _, err := store.ActivatePolicy(ctx, policystore.Change{To: "2", Actor: "ops", At: govNow, Comment: "broken"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for r.sync.Status().Active != "2" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := r.sync.Status()
	if st.Active != "2" || st.Serving.Version != "1" || st.Err == nil {
		t.Fatalf("Status() = %+v; want active 2, serving 1, with an error", st)
	}
	if !strings.Contains(st.Problem(), "does not compile") {
		t.Errorf("Status().Problem() = %q, want it to say the version does not compile", st.Problem())
	}

	// /readyz stays ready (the replica serves its last good version) and says why it is not
	// on the active one.
	rec := httptest.NewRecorder()
	r.srv.AdminHandler(AdminConfig{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body struct {
		Ready       bool   `json:"ready"`
		Version     string `json:"policy_version"`
		Active      string `json:"policy_active"`
		PolicyError string `json:"policy_error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("/readyz body %q: %v", rec.Body.String(), err)
	}
	if rec.Code != http.StatusOK || !body.Ready || body.Version != "1" || body.Active != "2" || body.PolicyError == "" {
		t.Errorf("/readyz = %d %s; want 200, ready, serving 1, active 2, with policy_error", rec.Code, rec.Body.String())
	}

	// Rolling back heals the replica.
	if _, err := store.RollbackPolicy(ctx, policystore.Change{Actor: "ops", At: govNow, Comment: "undo"}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Second)
	for r.sync.Status().Err != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := r.sync.Status(); st.Err != nil || st.Active != "1" || st.Serving.Version != "1" {
		t.Errorf("Status() after rollback = %+v; want active and serving 1, no error", st)
	}
}

// TestPolicySyncEmbedded runs the sync on the in-process policy store of the embedded mode:
// an activation reaches the holder through the store's notification, and Run leaves no
// goroutine behind when its context ends.
func TestPolicySyncEmbedded(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := asClient("ops")
	store := policystore.NewMemory()
	svc := newTestPolicyService(store)
	if _, err := svc.PublishPolicy(ctx, &arbiterv1.PublishPolicyRequest{Files: govBundle("7", "message"), Comment: "c"}); err != nil {
		t.Fatal(err)
	}
	holder := rollout.NewHolder(decision.DefaultPolicy())
	// A long interval: only the notification can make the switch within the test's limit.
	ps := rollout.NewSync(store, holder, rollout.NewShadow(nil), rollout.WithSyncInterval(time.Hour))
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ps.Run(runCtx) }()
	// Run subscribes, then syncs: an activation before the subscription is caught by that first
	// sync, one after it by the notification. Either way, not by the hourly check.
	time.Sleep(20 * time.Millisecond)
	if _, err := svc.ActivatePolicy(ctx, &arbiterv1.ActivatePolicyRequest{Version: "7", Comment: "go"}); err != nil {
		t.Fatal(err)
	}
	r := &replica{holder: holder, sync: ps}
	took := waitServing(t, "7", time.Second, r)
	t.Logf("embedded replica serves 7 after %v", took)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil after its context ends", err)
	}
}

// waitServing waits until every replica serves version, and returns how long it took.
func waitServing(t *testing.T, version string, limit time.Duration, rs ...*replica) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		all := true
		for _, r := range rs {
			if r.holder.Load().Ref().Version != version {
				all = false
			}
		}
		if all {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			for i, r := range rs {
				t.Errorf("replica %d serves %q, status %+v", i, r.holder.Load().Ref().Version, r.sync.Status())
			}
			t.Fatalf("replicas did not all serve %q within %v", version, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

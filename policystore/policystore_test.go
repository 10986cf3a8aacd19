package policystore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	"github.com/arbiter-dev/arbiter/policystore"
)

// policyStore is what the conformance suite exercises; both stores satisfy it.
type policyStore interface {
	PublishPolicy(ctx context.Context, b policystore.Bundle) (policystore.PolicyVersion, bool, error)
	PolicyVersions(ctx context.Context) ([]policystore.PolicyVersion, error)
	Bundle(ctx context.Context, version string) (policystore.Bundle, error)
	ActivePolicy(ctx context.Context) (string, error)
	ActivatePolicy(ctx context.Context, c policystore.Change) (policystore.Change, error)
	RollbackPolicy(ctx context.Context, c policystore.Change) (policystore.Change, error)
	SetShadowPolicy(ctx context.Context, c policystore.Change) (policystore.Change, error)
	ShadowPolicy(ctx context.Context) (policystore.ShadowConfig, error)
	PolicyChanges(ctx context.Context, limit int) ([]policystore.Change, error)
	AddShadowResults(ctx context.Context, epoch string, c policystore.ShadowCounts, s []policystore.ShadowSample) (bool, error)
	ShadowReport(ctx context.Context) (policystore.ShadowReport, error)
	WatchPolicy(ctx context.Context) (<-chan struct{}, error)
}

var (
	_ policyStore = (*policystore.Redis)(nil)
	_ policyStore = (*policystore.Memory)(nil)
)

// policyStores returns a fresh store of each kind; the Redis one on a real redis-server.
func policyStores(t *testing.T) map[string]func(t *testing.T) policyStore {
	return map[string]func(t *testing.T) policyStore{
		"memory": func(t *testing.T) policyStore { return policystore.NewMemory() },
		"redis": func(t *testing.T) policyStore {
			return policystore.NewRedis(newRedisClient(t, redistest.Start(t)))
		},
	}
}

func newRedisClient(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func bundle(version, digest string, at time.Time) policystore.Bundle {
	return policystore.Bundle{
		PolicyVersion: policystore.PolicyVersion{
			ID: "default", Version: version, Digest: digest, Author: "alice", CreatedAt: at,
			Comment: "publish " + version, TestCases: 3,
		},
		Files: map[string][]byte{"policy.yaml": []byte("version: " + version + "\n"), "tests/a.yaml": {0, 1, 2}},
	}
}

// ignoreIDs drops the store-assigned change ids, whose format differs between stores.
var ignoreIDs = cmpopts.IgnoreFields(policystore.Change{}, "ID")

func TestPolicyStorePublish(t *testing.T) {
	for name, open := range policyStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t)
			for i, v := range []string{"1", "2"} {
				b := bundle(v, "d"+v, t0.Add(time.Duration(i)*time.Minute))
				got, created, err := s.PublishPolicy(ctx, b)
				if err != nil || !created {
					t.Fatalf("PublishPolicy(%s) = created %v, %v; want created", v, created, err)
				}
				if diff := cmp.Diff(b.PolicyVersion, got); diff != "" {
					t.Errorf("PublishPolicy(%s) version mismatch (-want +got):\n%s", v, diff)
				}
			}
			// The same content again is a no-op that returns the first publication.
			again := bundle("1", "d1", t0.Add(time.Hour))
			again.Author = "bob"
			got, created, err := s.PublishPolicy(ctx, again)
			if err != nil || created || got.Author != "alice" || !got.CreatedAt.Equal(t0) {
				t.Errorf("PublishPolicy(same content) = %+v, created %v, %v; want the first publication, not created", got, created, err)
			}
			// Different content under the same version is refused.
			if _, _, err := s.PublishPolicy(ctx, bundle("1", "other", t0)); !errors.Is(err, policystore.ErrVersionExists) {
				t.Errorf("PublishPolicy(same version, other digest) error = %v, want ErrVersionExists", err)
			}

			vs, err := s.PolicyVersions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []policystore.PolicyVersion{bundle("2", "d2", t0.Add(time.Minute)).PolicyVersion, bundle("1", "d1", t0).PolicyVersion}
			if diff := cmp.Diff(want, vs); diff != "" {
				t.Errorf("PolicyVersions() mismatch, want newest first (-want +got):\n%s", diff)
			}

			b, err := s.Bundle(ctx, "2")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(bundle("2", "d2", t0.Add(time.Minute)), b); diff != "" {
				t.Errorf("Bundle(2) mismatch (-want +got):\n%s", diff)
			}
			if _, err := s.Bundle(ctx, "9"); !errors.Is(err, policystore.ErrNotFound) {
				t.Errorf("Bundle(9) error = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestPolicyStoreActivateRollbackAndChangeLog(t *testing.T) {
	for name, open := range policyStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t)
			for _, v := range []string{"1", "2", "3"} {
				if _, _, err := s.PublishPolicy(ctx, bundle(v, "d"+v, t0)); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := s.ActivePolicy(ctx); err != nil || got != "" {
				t.Errorf("ActivePolicy() before any activation = %q, %v; want \"\"", got, err)
			}
			if _, err := s.RollbackPolicy(ctx, policystore.Change{Actor: "ops", At: t0, Comment: "nothing to undo"}); !errors.Is(err, policystore.ErrNoPrevious) {
				t.Errorf("RollbackPolicy() with no activation error = %v, want ErrNoPrevious", err)
			}
			if _, err := s.ActivatePolicy(ctx, policystore.Change{To: "9", Actor: "ops", At: t0, Comment: "x"}); !errors.Is(err, policystore.ErrNotFound) {
				t.Errorf("ActivatePolicy(9) error = %v, want ErrNotFound", err)
			}

			steps := []struct {
				name     string
				rollback bool
				to       string
				want     policystore.Change
				wantErr  error
				active   string
			}{
				{name: "first", to: "1", active: "1",
					want: policystore.Change{Kind: policystore.ChangeActivate, To: "1"}},
				{name: "second", to: "2", active: "2",
					want: policystore.Change{Kind: policystore.ChangeActivate, From: "1", To: "2"}},
				{name: "again", to: "2", wantErr: policystore.ErrAlreadyActive, active: "2"},
				{name: "third", to: "3", active: "3",
					want: policystore.Change{Kind: policystore.ChangeActivate, From: "2", To: "3"}},
				{name: "rollback", rollback: true, active: "2",
					want: policystore.Change{Kind: policystore.ChangeRollback, From: "3", To: "2"}},
				{name: "rollback again", rollback: true, active: "1",
					want: policystore.Change{Kind: policystore.ChangeRollback, From: "2", To: "1"}},
				{name: "rollback past the first", rollback: true, wantErr: policystore.ErrNoPrevious, active: "1"},
			}
			var log []policystore.Change
			for i, st := range steps {
				at := t0.Add(time.Duration(i+1) * time.Minute)
				in := policystore.Change{To: st.to, Actor: "ops-" + st.name, At: at, Comment: "because " + st.name}
				var got policystore.Change
				var err error
				if st.rollback {
					got, err = s.RollbackPolicy(ctx, in)
				} else {
					got, err = s.ActivatePolicy(ctx, in)
				}
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("%s: error = %v, want %v", st.name, err, st.wantErr)
				}
				if st.wantErr == nil {
					st.want.Actor, st.want.At, st.want.Comment = in.Actor, at, in.Comment
					if diff := cmp.Diff(st.want, got, ignoreIDs); diff != "" {
						t.Errorf("%s: change mismatch (-want +got):\n%s", st.name, diff)
					}
					if got.ID == "" {
						t.Errorf("%s: change has no id", st.name)
					}
					log = append([]policystore.Change{got}, log...)
				}
				if active, err := s.ActivePolicy(ctx); err != nil || active != st.active {
					t.Errorf("%s: ActivePolicy() = %q, %v; want %q", st.name, active, err, st.active)
				}
			}

			changes, err := s.PolicyChanges(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Newest first: the five activations and rollbacks, then the three publications.
			if len(changes) != 8 {
				t.Fatalf("PolicyChanges(0) returned %d changes, want 8: %+v", len(changes), changes)
			}
			if diff := cmp.Diff(log, changes[:5]); diff != "" {
				t.Errorf("PolicyChanges(0) activations mismatch (-want +got):\n%s", diff)
			}
			for i, c := range changes[5:] {
				want := policystore.Change{Kind: policystore.ChangePublish, Actor: "alice", At: t0, To: fmt.Sprint(3 - i), Comment: "publish " + fmt.Sprint(3-i)}
				if diff := cmp.Diff(want, c, ignoreIDs); diff != "" {
					t.Errorf("PolicyChanges(0)[%d] mismatch (-want +got):\n%s", 5+i, diff)
				}
			}
			two, err := s.PolicyChanges(ctx, 2)
			if err != nil || len(two) != 2 || two[0].ID != changes[0].ID {
				t.Errorf("PolicyChanges(2) = %+v, %v; want the 2 newest", two, err)
			}
		})
	}
}

func TestPolicyStoreShadow(t *testing.T) {
	for name, open := range policyStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t)
			for _, v := range []string{"1", "2"} {
				if _, _, err := s.PublishPolicy(ctx, bundle(v, "d"+v, t0)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.SetShadowPolicy(ctx, policystore.Change{To: "9", ShadowShare: 0.5, Actor: "ops", At: t0}); !errors.Is(err, policystore.ErrNotFound) {
				t.Errorf("SetShadowPolicy(9) error = %v, want ErrNotFound", err)
			}
			c, err := s.SetShadowPolicy(ctx, policystore.Change{To: "2", ShadowShare: 0.25, Actor: "ops", At: t0, Comment: "try 2"})
			if err != nil {
				t.Fatal(err)
			}
			wantChange := policystore.Change{Kind: policystore.ChangeShadow, To: "2", ShadowShare: 0.25, Actor: "ops", At: t0, Comment: "try 2"}
			if diff := cmp.Diff(wantChange, c, ignoreIDs); diff != "" {
				t.Errorf("SetShadowPolicy(2) change mismatch (-want +got):\n%s", diff)
			}
			cfg, err := s.ShadowPolicy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(policystore.ShadowConfig{Version: "2", Share: 0.25, Epoch: c.ID, Since: t0}, cfg); diff != "" {
				t.Errorf("ShadowPolicy() mismatch (-want +got):\n%s", diff)
			}

			msgRetry := policystore.ActionPair{Active: decision.ActionMessage, Shadow: decision.ActionRetry}
			counts := policystore.ShadowCounts{
				Evaluated: 10, Different: 3, Errors: 1,
				Actions:        map[policystore.ActionPair]int64{msgRetry: 3},
				ReasonsAdded:   map[string]int64{"SOFT_DECLINE": 3},
				ReasonsRemoved: map[string]int64{"FREQUENCY_CAP": 2},
			}
			var samples []policystore.ShadowSample
			for i := range policystore.ShadowSamplesKept + 5 {
				samples = append(samples, policystore.ShadowSample{
					EventID: fmt.Sprintf("e%02d", i), EventType: decision.EventPaymentFailed,
					ActiveAction: decision.ActionMessage, ActiveReasons: []string{"FREQUENCY_CAP"},
					ShadowAction: decision.ActionRetry, ShadowReasons: []string{"SOFT_DECLINE"},
					At: t0.Add(time.Duration(i) * time.Second),
				})
			}
			// Two flushes, as two replicas would make.
			for _, part := range [][]policystore.ShadowSample{samples[:5], samples[5:]} {
				if ok, err := s.AddShadowResults(ctx, c.ID, counts, part); err != nil || !ok {
					t.Fatalf("AddShadowResults(current epoch) = %v, %v; want true", ok, err)
				}
			}
			if ok, err := s.AddShadowResults(ctx, "stale", counts, samples); err != nil || ok {
				t.Errorf("AddShadowResults(stale epoch) = %v, %v; want false", ok, err)
			}
			rep, err := s.ShadowReport(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var newest []policystore.ShadowSample
			for i := len(samples) - 1; i >= len(samples)-policystore.ShadowSamplesKept; i-- {
				newest = append(newest, samples[i])
			}
			want := policystore.ShadowReport{
				Config: cfg,
				Counts: policystore.ShadowCounts{
					Evaluated: 20, Different: 6, Errors: 2,
					Actions:        map[policystore.ActionPair]int64{msgRetry: 6},
					ReasonsAdded:   map[string]int64{"SOFT_DECLINE": 6},
					ReasonsRemoved: map[string]int64{"FREQUENCY_CAP": 4},
				},
				Samples: newest,
			}
			if diff := cmp.Diff(want, rep); diff != "" {
				t.Errorf("ShadowReport() mismatch (-want +got):\n%s", diff)
			}

			// A new shadow run starts from zero and drops late counts of the old run.
			c2, err := s.SetShadowPolicy(ctx, policystore.Change{To: "1", ShadowShare: 1, Actor: "ops", At: t0.Add(time.Hour), Comment: "try 1"})
			if err != nil {
				t.Fatal(err)
			}
			if c2.From != "2" {
				t.Errorf("SetShadowPolicy(1).From = %q, want 2", c2.From)
			}
			if ok, _ := s.AddShadowResults(ctx, c.ID, counts, nil); ok {
				t.Errorf("AddShadowResults(old epoch) = true, want false")
			}
			rep, err = s.ShadowReport(ctx)
			if err != nil || rep.Config.Version != "1" || !rep.Counts.IsZero() || len(rep.Samples) != 0 {
				t.Errorf("ShadowReport() after a new run = %+v, %v; want version 1 with nothing counted", rep, err)
			}

			// Stopping the shadow.
			c3, err := s.SetShadowPolicy(ctx, policystore.Change{ShadowShare: 0.5, Actor: "ops", At: t0.Add(2 * time.Hour), Comment: "stop"})
			if err != nil || c3.From != "1" || c3.To != "" || c3.ShadowShare != 0 {
				t.Errorf("SetShadowPolicy(\"\") = %+v, %v; want from 1 to none, share 0", c3, err)
			}
			if cfg, err := s.ShadowPolicy(ctx); err != nil || cfg != (policystore.ShadowConfig{}) {
				t.Errorf("ShadowPolicy() after stop = %+v, %v; want zero", cfg, err)
			}
		})
	}
}

func TestPolicyStoreWatch(t *testing.T) {
	for name, open := range policyStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t)
			if _, _, err := s.PublishPolicy(ctx, bundle("1", "d1", t0)); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithCancel(ctx)
			ch, err := s.WatchPolicy(wctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.ActivatePolicy(ctx, policystore.Change{To: "1", Actor: "ops", At: t0, Comment: "go"}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
			case <-time.After(time.Second):
				t.Fatal("WatchPolicy: no notification within 1 s of ActivatePolicy")
			}
			cancel()
			select {
			case _, ok := <-ch:
				for ok {
					_, ok = <-ch
				}
			case <-time.After(time.Second):
				t.Fatal("WatchPolicy: channel not closed within 1 s of cancelling its context")
			}
		})
	}
}

// TestRedisPolicyStoreWatchAcrossClients proves the notification reaches another replica:
// two stores with their own clients on one redis-server.
func TestRedisPolicyStoreWatchAcrossClients(t *testing.T) {
	ctx := t.Context()
	addr := redistest.Start(t)
	admin := policystore.NewRedis(newRedisClient(t, addr))
	replica := policystore.NewRedis(newRedisClient(t, addr))
	ch, err := replica.WatchPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.PublishPolicy(ctx, bundle("7", "d7", t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ActivatePolicy(ctx, policystore.Change{To: "7", Actor: "ops", At: t0, Comment: "go"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("replica WatchPolicy: no notification within 1 s")
	}
	if v, err := replica.ActivePolicy(ctx); err != nil || v != "7" {
		t.Errorf("replica ActivePolicy() = %q, %v; want 7", v, err)
	}
}

func TestRedisPolicyStoreUnavailable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	s := policystore.NewRedis(rdb)
	if _, err := s.ActivePolicy(t.Context()); !errors.Is(err, policystore.ErrUnavailable) {
		t.Errorf("ActivePolicy() on a closed port error = %v, want ErrUnavailable", err)
	}
}

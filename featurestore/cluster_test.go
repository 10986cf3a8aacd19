package featurestore_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	"github.com/arbiter-dev/arbiter/featurestore/storetest"
	"github.com/arbiter-dev/arbiter/policystore"
)

// TestCluster runs on one real six-node Redis Cluster: the store conformance suite through the
// cluster form of Dial, then the audit exporter over the bucket streams spread on the masters.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	c := redistest.StartCluster(t)
	raw := c.Client()
	url := "redis+cluster://" + strings.Join(c.Addrs(), ",")
	open := func(t *testing.T) storetest.Store {
		err := raw.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error {
			return m.FlushAll(ctx).Err()
		})
		if err != nil {
			t.Fatalf("FLUSHALL on every master: %v", err)
		}
		client, err := featurestore.Dial(url)
		if err != nil {
			t.Fatalf("Dial(%q) = %v", url, err)
		}
		if _, ok := client.(*redis.ClusterClient); !ok {
			t.Fatalf("Dial(%q) = %T, want *redis.ClusterClient", url, client)
		}
		s := featurestore.NewRedis(client)
		t.Cleanup(func() { s.Close() })
		return redisStore{Redis: s, raw: raw}
	}

	t.Run("Conformance", func(t *testing.T) { storetest.Run(t, open) })

	t.Run("Shards", func(t *testing.T) {
		ctx := t.Context()
		s := open(t).(redisStore).Redis
		if got := s.ShardOf(ctx, "cust-0"); got != "" {
			t.Errorf("ShardOf before the client reached the cluster = %q, want \"\" (no slot map yet)", got)
		}
		if _, err := s.Load(ctx, "cust-0", "ev", time.Now()); err != nil {
			t.Fatal(err)
		}
		// Every customer's shard is the master that serves the slot of its bucket.
		masters := map[string]bool{}
		for i := range 32 {
			cust := fmt.Sprintf("cust-%d", i)
			slot, err := c.Slot(ctx, bucketTagOf(cust))
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.MasterOf(ctx, slot)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.ShardOf(ctx, cust); got != want {
				t.Errorf("ShardOf(%q) = %q, want %q (master of slot %d)", cust, got, want, slot)
			}
			if got := s.ShardOfDecision(ctx, featurestore.NewDecisionID(cust, time.Now())); got != want {
				t.Errorf("ShardOfDecision(a decision of %q) = %q, want %q", cust, got, want)
			}
			masters[want] = true
		}
		if len(masters) != 3 {
			t.Fatalf("32 customers live on %d masters, want 3", len(masters))
		}
		res := map[string]error{}
		err := s.PingShards(ctx, func(shard string, err error) { res[shard] = err })
		if err != nil || len(res) != 3 {
			t.Fatalf("PingShards() = %v, %v; want the 3 masters", res, err)
		}
		for m, err := range res {
			if !masters[m] || err != nil {
				t.Errorf("PingShards(): %s: %v; want a master answering", m, err)
			}
		}
		if n := testing.AllocsPerRun(100, func() { _ = s.ShardOf(ctx, "cust-1") }); n != 0 {
			t.Errorf("ShardOf allocates %v times, want 0", n)
		}
	})

	t.Run("AuditExport", func(t *testing.T) {
		open(t) // empty the cluster
		ids := addAudit(t, raw, "cl", 600)
		sink := newMemSink()
		st, err := featurestore.NewAuditExporter(raw, sink).Drain(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Delivered != len(ids) || len(sink.got) != len(ids) {
			t.Errorf("Drain on the cluster: Delivered %d, distinct %d; want %d each", st.Delivered, len(sink.got), len(ids))
		}
		// The bucket streams are spread over all three masters.
		masters := map[string]bool{}
		for b := range 256 {
			slot, err := c.Slot(t.Context(), fmt.Sprintf("{b:%02x}:audit", b))
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.MasterOf(t.Context(), slot)
			if err != nil {
				t.Fatal(err)
			}
			masters[m] = true
		}
		if len(masters) != 3 {
			t.Errorf("audit streams live on %d masters, want 3", len(masters))
		}
	})

	// The policy store on a cluster: its keys share one slot ({policy}), and an activation
	// made through one cluster client reaches a replica watching through another.
	t.Run("PolicyStore", func(t *testing.T) {
		ctx := t.Context()
		open(t) // empty the cluster
		dial := func() *policystore.Redis {
			client, err := featurestore.Dial(url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			return policystore.NewRedis(client)
		}
		admin, replica := dial(), dial()
		ch, err := replica.WatchPolicy(ctx)
		if err != nil {
			t.Fatalf("WatchPolicy() = %v", err)
		}
		b := policystore.Bundle{
			PolicyVersion: policystore.PolicyVersion{ID: "default", Version: "7", Digest: "d7", Author: "alice",
				CreatedAt: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), TestCases: 1},
			Files: map[string][]byte{"policy.yaml": []byte("version: 7\n")},
		}
		if _, _, err := admin.PublishPolicy(ctx, b); err != nil {
			t.Fatalf("PublishPolicy() = %v", err)
		}
		if _, err := admin.ActivatePolicy(ctx, policystore.Change{To: "7", Actor: "ops", At: b.CreatedAt, Comment: "go"}); err != nil {
			t.Fatalf("ActivatePolicy() = %v", err)
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("replica WatchPolicy on the cluster: no notification within 5 s of ActivatePolicy")
		}
		if v, err := replica.ActivePolicy(ctx); err != nil || v != "7" {
			t.Errorf("replica ActivePolicy() = %q, %v; want 7", v, err)
		}
		got, err := replica.Bundle(ctx, "7")
		if err != nil || string(got.Files["policy.yaml"]) != "version: 7\n" {
			t.Errorf("replica Bundle(7) = %q, %v; want the published files", got.Files["policy.yaml"], err)
		}
	})
}

// bucketTagOf is the hash tag of a customer's keys, "{b:XX}" with XX = fnv-1a-32(id) % 256.
func bucketTagOf(customerID string) string {
	h := fnv.New32a()
	h.Write([]byte(customerID))
	return fmt.Sprintf("{b:%02x}", h.Sum32()%256)
}

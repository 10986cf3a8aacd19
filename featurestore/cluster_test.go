package featurestore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	"github.com/arbiter-dev/arbiter/featurestore/storetest"
)

// clusterStore lets the conformance suite plant malformed data in a Redis Cluster.
type clusterStore struct {
	*featurestore.Redis
	raw *redis.ClusterClient
}

var _ storetest.Corrupter = clusterStore{}

func (r clusterStore) Corrupt(ctx context.Context, customerID string, c storetest.Corruption, at time.Time) error {
	w, err := corruption(customerID, c, at)
	if err != nil {
		return err
	}
	if w.replace {
		if err := r.raw.Del(ctx, w.key).Err(); err != nil {
			return err
		}
	}
	switch v := w.value.(type) {
	case string:
		return r.raw.Set(ctx, w.key, v, 0).Err()
	case map[string]string:
		return r.raw.HSet(ctx, w.key, v).Err()
	case map[string]float64:
		for m, s := range v {
			if err := r.raw.ZAdd(ctx, w.key, redis.Z{Score: s, Member: m}).Err(); err != nil {
				return err
			}
		}
		return nil
	case []string:
		return r.raw.RPush(ctx, w.key, v).Err()
	}
	return errors.New("unknown raw value")
}

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
		return clusterStore{Redis: s, raw: raw}
	}

	t.Run("Conformance", func(t *testing.T) { storetest.Run(t, open) })

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
}

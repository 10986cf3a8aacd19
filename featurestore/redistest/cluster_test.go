package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestCluster starts one cluster and runs the checks below on it in order (the failover check
// changes the cluster, so it comes last).
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six redis-server processes")
	}
	c := StartCluster(t)
	t.Run("ServesAllSlots", func(t *testing.T) { testClusterServesAllSlots(t, c) })
	t.Run("Failover", func(t *testing.T) { testClusterFailover(t, c) })
}

// testClusterServesAllSlots writes and reads keys spread over every master through a cluster
// client, and checks that they land on all three masters.
func testClusterServesAllSlots(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := len(c.Addrs()); got != 6 {
		t.Fatalf("len(Addrs()) = %d, want 6", got)
	}
	rdb := c.Client()
	masters := map[string]bool{}
	for i := range 300 {
		key := fmt.Sprintf("k%d", i)
		if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		slot, err := c.Slot(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.MasterOf(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		masters[m] = true
	}
	for i := range 300 {
		key := fmt.Sprintf("k%d", i)
		got, err := rdb.Get(ctx, key).Int()
		if err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d, nil", key, got, err, i)
		}
	}
	if len(masters) != 3 {
		t.Errorf("keys landed on %d masters (%v), want 3", len(masters), masters)
	}
}

// testClusterFailover kills the master of a key and waits until its replica is promoted; the
// key's value survives (it was replicated before the kill), writes work again, and the killed
// node rejoins.
func testClusterFailover(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := c.Client()
	const key = "{c:failover}:x"
	if err := rdb.Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// WAIT makes the write reach the replica before the kill.
	if n, err := rdb.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want 1, nil", n, err)
	}
	old, err := c.KillMaster(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	took, err := c.WaitFailover(ctx, key, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover of %s took %v", old, took)
	slot, _ := c.Slot(ctx, key)
	now, err := c.MasterOf(ctx, slot)
	if err != nil || now == old {
		t.Fatalf("MasterOf(%d) = %q, %v; want a new master, not %q", slot, now, err, old)
	}
	// The client finds the new master when it next reloads its slot map.
	var got string
	for deadline := time.Now().Add(5 * time.Second); ; {
		got, err = rdb.Get(ctx, key).Result()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || got != "before" {
		t.Fatalf("GET %s after failover = %q, %v; want \"before\", nil", key, got, err)
	}
	if err := rdb.Set(ctx, key, "after", 0).Err(); err != nil {
		t.Fatalf("SET %s after failover: %v", key, err)
	}
	if err := c.Restart(old); err != nil {
		t.Fatalf("Restart(%s): %v", old, err)
	}
}

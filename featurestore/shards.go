package featurestore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// bucketTags are the hash tags of the buckets, "{b:00}" to "{b:ff}", as key builds them.
var bucketTags = func() (t [256]string) {
	for b := range t {
		t[b] = "{b:" + string([]byte{hexDigits[b>>4], hexDigits[b&0xf]}) + "}"
	}
	return t
}()

// shardMap tells which Redis node holds a bucket's keys.
type shardMap struct {
	cluster *redis.ClusterClient // nil for a single node
	addr    string               // the single node's address
	// routed is set once the cluster client has its slot map (a command went through it):
	// from then on MasterForKey reads the map and never waits on the network.
	routed atomic.Bool
}

func newShardMap(client redis.UniversalClient) *shardMap {
	m := &shardMap{}
	switch c := client.(type) {
	case *redis.ClusterClient:
		m.cluster = c
		c.AddHook(routedHook{&m.routed})
	case *redis.Client:
		m.addr = c.Options().Addr
	}
	return m
}

// of returns the address of the master that serves bucket b's slot in the cluster client's slot
// map, the single node's address, or "" while the cluster client has no slot map yet. It does no
// I/O: ctx is only handed to go-redis, which needs none once it has its map.
func (m *shardMap) of(ctx context.Context, b bucket) string {
	if m.cluster == nil {
		return m.addr
	}
	if !m.routed.Load() {
		// MasterForKey would load the slot map on this caller's time, before any circuit
		// breaker could refuse the call: one shard for all until a command gets through.
		return ""
	}
	node, err := m.cluster.MasterForKey(ctx, bucketTags[b])
	if err != nil {
		return ""
	}
	return node.Options().Addr
}

// routedHook sets routed after the first command that a cluster client routed and a node
// answered: the client then has a slot map, and keeps one.
type routedHook struct{ routed *atomic.Bool }

func (h routedHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h routedHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if (err == nil || errors.Is(err, redis.Nil)) && !h.routed.Load() {
			h.routed.Store(true)
		}
		return err
	}
}

func (h routedHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if (err == nil || errors.Is(err, redis.Nil)) && !h.routed.Load() {
			h.routed.Store(true)
		}
		return err
	}
}

// ShardOf returns the shard that holds customerID's keys, so that a caller can keep one circuit
// breaker per shard: on a Redis Cluster, the address of the master that serves the customer's
// slot in the client's slot map ("host:port"); on a single Redis, its address. After a
// failover the slot map names the promoted replica, so the shard changes. Until the cluster
// client first reaches the cluster (it then loads its slot map) ShardOf returns "": one shard
// for every customer. It does no I/O (go-redis refreshes the slot map in the background) and
// does not allocate.
func (r *Redis) ShardOf(ctx context.Context, customerID string) string {
	return r.shards.of(ctx, bucketOf(customerID))
}

// ShardOfDecision returns the shard that holds the decision decisionID, as ShardOf does for
// its customer; "" for a string that is not a decision id.
func (r *Redis) ShardOfDecision(ctx context.Context, decisionID string) string {
	b, err := bucketOfDecisionID(decisionID)
	if err != nil {
		return ""
	}
	return r.shards.of(ctx, b)
}

// PingShards pings every shard at once (every master of a cluster, after reloading its slot
// map; the one node of a single Redis) and calls fn with each shard's address, as ShardOf names
// it, and nil when it answered or an error satisfying errors.Is(err, ErrUnavailable), as each
// ping ends, one call at a time. A caller that has heard enough cancels ctx. PingShards fails
// when it cannot find the shards: no cluster node answers.
func (r *Redis) PingShards(ctx context.Context, fn func(shard string, err error)) error {
	m := r.shards
	if m.cluster == nil {
		fn(m.addr, r.Ping(ctx))
		return nil
	}
	var mu sync.Mutex
	err := m.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		err := c.Ping(ctx).Err()
		if err != nil {
			err = storeErr("ping", addr, err)
		}
		mu.Lock()
		defer mu.Unlock()
		fn(addr, err)
		return nil
	})
	if err != nil {
		return storeErr("ping", "", err)
	}
	if !m.routed.Load() {
		m.routed.Store(true) // ForEachMaster loaded the slot map
	}
	return nil
}

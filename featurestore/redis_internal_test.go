package featurestore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
)

func newTestRedis(t testing.TB, opts ...Option) (*Redis, *redis.Client) {
	t.Helper()
	addr := redistest.Start(t)
	client, err := Dial("redis://" + addr)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	s := NewRedis(client, opts...)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() {
		s.Close()
		raw.Close()
	})
	return s, raw
}

var testNow = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func testCommit(cust, event string, now time.Time) *Commit {
	id := NewDecisionID(cust, now)
	return &Commit{
		CustomerID: cust, EventID: event, DecisionID: id, Now: now, Record: []byte("rec " + id),
		Summary: decision.DecisionSummary{DecisionID: id, EventID: event, DecidedAt: now},
		Effects: decision.Effects{
			Message: &decision.SentMessage{DecisionID: id, Channel: decision.ChannelEmail, Purpose: decision.PurposeService, At: now},
			CapChecks: []decision.CapCheck{{Name: "cap", Purposes: decision.PurposesOf(decision.PurposeService),
				Since: now.Add(-time.Hour), Limit: 100}},
			Ledger: []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: event, CardRef: "card", At: now}},
			Stops:  []decision.RetryStop{{CardRef: "card", Until: now.Add(5 * time.Hour)}},
		},
	}
}

// TestRedisScriptCacheLost checks that the store recovers when Redis forgets its scripts (a
// restart or SCRIPT FLUSH): Run falls back from EVALSHA to EVAL.
func TestRedisScriptCacheLost(t *testing.T) {
	ctx := context.Background()
	s, raw := newTestRedis(t)
	for i := range 3 {
		if err := raw.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		c := testCommit("c", "ev-"+strconv.Itoa(i), testNow)
		if got, err := s.Commit(ctx, c); err != nil || got.Conflict != "" || got.Record != nil {
			t.Fatalf("Commit() after SCRIPT FLUSH = %+v, %v, want applied", got, err)
		}
		raw.ScriptFlush(ctx)
		if _, err := s.Load(ctx, "c", "ev-x", testNow); err != nil {
			t.Fatalf("Load() after SCRIPT FLUSH = %v", err)
		}
	}
}

// TestRedisTTLs checks the expiry of every key a commit writes.
func TestRedisTTLs(t *testing.T) {
	ctx := context.Background()
	s, raw := newTestRedis(t, WithRetention(2*time.Hour))
	const cust = "c"
	c := testCommit(cust, "ev", testNow)
	if _, err := s.Commit(ctx, c); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	if _, err := s.RecordOutcome(ctx, &OutcomeCommit{CustomerID: cust, DecisionID: c.DecisionID,
		Outcome: decision.OutcomeDeliveryFailed, Now: testNow,
		Effects: decision.OutcomeEffects{FailChannel: &decision.ChannelFailure{Channel: decision.ChannelSMS, Until: testNow.Add(3 * time.Hour)}},
	}); err != nil {
		t.Fatalf("RecordOutcome() = %v", err)
	}
	if err := s.PutFeatures(ctx, cust, map[string]any{"a": 1}, 0); err != nil {
		t.Fatalf("PutFeatures() = %v", err)
	}
	k := keysOf(cust)
	tests := []struct {
		key  string
		want time.Duration // -1: no expiry
	}{
		{key(keyDecision, k.bucket, "", c.DecisionID), 2 * time.Hour},
		{key(keyEvent, k.bucket, cust, "ev"), 2 * time.Hour},
		{key(keyOutcomes, k.bucket, "", c.DecisionID), 2 * time.Hour},
		{k.messages, 31 * 24 * time.Hour},
		{k.ledger, 31 * 24 * time.Hour},
		{k.recent, 90 * 24 * time.Hour},
		{k.stops, 5 * time.Hour},
		{k.failing, 3 * time.Hour},
		{k.features, -1},
	}
	for _, tt := range tests {
		got, err := raw.PTTL(ctx, tt.key).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", tt.key, err)
		}
		if tt.want < 0 {
			if got != -1 {
				t.Errorf("PTTL %s = %v, want no expiry", tt.key, got)
			}
			continue
		}
		if got > tt.want || got < tt.want-time.Minute {
			t.Errorf("PTTL %s = %v, want about %v", tt.key, got, tt.want)
		}
	}
	if err := s.PutFeatures(ctx, cust, map[string]any{"b": 2}, time.Hour); err != nil {
		t.Fatalf("PutFeatures(ttl 1h) = %v", err)
	}
	if got := raw.PTTL(ctx, k.features).Val(); got > time.Hour || got < time.Hour-time.Minute {
		t.Errorf("PTTL %s after PutFeatures(ttl 1h) = %v, want about 1h", k.features, got)
	}
}

// TestRedisAuditEntry checks the fields of an audit stream entry: the decision id only (the
// record is the decision key's value), and that the scan finds the record through it.
func TestRedisAuditEntry(t *testing.T) {
	ctx := context.Background()
	s, raw := newTestRedis(t)
	c := testCommit("c", "ev", testNow)
	if _, err := s.Commit(ctx, c); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	msgs, err := raw.XRange(ctx, key(keyAudit, bucketOf("c"), "", ""), "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("XRANGE audit = %v, %v, want one entry", msgs, err)
	}
	want := map[string]any{"d": c.DecisionID}
	if diff := cmp.Diff(want, msgs[0].Values); diff != "" {
		t.Errorf("audit entry mismatch (-want +got):\n%s", diff)
	}
	var got []byte
	if err := s.ScanAudit(ctx, func(id string, rec []byte) error {
		if id == c.DecisionID {
			got = rec
		}
		return nil
	}); err != nil || string(got) != string(c.Record) {
		t.Errorf("ScanAudit() record = %q, %v; want %q", got, err, c.Record)
	}
}

// TestRedisAuditTrimsByAge: an audit stream drops entries once they are older than the
// retention, by Redis's clock, and only then.
func TestRedisAuditTrimsByAge(t *testing.T) {
	ctx := context.Background()
	s, raw := newTestRedis(t, WithRetention(time.Second))
	stream := key(keyAudit, bucketOf("c"), "", "")
	var last string
	commitN := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			c := testCommit("c", fmt.Sprintf("ev-%d", i), testNow)
			c.Effects = decision.Effects{}
			if _, err := s.Commit(ctx, c); err != nil {
				t.Fatalf("Commit(#%d) = %v", i, err)
			}
			last = c.DecisionID
		}
	}
	const n = 250 // a stream node holds 100 entries; MINID ~ trims whole nodes
	commitN(0, n)
	if got, err := raw.XLen(ctx, stream).Result(); err != nil || got != n {
		t.Fatalf("XLEN after %d commits within the retention = %d, %v; want %d", n, got, err, n)
	}
	time.Sleep(1100 * time.Millisecond)
	commitN(n, n+1)
	got, err := raw.XLen(ctx, stream).Result()
	if err != nil || got > n+1-200 {
		t.Errorf("XLEN after the retention passed = %d, %v; want the two full nodes of older entries trimmed (at most %d)", got, err, n+1-200)
	}
	msgs, err := raw.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil || len(msgs) != 1 || msgs[0].Values["d"] != last {
		t.Errorf("newest audit entry = %v, %v; want decision %s", msgs, err, last)
	}
}

// TestRedisDown checks that every operation on an unreachable Redis fails fast with
// ErrUnavailable.
func TestRedisDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	client, err := Dial("redis://" + addr)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	s := NewRedis(client)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ops := map[string]func() error{
		"Ping": func() error { return s.Ping(ctx) },
		"Load": func() error { _, err := s.Load(ctx, "c", "e", testNow); return err },
		"Commit": func() error {
			_, err := s.Commit(ctx, testCommit("c", "e", testNow))
			return err
		},
		"State":       func() error { _, err := s.State(ctx, "c", testNow); return err },
		"GetDecision": func() error { _, _, err := s.GetDecision(ctx, NewDecisionID("c", testNow)); return err },
		"PutFeatures": func() error { return s.PutFeatures(ctx, "c", map[string]any{"a": 1}, 0) },
		"ScanAudit":   func() error { return s.ScanAudit(ctx, func(string, []byte) error { return nil }) },
		"PingShards": func() error {
			var pingErr error
			if err := s.PingShards(ctx, func(_ string, err error) { pingErr = err }); err != nil {
				return err
			}
			return pingErr
		},
		"PutFeaturesBatch": func() error {
			items := make([]FeatureRecord, 3*batchChunk)
			for i := range items {
				items[i] = FeatureRecord{CustomerID: strconv.Itoa(i), Features: map[string]any{"a": 1}}
			}
			return s.PutFeaturesBatch(ctx, items)
		},
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		t.Logf("%s: %v", name, time.Since(start))
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s on a Redis that is down = %v, want ErrUnavailable", name, err)
		}
	}
}

// TestRedisShardsSingleNode checks that a single Redis is one shard, named by its address.
func TestRedisShardsSingleNode(t *testing.T) {
	s, _ := newTestRedis(t)
	ctx := t.Context()
	addr := s.client.(*redis.Client).Options().Addr
	for _, cust := range []string{"c1", "c2", "c:3"} {
		if got := s.ShardOf(ctx, cust); got != addr {
			t.Errorf("ShardOf(%q) = %q, want %q", cust, got, addr)
		}
		if got := s.ShardOfDecision(ctx, NewDecisionID(cust, testNow)); got != addr {
			t.Errorf("ShardOfDecision(decision of %q) = %q, want %q", cust, got, addr)
		}
	}
	res := map[string]error{}
	err := s.PingShards(ctx, func(shard string, err error) { res[shard] = err })
	if pingErr, ok := res[addr]; err != nil || len(res) != 1 || !ok || pingErr != nil {
		t.Errorf("PingShards() = %v, %v; want %s answering", res, err, addr)
	}
	if n := testing.AllocsPerRun(100, func() { _ = s.ShardOf(ctx, "c1") }); n != 0 {
		t.Errorf("ShardOf allocates %v times, want 0", n)
	}
}

func TestDial(t *testing.T) {
	tests := []struct {
		url         string
		wantCluster bool
		wantAddrs   []string
		wantUser    string
		wantPass    string
		wantDB      int
		wantProto   int // 0: RESP2, the default
	}{
		{url: "redis://127.0.0.1:6379", wantAddrs: []string{"127.0.0.1:6379"}},
		{url: "redis://u:p%40ss@h:6380/2", wantAddrs: []string{"h:6380"}, wantUser: "u", wantPass: "p@ss", wantDB: 2},
		{url: "rediss://h:6380", wantAddrs: []string{"h:6380"}},
		{url: "redis://h:6380?protocol=3", wantAddrs: []string{"h:6380"}, wantProto: 3},
		{url: "h:6379", wantAddrs: []string{"h:6379"}},
		{url: "redis+cluster://h1:7000,h2:7001", wantCluster: true, wantAddrs: []string{"h1:7000", "h2:7001"}},
		{url: "rediss+cluster://u:pw@h1:7000,h2:7001", wantCluster: true, wantAddrs: []string{"h1:7000", "h2:7001"}, wantUser: "u", wantPass: "pw"},
		{url: "h1:7000, h2:7001,h3:7002", wantCluster: true, wantAddrs: []string{"h1:7000", "h2:7001", "h3:7002"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := Dial(tt.url)
			if err != nil {
				t.Fatalf("Dial(%q) = %v", tt.url, err)
			}
			defer c.Close()
			type got struct {
				Cluster              bool
				Addrs                []string
				User, Pass           string
				DB                   int
				ContextTimeout       bool
				DialT, ReadT, WriteT time.Duration
				Protocol             int
			}
			var g got
			switch c := c.(type) {
			case *redis.Client:
				o := c.Options()
				g = got{false, []string{o.Addr}, o.Username, o.Password, o.DB, o.ContextTimeoutEnabled, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.Protocol}
			case *redis.ClusterClient:
				o := c.Options()
				g = got{true, o.Addrs, o.Username, o.Password, 0, o.ContextTimeoutEnabled, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.Protocol}
			default:
				t.Fatalf("Dial(%q) = %T", tt.url, c)
			}
			proto := tt.wantProto
			if proto == 0 {
				proto = 2
			}
			want := got{tt.wantCluster, tt.wantAddrs, tt.wantUser, tt.wantPass, tt.wantDB, false, dialTimeout, readTimeout, writeTimeout, proto}
			if diff := cmp.Diff(want, g); diff != "" {
				t.Errorf("Dial(%q) options mismatch (-want +got):\n%s", tt.url, diff)
			}
		})
	}
	for _, bad := range []string{"", "h", "redis+cluster://", "redis+cluster://h1:1/0", "h1:1,nope", "redis://h:1/notadb"} {
		if c, err := Dial(bad); err == nil {
			c.Close()
			t.Errorf("Dial(%q) = nil error, want an error", bad)
		}
	}
}

// TestRedisPutFeaturesBatchChunks writes more customers than one pipeline holds.
func TestRedisPutFeaturesBatchChunks(t *testing.T) {
	ctx := context.Background()
	s, raw := newTestRedis(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping() = %v", err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the batch's pipelines are gone when it returns
	n := 2*batchChunk + 7
	items := make([]FeatureRecord, n)
	for i := range items {
		items[i] = FeatureRecord{CustomerID: "c" + strconv.Itoa(i), Features: map[string]any{"n": i}}
		if i%2 == 0 {
			items[i].TTL = time.Hour
		}
	}
	if err := s.PutFeaturesBatch(ctx, items); err != nil {
		t.Fatalf("PutFeaturesBatch(%d) = %v", n, err)
	}
	if got := raw.DBSize(ctx).Val(); got != int64(n) {
		t.Errorf("DBSIZE after PutFeaturesBatch(%d) = %d, want %d", n, got, n)
	}
	for _, i := range []int{0, 1, batchChunk, n - 1} {
		k := keysOf("c" + strconv.Itoa(i)).features
		if got, want := raw.HGet(ctx, k, "n").Val(), strconv.Itoa(i); got != want {
			t.Errorf("HGET %s n = %q, want %q", k, got, want)
		}
		ttl := raw.PTTL(ctx, k).Val()
		if (i%2 == 0) != (ttl > 0) {
			t.Errorf("PTTL %s = %v, want an expiry %v", k, ttl, i%2 == 0)
		}
	}
}

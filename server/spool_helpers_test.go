package server

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/spool"
	"github.com/redis/go-redis/v9"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/proto"
)

// openTestSpool opens a spool in a new temporary directory, closed when the test ends.
func openTestSpool(t testing.TB, opts ...spool.Option) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	return sp
}

// spooled reads the records in the spool's segments, oldest first, as the drain would.
func spooled(t *testing.T, dir string) []*arbiterv1.DecisionRecord {
	t.Helper()
	raw, err := spool.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*arbiterv1.DecisionRecord, len(raw))
	for i, b := range raw {
		out[i] = &arbiterv1.DecisionRecord{}
		if err := proto.Unmarshal(b, out[i]); err != nil {
			t.Fatalf("spooled record %d: %v", i, err)
		}
	}
	return out
}

func newCountingSink() *countingSink {
	return &countingSink{got: map[string]int{}, recs: map[string]*arbiterv1.DecisionRecord{}}
}

// export runs the audit exporter of "arbiter audit export" over the Redis at addr into sink.
func export(t *testing.T, addr string, sink featurestore.AuditSink) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if _, err := featurestore.NewAuditExporter(rdb, sink).Drain(t.Context()); err != nil {
		t.Fatalf("audit export = %v", err)
	}
}

// testRecord is an encoded degraded decision record.
func testRecord(decisionID, customerID string) []byte {
	b, err := proto.Marshal(&arbiterv1.DecisionRecord{
		DecisionId: decisionID, EventId: "ev-" + decisionID, CustomerId: customerID,
		Response: &arbiterv1.DecideResponse{DecisionId: decisionID, Degraded: true, Action: arbiterv1.Action_ACTION_SUPPRESS},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// flakyAppender fails its failAt-th call once with ErrUnavailable.
type flakyAppender struct {
	spool.DecisionAppender
	calls, failAt int
}

func (f *flakyAppender) AppendDecision(ctx context.Context, d *featurestore.Decided) (bool, error) {
	f.calls++
	if f.calls == f.failAt {
		return false, fmt.Errorf("append decision: %w (test)", featurestore.ErrUnavailable)
	}
	return f.DecisionAppender.AppendDecision(ctx, d)
}

// collectBreakerMetrics returns the breaker transitions by "shard to" and the breaker states by
// shard.
func collectBreakerMetrics(t *testing.T, reader *sdkmetric.ManualReader) (transitions, states map[string]int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	transitions, states = map[string]int64{}, map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == "arbiter.store.breaker.transitions" {
					for _, p := range d.DataPoints {
						shard, _ := p.Attributes.Value("shard")
						to, _ := p.Attributes.Value("to")
						transitions[shard.AsString()+" "+to.AsString()] += p.Value
					}
				}
			case metricdata.Gauge[int64]:
				if m.Name == "arbiter.store.breaker.state" {
					for _, p := range d.DataPoints {
						shard, _ := p.Attributes.Value("shard")
						states[shard.AsString()] = p.Value
					}
				}
			}
		}
	}
	return transitions, states
}

// countingSink is an audit export sink that counts every delivery of each decision id (it
// does not deduplicate, so a record in the trail twice shows as 2) and keeps the records.
type countingSink struct {
	mu   sync.Mutex
	got  map[string]int
	recs map[string]*arbiterv1.DecisionRecord
}

func (s *countingSink) WriteAudit(_ context.Context, entries []featurestore.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		var rec arbiterv1.DecisionRecord
		if err := proto.Unmarshal(e.Record, &rec); err != nil || rec.GetDecisionId() != e.DecisionID {
			return fmt.Errorf("entry %s: record %s, %v", e.DecisionID, rec.GetDecisionId(), err)
		}
		s.got[e.DecisionID]++
		s.recs[e.DecisionID] = &rec
	}
	return nil
}

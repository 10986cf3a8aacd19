package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// openTestSpool opens a spool in a new temporary directory, closed when the test ends.
func openTestSpool(t testing.TB, opts ...Option) *Spool {
	t.Helper()
	sp, err := Open(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	return sp
}

// spooled reads the records in the spool's segments, oldest first, as the drain would.
func spooled(t *testing.T, dir string) []*arbiterv1.DecisionRecord {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+SegmentExt))
	if err != nil {
		t.Fatal(err)
	}
	var out []*arbiterv1.DecisionRecord
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		frames, _ := parseFrames(data)
		for _, f := range frames {
			var rec arbiterv1.DecisionRecord
			if err := proto.Unmarshal(f, &rec); err != nil {
				t.Fatalf("spooled record in %s: %v", name, err)
			}
			out = append(out, &rec)
		}
	}
	return out
}

// countingSink is an audit export sink that counts every delivery of each decision id (it
// does not deduplicate, so a record in the trail twice shows as 2) and keeps the records.
type countingSink struct {
	mu   sync.Mutex
	got  map[string]int
	recs map[string]*arbiterv1.DecisionRecord
}

func newCountingSink() *countingSink {
	return &countingSink{got: map[string]int{}, recs: map[string]*arbiterv1.DecisionRecord{}}
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
	DecisionAppender
	calls, failAt int
}

func (f *flakyAppender) AppendDecision(ctx context.Context, d *featurestore.Decided) (bool, error) {
	f.calls++
	if f.calls == f.failAt {
		return false, fmt.Errorf("append decision: %w (test)", featurestore.ErrUnavailable)
	}
	return f.DecisionAppender.AppendDecision(ctx, d)
}

// TestOpenSpoolErrors: a directory that cannot be created or is in use stops the start-up.
func TestOpenSpoolErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "spool")); err == nil {
		t.Errorf("Open(under a file) = nil error, want one")
	}
	if _, err := Open(""); err == nil {
		t.Errorf("Open(\"\") = nil error, want one")
	}
	sp := openTestSpool(t)
	if _, err := Open(sp.Dir()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Open(a spool already open) = %v, want in use", err)
	}
}

// TestSpoolTornTail cuts the last record of a segment short, as a crash in the middle of a
// write does: the spool opens, keeps the records before it, and appends after them.
func TestSpoolTornTail(t *testing.T) {
	dir := t.TempDir()
	sp, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var want []string
	for i := range 3 {
		id := featurestore.NewDecisionID(fmt.Sprint("cust-", i), testNow)
		want = append(want, id)
		if err := sp.Append(ctx, testRecord(id, fmt.Sprint("cust-", i))); err != nil {
			t.Fatalf("Append(%d) = %v", i, err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"+SegmentExt))
	if len(names) != 1 {
		t.Fatalf("segments = %v, want 1", names)
	}
	whole, err := os.ReadFile(names[0])
	if err != nil {
		t.Fatal(err)
	}
	torn := testRecord(featurestore.NewDecisionID("cust-torn", testNow), "cust-torn")
	for _, tail := range []struct {
		name  string
		bytes []byte
	}{
		{"header cut", appendFrame(nil, torn)[:5]},
		{"record cut", appendFrame(nil, torn)[:spoolFrameHeader+len(torn)/2]},
		{"checksum wrong", func() []byte { f := appendFrame(nil, torn); f[len(f)-1] ^= 0xff; return f }()},
		{"zeros", make([]byte, 64)},
	} {
		t.Run(tail.name, func(t *testing.T) {
			if err := os.WriteFile(names[0], append(append([]byte(nil), whole...), tail.bytes...), 0o600); err != nil {
				t.Fatal(err)
			}
			sp, err := Open(dir)
			if err != nil {
				t.Fatalf("Open(torn tail) = %v", err)
			}
			defer sp.Close()
			if info, err := os.Stat(names[0]); err != nil || info.Size() != int64(len(whole)) {
				t.Errorf("segment after open = %v bytes, %v; want the torn tail cut to %d", info.Size(), err, len(whole))
			}
			if got := sp.PendingBytes(); got != int64(len(whole)) {
				t.Errorf("PendingBytes() = %d, want %d", got, len(whole))
			}
			var got []string
			for _, r := range spooled(t, dir) {
				got = append(got, r.GetDecisionId())
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("records after the torn tail = %v, want %v", got, want)
			}
		})
	}

	// The reopened spool appends after the kept records, and drains them all.
	sp, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	id := featurestore.NewDecisionID("cust-after", testNow)
	if err := sp.Append(ctx, testRecord(id, "cust-after")); err != nil {
		t.Fatal(err)
	}
	store := featurestore.NewMemory()
	defer store.Close()
	n, err := sp.Drain(ctx, store)
	if err != nil || n != 4 {
		t.Errorf("Drain() = %d, %v; want 4, nil", n, err)
	}
	seen := map[string]int{}
	if err := store.ScanAudit(ctx, func(id string, _ []byte) error { seen[id]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range append(want, id) {
		if seen[id] != 1 {
			t.Errorf("decision %s in the audit trail %d times, want 1", id, seen[id])
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*"+SegmentExt)); len(left) != 0 || sp.PendingBytes() != 0 {
		t.Errorf("after the drain: segments %v, pending %d bytes; want none", left, sp.PendingBytes())
	}
}

// TestSpoolConcurrentAppends: appends from many goroutines all reach the disk, each once, and
// the metrics count them.
func TestSpoolConcurrentAppends(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	sp := openTestSpool(t, WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
		WithSegmentBytes(4<<10)) // several segments
	const workers, each = 16, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				cust := fmt.Sprintf("cust-%d-%d", w, i)
				if err := sp.Append(t.Context(), testRecord(featurestore.NewDecisionID(cust, testNow), cust)); err != nil {
					t.Errorf("Append(%s) = %v", cust, err)
				}
			}
		})
	}
	wg.Wait()
	recs := spooled(t, sp.Dir())
	ids := map[string]bool{}
	for _, r := range recs {
		ids[r.GetDecisionId()] = true
	}
	if len(recs) != workers*each || len(ids) != workers*each {
		t.Errorf("spool holds %d records, %d distinct; want %d", len(recs), len(ids), workers*each)
	}
	if m, ok := collect(t, reader, "arbiter.audit.spool.records"); !ok || m.Data.(metricdata.Sum[int64]).DataPoints[0].Value != workers*each {
		t.Errorf("arbiter.audit.spool.records = %v, want %d", m.Data, workers*each)
	}
	pending, ok := collect(t, reader, "arbiter.audit.spool.pending")
	if !ok || pending.Data.(metricdata.Gauge[int64]).DataPoints[0].Value != sp.PendingBytes() || sp.PendingBytes() == 0 {
		t.Errorf("arbiter.audit.spool.pending = %v, want %d (non-zero)", pending.Data, sp.PendingBytes())
	}

	store := featurestore.NewMemory()
	defer store.Close()
	if n, err := sp.Drain(t.Context(), store); err != nil || n != workers*each {
		t.Errorf("Drain() = %d, %v; want %d", n, err, workers*each)
	}
	if m, ok := collect(t, reader, "arbiter.audit.spool.drained"); !ok || m.Data.(metricdata.Sum[int64]).DataPoints[0].Value != workers*each {
		t.Errorf("arbiter.audit.spool.drained = %v, want %d", m.Data, workers*each)
	}
	if sp.PendingBytes() != 0 {
		t.Errorf("PendingBytes() after the drain = %d, want 0", sp.PendingBytes())
	}
}

// TestSpoolFull: a spool at its size limit refuses records, and takes them again once the
// drain has moved its records into the store.
func TestSpoolFull(t *testing.T) {
	ctx := t.Context()
	rec := func(i int) []byte {
		cust := fmt.Sprint("cust-full-", i)
		return testRecord(featurestore.NewDecisionID(cust, testNow), cust)
	}
	one := int64(len(rec(0)) + spoolFrameHeader)
	sp := openTestSpool(t, WithMaxBytes(3*one+one/2))
	for i := range 3 {
		if err := sp.Append(ctx, rec(i)); err != nil {
			t.Fatalf("Append(record %d of 3 that fit) = %v", i+1, err)
		}
	}
	err := sp.Append(ctx, rec(3))
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Append(a 4th record past the limit) = %v, want the spool full", err)
	}
	store := featurestore.NewMemory()
	defer store.Close()
	if n, err := sp.Drain(ctx, store); err != nil || n != 3 {
		t.Fatalf("Drain() = %d, %v; want 3, nil", n, err)
	}
	if err := sp.Append(ctx, rec(3)); err != nil {
		t.Errorf("Append(after the drain) = %v, want room again", err)
	}
}

// testNow is the time of the test records.
var testNow = time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC)

// collect returns the metric called name from reader.
// collect returns the metric name that reader collected.
func collect(t *testing.T, reader *sdkmetric.ManualReader, name string) (metricdata.Metrics, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() error: %v", err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

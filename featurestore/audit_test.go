package featurestore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// memSink is an AuditSink that keeps what it is given, counting each decision id, and can be
// told to fail.
type memSink struct {
	got  map[string]int
	fail error
}

func (s *memSink) WriteAudit(_ context.Context, entries []featurestore.AuditEntry) error {
	if s.fail != nil {
		return s.fail
	}
	for _, e := range entries {
		var rec arbiterv1.DecisionRecord
		if err := proto.Unmarshal(e.Record, &rec); err != nil || rec.GetDecisionId() != e.DecisionID {
			return fmt.Errorf("entry %s: record %v, %v", e.DecisionID, rec.GetDecisionId(), err)
		}
		s.got[e.DecisionID]++
	}
	return nil
}

func newMemSink() *memSink { return &memSink{got: map[string]int{}} }

// addAudit appends audit entries to bucket streams the way the commit script does, spread over
// the buckets, and returns their decision ids.
func addAudit(t *testing.T, rdb redis.UniversalClient, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		rec, err := proto.Marshal(&arbiterv1.DecisionRecord{DecisionId: id, EventId: "e-" + id, CustomerId: "c-" + id})
		if err != nil {
			t.Fatal(err)
		}
		stream := fmt.Sprintf("{b:%02x}:audit", (i*37)%256)
		if err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: stream, Values: []any{"d", id, "r", rec}}).Err(); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func wantOnce(ids ...[]string) map[string]int {
	m := map[string]int{}
	for _, list := range ids {
		for _, id := range list {
			m[id] = 1
		}
	}
	return m
}

func TestAuditExporter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()

	first := addAudit(t, rdb, "a", 700) // more than one batch in some buckets with batch 2
	sink := newMemSink()
	st, err := featurestore.NewAuditExporter(rdb, sink, featurestore.WithAuditBatch(2)).Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantOnce(first), sink.got); diff != "" {
		t.Fatalf("first Drain exported (-want +got):\n%s", diff)
	}
	if st.Delivered != len(first) {
		t.Errorf("first Drain Delivered = %d, want %d", st.Delivered, len(first))
	}

	t.Run("resumes where it stopped", func(t *testing.T) {
		more := addAudit(t, rdb, "b", 50)
		sink2 := newMemSink()
		if _, err := featurestore.NewAuditExporter(rdb, sink2).Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantOnce(more), sink2.got); diff != "" {
			t.Errorf("Drain after restart exported (-want +got):\n%s", diff)
		}
	})

	t.Run("a failed sink write is delivered again", func(t *testing.T) {
		more := addAudit(t, rdb, "c", 40)
		broken := newMemSink()
		broken.fail = errors.New("disk full")
		if _, err := featurestore.NewAuditExporter(rdb, broken).Drain(ctx); !errors.Is(err, broken.fail) {
			t.Fatalf("Drain with a failing sink = %v, want %v", err, broken.fail)
		}
		// A new exporter (the old one crashed) gets the unacknowledged entries again.
		sink3 := newMemSink()
		if _, err := featurestore.NewAuditExporter(rdb, sink3).Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantOnce(more), sink3.got); diff != "" {
			t.Errorf("Drain after a failed write exported (-want +got):\n%s", diff)
		}
		// The same exporter, once its sink works again, also gets them again.
		more = addAudit(t, rdb, "d", 10)
		e := featurestore.NewAuditExporter(rdb, broken)
		if _, err := e.Drain(ctx); err == nil {
			t.Fatal("Drain with a failing sink = nil, want an error")
		}
		broken.fail = nil
		if _, err := e.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantOnce(more), broken.got); diff != "" {
			t.Errorf("Drain after the sink recovered exported (-want +got):\n%s", diff)
		}
	})

	t.Run("another group gets everything", func(t *testing.T) {
		sink4 := newMemSink()
		if _, err := featurestore.NewAuditExporter(rdb, sink4, featurestore.WithAuditGroup("second")).Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := len(sink4.got), 700+50+40+10; got != want {
			t.Errorf("second group exported %d decisions, want %d", got, want)
		}
	})

	t.Run("returns while entries arrive faster than the sink writes", func(t *testing.T) {
		// Every write of the sink appends twice as many new entries as it was given, as live
		// traffic would: Drain exports what was there when it began, then returns.
		before := addAudit(t, rdb, "f", 300)
		sink := &feedingSink{memSink: newMemSink(), t: t, rdb: rdb}
		if _, err := featurestore.NewAuditExporter(rdb, sink, featurestore.WithAuditGroup("g-feed"), featurestore.WithAuditBatch(2)).Drain(ctx); err != nil {
			t.Fatalf("Drain under a growing stream = %v after %d sink writes", err, sink.writes)
		}
		for _, id := range before {
			if sink.got[id] != 1 {
				t.Errorf("%s was in the streams when Drain began and was exported %d times, want 1", id, sink.got[id])
			}
		}
	})

	t.Run("entries trimmed while pending are counted lost", func(t *testing.T) {
		const stream = "{b:7f}:audit"
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"d", "lost-1", "r", mustRecord(t, "lost-1")}})
		broken := &memSink{got: map[string]int{}, fail: errors.New("down")}
		_, _ = featurestore.NewAuditExporter(rdb, broken, featurestore.WithAuditGroup("g-lost")).Drain(ctx)
		if err := rdb.XTrimMaxLen(ctx, stream, 0).Err(); err != nil {
			t.Fatal(err)
		}
		st, err := featurestore.NewAuditExporter(rdb, newMemSink(), featurestore.WithAuditGroup("g-lost")).Drain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Lost < 1 {
			t.Errorf("Drain after the pending entry was trimmed: Lost = %d, want at least 1", st.Lost)
		}
	})
}

// feedingSink is a memSink that appends two new audit entries for each entry it writes, and
// fails after 500 writes: an exporter that chases the entries it causes never finishes.
type feedingSink struct {
	*memSink
	t      *testing.T
	rdb    redis.UniversalClient
	writes int
}

func (s *feedingSink) WriteAudit(ctx context.Context, entries []featurestore.AuditEntry) error {
	if s.writes++; s.writes > 500 {
		return errors.New("still draining after 500 sink writes")
	}
	addAudit(s.t, s.rdb, fmt.Sprintf("feed%d", s.writes), 2*len(entries))
	return s.memSink.WriteAudit(ctx, entries)
}

func mustRecord(t *testing.T, id string) []byte {
	t.Helper()
	b, err := proto.Marshal(&arbiterv1.DecisionRecord{DecisionId: id})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuditExporterRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	now := time.Now()
	const stream = "{b:01}:audit"
	old := now.Add(-2 * time.Hour).UnixMilli()
	for i, id := range []string{"old-1", "old-2"} {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: fmt.Sprintf("%d-%d", old, i), Values: []any{"d", id, "r", mustRecord(t, id)}})
	}
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"d", "new-1", "r", mustRecord(t, "new-1")}})

	// A second group that has not read anything yet holds the trim back.
	if err := rdb.XGroupCreate(ctx, stream, "slow", "0").Err(); err != nil {
		t.Fatal(err)
	}
	e := featurestore.NewAuditExporter(rdb, newMemSink(), featurestore.WithAuditRetention(time.Hour), featurestore.WithAuditClock(func() time.Time { return now }))
	st, err := e.Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Trimmed != 0 {
		t.Errorf("Drain with an unread group: Trimmed = %d, want 0", st.Trimmed)
	}
	if err := rdb.XGroupDestroy(ctx, stream, "slow").Err(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if st, err = e.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Trimmed != 2 {
		t.Errorf("Drain with retention 1h: Trimmed = %d, want 2 (the entries 2h old)", st.Trimmed)
	}
	if n := rdb.XLen(ctx, stream).Val(); n != 1 {
		t.Errorf("XLEN after trim = %d, want 1", n)
	}
}

// lockedSink is a memSink safe to read while an exporter runs.
type lockedSink struct {
	mu sync.Mutex
	memSink
}

func (s *lockedSink) WriteAudit(ctx context.Context, entries []featurestore.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.memSink.WriteAudit(ctx, entries)
}

func (s *lockedSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// TestAuditExporterRun checks the following mode: entries added while Run polls are exported,
// and Run returns nil when its context ends.
func TestAuditExporterRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	sink := &lockedSink{memSink: *newMemSink()}
	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		st  featurestore.AuditStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := featurestore.NewAuditExporter(rdb, sink, featurestore.WithAuditPoll(20*time.Millisecond)).Run(ctx)
		done <- result{st, err}
	}()
	addAudit(t, rdb, "run", 30)
	for deadline := time.Now().Add(5 * time.Second); sink.len() < 30; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Run exported %d of 30 entries within 5s", sink.len())
		}
	}
	cancel()
	r := <-done
	if r.err != nil || r.st.Delivered != 30 {
		t.Errorf("Run() after cancel = %+v, %v; want 30 delivered, nil", r.st, r.err)
	}
}

// TestAuditExporterReadsCommittedRecords: a commit's audit entry carries only the decision id;
// the exporter reads the record from the decision key. A record that expired before the
// export is counted as Expired, not exported, and does not stop the export.
func TestAuditExporterReadsCommittedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	store, rdb := auditStore(t)
	ctx := t.Context()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

	var ids []string
	for i := range 40 {
		ids = append(ids, commitSuppress(t, store, fmt.Sprintf("cust-%d", i), "ev", now))
	}
	// The first decision's record expires before the export.
	if err := rdb.Del(ctx, "{b:"+ids[0][:2]+"}:d:"+ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	sink := newMemSink() // checks that each record decodes and names its decision
	st, err := featurestore.NewAuditExporter(rdb, sink, featurestore.WithAuditBatch(7)).Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantOnce(ids[1:]), sink.got); diff != "" {
		t.Errorf("Drain exported (-want +got):\n%s", diff)
	}
	if st.Expired != 1 || st.Delivered != len(ids)-1 {
		t.Errorf("Drain stats = %+v, want 1 expired and %d delivered", st, len(ids)-1)
	}
}

// TestAuditExporterCountsErasedRecords: a decision whose customer was erased before the
// export has no record left; the exporter counts it as Erased, not Expired, and delivers
// nothing for it. A record that is gone without an erasure is still Expired.
func TestAuditExporterCountsErasedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	store, rdb := auditStore(t)
	ctx := t.Context()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

	erasedIDs := []string{commitSuppress(t, store, "cust-erased", "ev-1", now), commitSuppress(t, store, "cust-erased", "ev-2", now)}
	expired := commitSuppress(t, store, "cust-expired", "ev-1", now)
	kept := commitSuppress(t, store, "cust-kept", "ev-1", now)

	e := &featurestore.Erasure{CustomerID: "cust-erased", At: now.Add(time.Minute), Actor: "dpo", Reason: "test"}
	if err := store.EraseCustomer(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := e.Erased["decisions"]; got != 2 {
		t.Fatalf("EraseCustomer erased %d decision records, want 2", got)
	}
	if err := rdb.Del(ctx, "{b:"+expired[:2]+"}:d:"+expired).Err(); err != nil {
		t.Fatal(err)
	}

	sink := newMemSink()
	st, err := featurestore.NewAuditExporter(rdb, sink).Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantOnce([]string{kept}), sink.got); diff != "" {
		t.Errorf("Drain exported (-want +got):\n%s", diff)
	}
	if st.Erased != len(erasedIDs) || st.Expired != 1 || st.Delivered != 1 {
		t.Errorf("Drain stats = %+v, want %d erased, 1 expired, 1 delivered", st, len(erasedIDs))
	}
}

// auditStore starts a redis-server and returns a store on it and a plain client.
func auditStore(t *testing.T) (*featurestore.Redis, *redis.Client) {
	t.Helper()
	addr := redistest.Start(t)
	client, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	store := featurestore.NewRedis(client)
	t.Cleanup(func() { store.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return store, rdb
}

// commitSuppress commits a SUPPRESS of an overdue invoice for cust and returns its decision id.
func commitSuppress(t *testing.T, store *featurestore.Redis, cust, event string, now time.Time) string {
	t.Helper()
	id := featurestore.NewDecisionID(cust, now)
	rec, err := proto.Marshal(&arbiterv1.DecisionRecord{DecisionId: id, CustomerId: cust})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Commit(t.Context(), &featurestore.Commit{CustomerID: cust, EventID: event, DecisionID: id, Now: now, Record: rec,
		Summary: decision.DecisionSummary{DecisionID: id, EventID: event, EventType: decision.EventInvoiceOverdue,
			Action: decision.ActionSuppress, DecidedAt: now}}); err != nil {
		t.Fatal(err)
	}
	return id
}

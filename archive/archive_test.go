package archive_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
)

// now is the tests' "today": 2026-12-04 10:00 UTC.
var now = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

// clock is a settable clock for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// open opens an Archive on dsn with the clock fixed at now unless opts say otherwise, and
// closes it when the test ends.
func open(t *testing.T, dsn string, opts ...archive.Option) *archive.Archive {
	t.Helper()
	opts = append([]archive.Option{archive.WithClock(func() time.Time { return now })}, opts...)
	a, err := archive.Open(t.Context(), dsn, opts...)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

// rec returns a record of customer cust decided at at, with a body that names it.
func rec(id, cust string, at time.Time) archive.Record {
	return archive.Record{
		DecisionID: id, CustomerID: cust, EventID: "ev-" + id, EventType: "invoice_overdue",
		Action: "message", Reasons: []string{"ELIGIBLE", "CAP_OK"},
		PolicyID: "collections", PolicyVersion: "v1", PolicyDigest: "sha256:00",
		DecidedAt: at, Body: []byte("record " + id),
	}
}

// ids returns the decision ids of recs, in order.
func ids(recs []archive.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.DecisionID
	}
	return out
}

// scanAll returns the ids of every decision archived in [from, to), in Scan's order.
func scanAll(t *testing.T, a *archive.Archive, from, to time.Time) []string {
	t.Helper()
	var got []string
	if err := a.Scan(t.Context(), from, to, func(r archive.Record) error {
		got = append(got, r.DecisionID)
		return nil
	}); err != nil {
		t.Fatalf("Scan(%v, %v) = %v", from, to, err)
	}
	return got
}

// archiveConn connects to dsn directly, to look at the tables; the connection is closed when
// the test ends.
func archiveConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// query runs sql on dsn and returns its single-column rows.
func query[T any](t *testing.T, dsn, sql string, args ...any) []T {
	t.Helper()
	rows, _ := archiveConn(t, dsn).Query(t.Context(), sql, args...)
	out, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestOpenMigratesOnce(t *testing.T) {
	dsn := archivetest.NewDB(t)
	for range 2 {
		a := open(t, dsn)
		a.Close()
	}
	got := query[int32](t, dsn, "SELECT version FROM arbiter.schema_migrations ORDER BY version")
	if diff := cmp.Diff([]int32{1, 2, 3}, got); diff != "" {
		t.Errorf("schema_migrations after two Opens (-want +got):\n%s", diff)
	}
}

// Every query on decisions names its days, so a plan pruned to them is always the cheaper one.
func TestOpenPlansEachExecution(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	var mode string
	if err := archive.QueryRowForTest(a, t.Context(), "SHOW plan_cache_mode").Scan(&mode); err != nil {
		t.Fatalf("SHOW plan_cache_mode = %v", err)
	}
	if mode != "force_custom_plan" {
		t.Errorf("plan_cache_mode of the archive's connections = %q, want force_custom_plan", mode)
	}
}

func TestOpenConcurrent(t *testing.T) {
	dsn := archivetest.NewDB(t)
	const replicas = 4
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			a, err := archive.Open(t.Context(), dsn, archive.WithClock(func() time.Time { return now }))
			if err == nil {
				// Each replica appends the same decision: one copy is archived.
				_, err = a.Append(t.Context(), []archive.Record{rec("d1", "c1", now)})
				a.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open or Append = %v", i, err)
		}
	}
	if got := query[int32](t, dsn, "SELECT version FROM arbiter.schema_migrations ORDER BY version"); !slices.Equal(got, []int32{1, 2, 3}) {
		t.Errorf("schema_migrations after %d concurrent Opens = %v, want each version once", replicas, got)
	}
	if got := query[int64](t, dsn, "SELECT count(*) FROM arbiter.decisions"); got[0] != 1 {
		t.Errorf("decisions after %d replicas appended one = %d, want 1", replicas, got[0])
	}
}

func TestAppendIdempotent(t *testing.T) {
	r := func(id string) archive.Record { return rec(id, "c1", now) }
	tests := []struct {
		name    string
		batches [][]archive.Record
		want    []int    // Append's inserted count per batch
		wantIDs []string // archived, in Scan's order
	}{
		{
			name:    "same batch twice",
			batches: [][]archive.Record{{r("a"), r("b"), r("c")}, {r("a"), r("b"), r("c")}},
			want:    []int{3, 0},
			wantIDs: []string{"a", "b", "c"},
		},
		{
			name:    "overlapping batches",
			batches: [][]archive.Record{{r("a"), r("b")}, {r("b"), r("c")}, {r("c"), r("a"), r("d")}},
			want:    []int{2, 1, 1},
			wantIDs: []string{"a", "b", "c", "d"},
		},
		{
			name:    "an id twice in one batch",
			batches: [][]archive.Record{{r("a"), r("a"), r("b")}},
			want:    []int{2},
			wantIDs: []string{"a", "b"},
		},
		{
			name:    "empty batch",
			batches: [][]archive.Record{{}, nil},
			want:    []int{0, 0},
		},
		{
			name: "an id again at another time",
			batches: [][]archive.Record{
				{rec("a", "c1", now)},
				{rec("a", "c1", now.Add(48*time.Hour))},
			},
			want:    []int{1, 0},
			wantIDs: []string{"a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := open(t, archivetest.NewDB(t))
			var got []int
			for i, b := range tt.batches {
				n, err := a.Append(t.Context(), b)
				if err != nil {
					t.Fatalf("Append(batch %d) = %v", i, err)
				}
				got = append(got, n)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Append() inserted counts (-want +got):\n%s", diff)
			}
			gotIDs := scanAll(t, a, now.Add(-24*time.Hour), now.Add(72*time.Hour))
			if diff := cmp.Diff(tt.wantIDs, gotIDs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("archived ids (-want +got):\n%s", diff)
			}
		})
	}
}

// A batch re-sent by a second relay while the first is still writing it: the second waits
// for the first's transaction and inserts nothing it inserted.
func TestAppendConcurrentOverlap(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	var batch []archive.Record
	for i := range 500 {
		batch = append(batch, rec(fmt.Sprintf("d%04d", i), fmt.Sprintf("c%d", i%7), now.Add(time.Duration(i)*time.Second)))
	}
	const relays = 4
	counts := make([]int, relays)
	errs := make([]error, relays)
	var wg sync.WaitGroup
	for i := range relays {
		wg.Go(func() {
			// Each relay sends an overlapping window of the batch.
			counts[i], errs[i] = a.Append(t.Context(), batch[i*100:i*100+200])
		})
	}
	wg.Wait()
	total := 0
	for i := range relays {
		if errs[i] != nil {
			t.Fatalf("relay %d: Append() = %v", i, errs[i])
		}
		total += counts[i]
	}
	if total != 500 {
		t.Errorf("inserted by %d overlapping concurrent Appends = %d (%v), want 500", relays, total, counts)
	}
	if diff := cmp.Diff(ids(batch), scanAll(t, a, now, now.Add(time.Hour))); diff != "" {
		t.Errorf("archived ids (-want +got):\n%s", diff)
	}
}

func TestGet(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	want := archive.Record{
		DecisionID: "3f-01938a7c", CustomerID: "cust-ü", EventID: "ev-1", EventType: "payment_failed",
		Action: "retry", Reasons: []string{"RETRY_WINDOW", "SOFT_DECLINE"},
		PolicyID: "payments", PolicyVersion: "v7", PolicyDigest: "sha256:ab12",
		// Nanoseconds are not stored: PostgreSQL keeps microseconds.
		DecidedAt: time.Date(2026, 12, 4, 23, 59, 59, 999_999_999, time.FixedZone("CET", 3600)),
		Degraded:  true, Body: []byte{0, 1, 2, 0xff},
	}
	if _, err := a.Append(t.Context(), []archive.Record{want, rec("other", "cust-1", now)}); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	got, err := a.Get(t.Context(), want.DecisionID)
	if err != nil {
		t.Fatalf("Get(%q) = %v", want.DecisionID, err)
	}
	want.DecidedAt = want.DecidedAt.Truncate(time.Microsecond).UTC()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get(%q) (-want +got):\n%s", want.DecisionID, diff)
	}

	// Empty reasons and body come back empty, not nil-versus-empty surprises.
	bare := archive.Record{DecisionID: "bare", DecidedAt: now}
	if _, err := a.Append(t.Context(), []archive.Record{bare}); err != nil {
		t.Fatalf("Append(bare) = %v", err)
	}
	got, err = a.Get(t.Context(), "bare")
	if err != nil {
		t.Fatalf("Get(bare) = %v", err)
	}
	if diff := cmp.Diff(bare, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Get(bare) (-want +got):\n%s", diff)
	}
}

func TestGetNotFound(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	if _, err := a.Append(t.Context(), []archive.Record{rec("d1", "c1", now)}); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	for _, id := range []string{"d2", "", "D1"} {
		if _, err := a.Get(t.Context(), id); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound", id, err)
		}
	}
}

func TestScan(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	// 2,500 decisions over five days, appended out of order: more than two of Scan's pages.
	var all []archive.Record
	for i := range 2500 {
		at := now.Add(time.Duration(i) * 3 * time.Minute)
		all = append(all, rec(fmt.Sprintf("d%04d", i), "c1", at))
	}
	// Two decisions at the same instant are ordered by id.
	all = append(all, rec("d0500b", "c1", all[500].DecidedAt))
	shuffled := slices.Clone(all)
	slices.Reverse(shuffled)
	for b := range slices.Chunk(shuffled, 700) {
		if _, err := a.Append(t.Context(), b); err != nil {
			t.Fatalf("Append() = %v", err)
		}
	}
	slices.SortFunc(all, func(x, y archive.Record) int {
		if c := x.DecidedAt.Compare(y.DecidedAt); c != 0 {
			return c
		}
		return strings.Compare(x.DecisionID, y.DecisionID)
	})
	between := func(from, to time.Time) []string {
		var out []string
		for _, r := range all {
			if !r.DecidedAt.Before(from) && r.DecidedAt.Before(to) {
				out = append(out, r.DecisionID)
			}
		}
		return out
	}
	tests := []struct {
		name     string
		from, to time.Time
	}{
		{"everything", now.Add(-time.Hour), now.Add(10 * 24 * time.Hour)},
		{"from is inclusive, to exclusive", all[10].DecidedAt, all[1700].DecidedAt},
		{"one day", time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)},
		{"exactly one page", all[0].DecidedAt, all[1000].DecidedAt},
		{"nothing", now.Add(-48 * time.Hour), now.Add(-24 * time.Hour)},
		{"to before from", now.Add(time.Hour), now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanAll(t, a, tt.from, tt.to)
			if diff := cmp.Diff(between(tt.from, tt.to), got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Scan(%v, %v) ids (-want +got):\n%s", tt.from, tt.to, diff)
			}
		})
	}

	t.Run("fn's error stops the scan", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := a.Scan(t.Context(), now, now.Add(10*24*time.Hour), func(archive.Record) error {
			calls++
			if calls == 3 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 3 {
			t.Errorf("Scan() with fn failing at the third record = %v after %d calls, want stop after 3", err, calls)
		}
	})
}

func TestCustomerHistory(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	recs := []archive.Record{
		rec("a1", "alice", now.Add(-40*24*time.Hour)),
		rec("a2", "alice", now.Add(-2*time.Hour)),
		rec("b1", "bob", now.Add(-time.Hour)),
		rec("a3", "alice", now.Add(-3*time.Hour)),
		rec("a4", "alice", now.Add(26*time.Hour)),
	}
	if _, err := a.Append(t.Context(), recs); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	tests := []struct {
		customer string
		since    time.Time
		want     []string
	}{
		{"alice", now.Add(-30 * 24 * time.Hour), []string{"a3", "a2", "a4"}},
		{"alice", now.Add(-2 * time.Hour), []string{"a2", "a4"}},
		{"alice", now.Add(-60 * 24 * time.Hour), []string{"a1", "a3", "a2", "a4"}},
		{"bob", now.Add(-30 * 24 * time.Hour), []string{"b1"}},
		{"carol", now.Add(-30 * 24 * time.Hour), nil},
	}
	for _, tt := range tests {
		got, err := a.CustomerHistory(t.Context(), tt.customer, tt.since)
		if err != nil {
			t.Fatalf("CustomerHistory(%q, %v) = %v", tt.customer, tt.since, err)
		}
		if diff := cmp.Diff(tt.want, ids(got), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("CustomerHistory(%q, %v) ids (-want +got):\n%s", tt.customer, tt.since, diff)
		}
	}
}

func TestPartitions(t *testing.T) {
	dsn := archivetest.NewDB(t)
	c := &clock{t: now}
	a := open(t, dsn, archive.WithClock(c.Now), archive.WithPartitionsAhead(2))
	partitions := func() []string {
		t.Helper()
		got, err := a.Partitions(t.Context())
		if err != nil {
			t.Fatalf("Partitions() = %v", err)
		}
		return got
	}
	// Open prepares today and two days ahead.
	want := []string{"decisions_20261204", "decisions_20261205", "decisions_20261206"}
	if diff := cmp.Diff(want, partitions()); diff != "" {
		t.Errorf("Partitions() after Open (-want +got):\n%s", diff)
	}

	// Append creates the days its records need, past and future.
	batch := []archive.Record{
		rec("old", "c1", time.Date(2026, 11, 30, 23, 59, 59, 999_999_000, time.UTC)),
		rec("late", "c1", time.Date(2026, 12, 9, 0, 0, 0, 0, time.UTC)),
		rec("today", "c1", now),
	}
	if n, err := a.Append(t.Context(), batch); n != 3 || err != nil {
		t.Fatalf("Append() = %d, %v, want 3, nil", n, err)
	}
	want = []string{"decisions_20261130", "decisions_20261204", "decisions_20261205", "decisions_20261206", "decisions_20261209"}
	if diff := cmp.Diff(want, partitions()); diff != "" {
		t.Errorf("Partitions() after Append (-want +got):\n%s", diff)
	}
	// Each record is in its own day's partition.
	for _, tt := range []struct{ table, id string }{
		{"decisions_20261130", "old"}, {"decisions_20261209", "late"}, {"decisions_20261204", "today"},
	} {
		got := query[string](t, dsn, "SELECT decision_id FROM arbiter."+tt.table)
		if diff := cmp.Diff([]string{tt.id}, got); diff != "" {
			t.Errorf("rows of %s (-want +got):\n%s", tt.table, diff)
		}
	}

	// A day later, EnsurePartitions adds the new last day.
	c.Set(now.Add(24 * time.Hour))
	if err := a.EnsurePartitions(t.Context()); err != nil {
		t.Fatalf("EnsurePartitions() = %v", err)
	}
	if got := partitions(); !slices.Contains(got, "decisions_20261207") {
		t.Errorf("Partitions() after EnsurePartitions a day later = %v, want decisions_20261207 among them", got)
	}
}

func TestDropExpired(t *testing.T) {
	dsn := archivetest.NewDB(t)
	days := func(n int) time.Time { return now.Add(time.Duration(n) * 24 * time.Hour) }
	// The records are appended while none is past the retention, 40 days ago.
	c := &clock{t: days(-40)}
	a := open(t, dsn, archive.WithClock(c.Now), archive.WithRetention(30*24*time.Hour), archive.WithPartitionsAhead(0))
	recs := []archive.Record{
		rec("d-40", "c1", days(-40)),
		rec("d-31", "c1", days(-31)),
		rec("d-30", "c1", days(-30)), // 2026-11-04 10:00: its day is not entirely past the retention
		rec("d-1", "c1", days(-1)),
		rec("d0", "c1", now),
	}
	if _, err := a.Append(t.Context(), recs); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	outcomes := []archive.Outcome{
		{DecisionID: "d-40", Outcome: "delivered", OccurredAt: days(-40), RecordedAt: days(-40)},
		{DecisionID: "d-30", Outcome: "delivered", OccurredAt: days(-30), RecordedAt: days(-30)},
	}
	if _, err := a.AppendOutcomes(t.Context(), outcomes); err != nil {
		t.Fatalf("AppendOutcomes() = %v", err)
	}
	c.Set(now)

	dropped, err := a.DropExpired(t.Context())
	if err != nil {
		t.Fatalf("DropExpired() = %v", err)
	}
	if diff := cmp.Diff([]string{"decisions_20261025", "decisions_20261103"}, dropped); diff != "" {
		t.Errorf("DropExpired() dropped (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		id   string
		kept bool
	}{{"d-40", false}, {"d-31", false}, {"d-30", true}, {"d-1", true}, {"d0", true}} {
		_, err := a.Get(t.Context(), tt.id)
		if tt.kept && err != nil || !tt.kept && !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Get(%q) after DropExpired = %v, want kept %v", tt.id, err, tt.kept)
		}
	}
	gotIDs := query[string](t, dsn, "SELECT decision_id FROM arbiter.decision_ids ORDER BY decided_at")
	if diff := cmp.Diff([]string{"d-30", "d-1", "d0"}, gotIDs); diff != "" {
		t.Errorf("decision_ids after DropExpired (-want +got):\n%s", diff)
	}
	gotOutcomes := query[string](t, dsn, "SELECT decision_id FROM arbiter.outcomes")
	if diff := cmp.Diff([]string{"d-30"}, gotOutcomes); diff != "" {
		t.Errorf("outcomes after DropExpired (-want +got):\n%s", diff)
	}

	// A record past the retention is not archived again, and a second run drops nothing.
	if n, err := a.Append(t.Context(), recs[:1]); n != 0 || err != nil {
		t.Errorf("Append(expired record) = %d, %v, want 0, nil", n, err)
	}
	if dropped, err := a.DropExpired(t.Context()); len(dropped) != 0 || err != nil {
		t.Errorf("DropExpired() again = %v, %v, want none", dropped, err)
	}

	// A day later, the day of d-30 is entirely past the retention.
	c.Set(days(1))
	dropped, err = a.DropExpired(t.Context())
	if err != nil {
		t.Fatalf("DropExpired() a day later = %v", err)
	}
	if diff := cmp.Diff([]string{"decisions_20261104"}, dropped); diff != "" {
		t.Errorf("DropExpired() a day later dropped (-want +got):\n%s", diff)
	}
}

// A replica whose clock or retention differs drops a day that another replica still writes:
// the writer's next Append creates the partition again instead of failing.
func TestAppendAfterPartitionDroppedElsewhere(t *testing.T) {
	dsn := archivetest.NewDB(t)
	writer := open(t, dsn)
	day := now.Add(-3 * 24 * time.Hour)
	if _, err := writer.Append(t.Context(), []archive.Record{rec("a", "c1", day)}); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	dropper := open(t, dsn, archive.WithRetention(24*time.Hour))
	if dropped, err := dropper.DropExpired(t.Context()); err != nil || !slices.Contains(dropped, "decisions_20261201") {
		t.Fatalf("DropExpired() = %v, %v, want decisions_20261201 dropped", dropped, err)
	}
	if n, err := writer.Append(t.Context(), []archive.Record{rec("b", "c1", day)}); n != 1 || err != nil {
		t.Errorf("Append() to a day dropped by another replica = %d, %v, want 1, nil", n, err)
	}
}

func TestAppendInvalid(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	valid := rec("ok", "c1", now)
	tests := []struct {
		name string
		edit func(*archive.Record)
	}{
		{"empty decision id", func(r *archive.Record) { r.DecisionID = "" }},
		{"zero decided_at", func(r *archive.Record) { r.DecidedAt = time.Time{} }},
		{"decided_at before 1970", func(r *archive.Record) { r.DecidedAt = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }},
		{"NUL in customer id", func(r *archive.Record) { r.CustomerID = "c\x001" }},
		{"invalid UTF-8 in a reason", func(r *archive.Record) { r.Reasons = []string{"OK", "\xff"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := rec("bad", "c1", now)
			tt.edit(&bad)
			n, err := a.Append(t.Context(), []archive.Record{valid, bad})
			if n != 0 || !errors.Is(err, archive.ErrInvalid) {
				t.Errorf("Append(valid, bad) = %d, %v, want 0, ErrInvalid", n, err)
			}
		})
	}
	// Nothing of the refused batches was written.
	if _, err := a.Get(t.Context(), "ok"); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("Get(ok) after refused batches = %v, want ErrNotFound", err)
	}
}

func TestOutcomes(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	at := func(m int) time.Time { return now.Add(time.Duration(m) * time.Minute) }
	first := []archive.Outcome{
		{DecisionID: "d1", Outcome: "delivered", OccurredAt: at(1), RecordedAt: at(2), Body: []byte("o1")},
		{DecisionID: "d1", Outcome: "opened", OccurredAt: at(5), RecordedAt: at(6)},
		{DecisionID: "d2", Outcome: "delivered", OccurredAt: at(1), RecordedAt: at(3)},
	}
	again := []archive.Outcome{
		first[1],
		{DecisionID: "d1", Outcome: "delivered", OccurredAt: at(9), RecordedAt: at(9)}, // a duplicate report
		{DecisionID: "d1", Outcome: "paid", OccurredAt: at(7), RecordedAt: at(8)},
	}
	for _, step := range []struct {
		batch []archive.Outcome
		want  int
	}{{first, 3}, {first, 0}, {again, 1}} {
		if n, err := a.AppendOutcomes(t.Context(), step.batch); n != step.want || err != nil {
			t.Errorf("AppendOutcomes() = %d, %v, want %d, nil", n, err, step.want)
		}
	}
	got, err := a.Outcomes(t.Context(), "d1")
	if err != nil {
		t.Fatalf("Outcomes(d1) = %v", err)
	}
	want := []archive.Outcome{first[0], first[1], again[2]}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Outcomes(d1) (-want +got):\n%s", diff)
	}
	if got, err := a.Outcomes(t.Context(), "none"); len(got) != 0 || err != nil {
		t.Errorf("Outcomes(none) = %v, %v, want none", got, err)
	}
	if _, err := a.AppendOutcomes(t.Context(), []archive.Outcome{{DecisionID: "d1", Outcome: "x"}}); !errors.Is(err, archive.ErrInvalid) {
		t.Errorf("AppendOutcomes(without times) = %v, want ErrInvalid", err)
	}
}

func TestPolicyChanges(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	publish := archive.PolicyChange{ChangeID: "1-0", Kind: "publish", Version: "v2", Actor: "alice", At: now,
		Detail: []byte(`{"comment": "raise the cap", "to": "v2"}`)}
	activate := archive.PolicyChange{ChangeID: "2-0", Kind: "activate", Version: "v2", Actor: "bob", At: now.Add(time.Minute)}
	for _, step := range []struct {
		c    archive.PolicyChange
		want bool
	}{{publish, true}, {publish, false}, {activate, true}} {
		if got, err := a.AppendPolicyChange(t.Context(), step.c); got != step.want || err != nil {
			t.Errorf("AppendPolicyChange(%s) = %v, %v, want %v, nil", step.c.ChangeID, got, err, step.want)
		}
	}
	got, err := a.PolicyChanges(t.Context(), now)
	if err != nil {
		t.Fatalf("PolicyChanges() = %v", err)
	}
	// jsonb keeps the value, not the spelling; an empty detail is {}.
	publish.Detail = []byte(`{"to": "v2", "comment": "raise the cap"}`)
	activate.Detail = []byte(`{}`)
	if diff := cmp.Diff([]archive.PolicyChange{publish, activate}, got); diff != "" {
		t.Errorf("PolicyChanges() (-want +got):\n%s", diff)
	}
	bad := archive.PolicyChange{ChangeID: "3-0", Kind: "publish", At: now, Detail: []byte("{")}
	if _, err := a.AppendPolicyChange(t.Context(), bad); !errors.Is(err, archive.ErrInvalid) {
		t.Errorf("AppendPolicyChange(detail not JSON) = %v, want ErrInvalid", err)
	}
}

func TestUnavailable(t *testing.T) {
	t.Run("no server", func(t *testing.T) {
		// Port 1 on loopback refuses connections.
		_, err := archive.Open(t.Context(), "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
		if !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("Open(closed port) = %v, want ErrUnavailable", err)
		}
	})
	t.Run("closed archive", func(t *testing.T) {
		a := open(t, archivetest.NewDB(t))
		a.Close()
		if _, err := a.Append(t.Context(), []archive.Record{rec("d1", "c1", now)}); !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("Append() after Close = %v, want ErrUnavailable", err)
		}
		if _, err := a.Get(t.Context(), "d1"); !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("Get() after Close = %v, want ErrUnavailable", err)
		}
		if err := a.Ping(t.Context()); !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("Ping() after Close = %v, want ErrUnavailable", err)
		}
	})
	t.Run("deadline passed", func(t *testing.T) {
		a := open(t, archivetest.NewDB(t))
		ctx, cancel := context.WithTimeout(t.Context(), -time.Second)
		defer cancel()
		if _, err := a.Append(ctx, []archive.Record{rec("d1", "c1", now)}); !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("Append() past its deadline = %v, want ErrUnavailable", err)
		}
		if _, err := a.Get(t.Context(), "d1"); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Get() of the record whose Append timed out = %v, want ErrNotFound", err)
		}
	})
	t.Run("bad dsn", func(t *testing.T) {
		if _, err := archive.Open(t.Context(), "postgres://[::1"); !errors.Is(err, archive.ErrInvalid) {
			t.Errorf("Open(bad dsn) = %v, want ErrInvalid", err)
		}
	})
}

package archive

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// day is the span of one partition.
	day = 24 * time.Hour
	// partitionPrefix and partitionLayout name a day's partition: decisions_YYYYMMDD.
	partitionPrefix = "decisions_"
	partitionLayout = "20060102"
	// lockTimeout bounds how long creating or dropping a partition waits for its exclusive
	// lock on arbiter.decisions. Appends and reads queue behind a waiting DDL statement, so
	// the wait must stay short; what timed out is retried by the next call.
	lockTimeout = "2s"
	// deleteBatch is how many rows of decision_ids or outcomes one DELETE removes, so that
	// retention never holds a long transaction.
	deleteBatch = 10000
)

// dayOf returns the number of the UTC day that holds t, counted from 1970-01-01.
func dayOf(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return (s+1)/int64(day/time.Second) - 1
	}
	return s / int64(day/time.Second)
}

// dayStart returns the start (00:00 UTC) of day number d.
func dayStart(d int64) time.Time {
	return time.Unix(d*int64(day/time.Second), 0).UTC()
}

// partitionName returns the name, without schema, of the partition of day d.
func partitionName(d int64) string {
	return partitionPrefix + dayStart(d).Format(partitionLayout)
}

// EnsurePartitions creates the decisions partitions of today (UTC, by the archive's clock)
// and of the next days set by WithPartitionsAhead, where missing. Open calls it; call it
// again at least daily (the relay's loop, say) so that a day's first Append finds its
// partition ready. Append creates any partition its records need as well, so a missed call
// costs latency, not data. Creating a partition locks arbiter.decisions exclusively for a
// moment; it waits at most two seconds for that lock (a long query on decisions holds it
// off), then fails with ErrUnavailable, and the next call tries again.
func (a *Archive) EnsurePartitions(ctx context.Context) error {
	if err := a.usable("ensure partitions"); err != nil {
		return err
	}
	today := dayOf(a.clock())
	days := make([]int64, 0, a.ahead+1)
	for d := today; d <= today+int64(a.ahead); d++ {
		days = append(days, d)
	}
	return a.ensureDays(ctx, days)
}

// ensureDays creates the partitions of days that this Archive has not seen exist, in one
// transaction under partitionLock.
func (a *Archive) ensureDays(ctx context.Context, days []int64) error {
	a.mu.Lock()
	missing := slices.DeleteFunc(slices.Clone(days), func(d int64) bool {
		_, ok := a.parts[d]
		return ok
	})
	a.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return dbErr("create partitions", err)
	}
	defer rollback(ctx, tx)
	// Two sessions running CREATE TABLE IF NOT EXISTS for one name at once can fail with a
	// unique violation in the catalog; the lock makes them take turns.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLock); err != nil {
		return dbErr("create partitions: lock", err)
	}
	existing, err := partitions(ctx, tx)
	if err != nil {
		return err
	}
	// CREATE TABLE ... PARTITION OF locks arbiter.decisions exclusively: bound the wait, as
	// for a drop.
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+lockTimeout+"'"); err != nil {
		return dbErr("create partitions", err)
	}
	var created []string
	for _, d := range missing {
		if slices.Contains(existing, d) {
			continue
		}
		name := partitionName(d)
		ddl := fmt.Sprintf("CREATE TABLE arbiter.%s PARTITION OF arbiter.decisions FOR VALUES FROM ('%s') TO ('%s')",
			name, dayStart(d).Format(time.RFC3339), dayStart(d+1).Format(time.RFC3339))
		if _, err := tx.Exec(ctx, ddl); err != nil {
			return dbErr("create partition "+name, err)
		}
		created = append(created, name)
	}
	if err := tx.Commit(ctx); err != nil {
		return dbErr("create partitions: commit", err)
	}
	a.mu.Lock()
	for _, d := range missing {
		a.parts[d] = struct{}{}
	}
	a.mu.Unlock()
	if len(created) > 0 {
		a.logger.LogAttrs(ctx, slog.LevelInfo, "archive partitions created", slog.Any("partitions", created))
	}
	return nil
}

// forgetDays removes days from the partitions this Archive believes exist, after a write
// found one missing (another replica's DropExpired, or a partition dropped by hand).
func (a *Archive) forgetDays(days []int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range days {
		delete(a.parts, d)
	}
}

// partitions returns the days of the existing decisions partitions, in order. Tables
// attached under other names are not the archive's and are left out.
func partitions(ctx context.Context, q querier) ([]int64, error) {
	rows, _ := q.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'arbiter.decisions'::regclass`)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, dbErr("list partitions", err)
	}
	days := make([]int64, 0, len(names))
	for _, n := range names {
		s, ok := strings.CutPrefix(n, partitionPrefix)
		if !ok {
			continue
		}
		t, err := time.Parse(partitionLayout, s)
		if err != nil {
			continue
		}
		days = append(days, dayOf(t))
	}
	slices.Sort(days)
	return days, nil
}

// Partitions returns the names of the decisions partitions (decisions_YYYYMMDD, schema
// arbiter), oldest first.
func (a *Archive) Partitions(ctx context.Context) ([]string, error) {
	if err := a.usable("list partitions"); err != nil {
		return nil, err
	}
	days, err := partitions(ctx, a.pool)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(days))
	for i, d := range days {
		names[i] = partitionName(d)
	}
	return names, nil
}

// DropExpired drops the decisions partitions of the days that lie entirely before now minus
// the retention, each with DROP TABLE (rows are never deleted one by one), then deletes the
// decision_ids rows of those days and the outcomes recorded before them, in batches of
// 10,000 rows. It returns the names of the partitions it dropped, oldest first.
//
// It is safe to run on several replicas at once and to interrupt: whatever one run left
// undone, the next does. Each drop waits at most two seconds for its lock, since Appends
// queue behind a waiting drop; a drop that times out fails with ErrUnavailable, after the
// partitions dropped before it, and the next run tries again.
func (a *Archive) DropExpired(ctx context.Context) ([]string, error) {
	if err := a.usable("drop expired"); err != nil {
		return nil, err
	}
	keepFrom := dayOf(a.clock().Add(-a.retention)) // the oldest day kept
	days, err := partitions(ctx, a.pool)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, d := range days {
		if d >= keepFrom {
			break
		}
		name := partitionName(d)
		ok, err := a.dropPartition(ctx, name)
		if err != nil {
			return dropped, err
		}
		a.forgetDays([]int64{d})
		if ok {
			dropped = append(dropped, name)
			a.logger.LogAttrs(ctx, slog.LevelInfo, "archive partition dropped", slog.String("partition", name))
		}
	}
	before := dayStart(keepFrom)
	if err := a.deleteBefore(ctx, "decision_ids", "decision_id", "decided_at", before); err != nil {
		return dropped, err
	}
	if err := a.deleteBefore(ctx, "outcomes", "ctid", "recorded_at", before); err != nil {
		return dropped, err
	}
	return dropped, nil
}

// dropPartition drops the partition name under partitionLock, reporting false when another
// run dropped it first.
func (a *Archive) dropPartition(ctx context.Context, name string) (bool, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return false, dbErr("drop partition "+name, err)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLock); err != nil {
		return false, dbErr("drop partition "+name+": lock", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", "arbiter."+name).Scan(&exists); err != nil {
		return false, dbErr("drop partition "+name, err)
	}
	if !exists {
		return false, nil
	}
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+lockTimeout+"'"); err != nil {
		return false, dbErr("drop partition "+name, err)
	}
	if _, err := tx.Exec(ctx, "DROP TABLE arbiter."+name); err != nil {
		return false, dbErr("drop partition "+name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, dbErr("drop partition "+name+": commit", err)
	}
	return true, nil
}

// deleteBefore deletes the rows of arbiter.table whose column col is before t, deleteBatch
// rows per statement (each its own transaction), picking rows by key.
func (a *Archive) deleteBefore(ctx context.Context, table, key, col string, t time.Time) error {
	sql := fmt.Sprintf(`DELETE FROM arbiter.%[1]s WHERE %[2]s IN (
    SELECT %[2]s FROM arbiter.%[1]s WHERE %[3]s < $1 LIMIT %[4]d)`, table, key, col, deleteBatch)
	for {
		tag, err := a.pool.Exec(ctx, sql, t)
		if err != nil {
			return dbErr("delete expired "+table, err)
		}
		if tag.RowsAffected() < deleteBatch {
			return nil
		}
	}
}

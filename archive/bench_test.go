package archive_test

import (
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
)

// BenchmarkAppend appends batches of 500 new decisions with 1.5 KB bodies (the median
// encoded DecisionRecord), as the relay does, into a local PostgreSQL: one relay, and four
// relays (buckets) appending at once. It reports decisions/s and the archive's size per
// decision: the decisions partitions with their TOAST and indexes, plus decision_ids and its
// indexes (pg_total_relation_size over every row written). Bodies are random bytes, which
// PostgreSQL cannot compress: real records compress somewhat, so the size is an upper bound.
//
// The figures and the machine they were measured on are in docs/operations.md, "The decision
// archive (PostgreSQL)".
func BenchmarkAppend(b *testing.B) {
	for _, relays := range []int{1, 4} {
		b.Run(fmt.Sprintf("relays=%d", relays), func(b *testing.B) { benchmarkAppend(b, relays) })
	}
}

func benchmarkAppend(b *testing.B, relays int) {
	const (
		batchSize = 500
		bodySize  = 1536
	)
	dsn := archivetest.NewDB(b)
	a, err := archive.Open(b.Context(), dsn)
	if err != nil {
		b.Fatalf("Open() = %v", err)
	}
	defer a.Close()
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = make([]byte, bodySize)
		_, _ = rand.Read(bodies[i])
	}
	// Decisions of the last hour, one a millisecond, so the batches fill today's partition.
	start := time.Now().UTC().Add(-time.Hour)
	batch := func(k int) []archive.Record {
		recs := make([]archive.Record, batchSize)
		for i := range recs {
			n := k*batchSize + i
			recs[i] = archive.Record{
				DecisionID:    fmt.Sprintf("%02x-%016x", n%256, n),
				CustomerID:    fmt.Sprintf("cust-%d", n%100_000),
				EventID:       fmt.Sprintf("evt-%d", n),
				EventType:     "payment_failed",
				Action:        "retry",
				Reasons:       []string{"SOFT_DECLINE", "RETRY_WINDOW_OPEN"},
				PolicyID:      "payments",
				PolicyVersion: "2026-12-01.3",
				PolicyDigest:  "sha256:5f1e0c9a3b7d2e4f6a8c0b1d3e5f7a9c",
				DecidedAt:     start.Add(time.Duration(n) * time.Millisecond),
				Body:          bodies[n%len(bodies)],
			}
		}
		return recs
	}

	// b.N batches shared by the relays (b.Loop cannot be shared between goroutines).
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range relays {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= b.N {
					return
				}
				if got, err := a.Append(b.Context(), batch(k)); err != nil || got != batchSize {
					b.Errorf("Append() = %d, %v, want %d, nil", got, err, batchSize)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "decisions/s")

	var size int64
	q := `SELECT (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
    WHERE inhparent = 'arbiter.decisions'::regclass) + pg_total_relation_size('arbiter.decision_ids')`
	if err := archiveConn(b, dsn).QueryRow(b.Context(), q).Scan(&size); err != nil {
		b.Fatalf("size query: %v", err)
	}
	b.ReportMetric(float64(size)/float64(b.N*batchSize), "bytes/decision")
}

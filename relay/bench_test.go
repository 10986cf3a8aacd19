package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// BenchmarkRelay measures the relay end to end, as serve runs it: b.N decisions with 1.5 KB
// records are committed to a local Redis first, then one drain of the outbox (read the
// streams, fetch the records, append to a local PostgreSQL, acknowledge, drop the records) is
// timed. The target of issue 17 is 20,000 decisions/s.
func BenchmarkRelay(b *testing.B) {
	ctx := b.Context()
	addr := redistest.Start(b)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	store := featurestore.NewRedis(client)
	a, err := archive.Open(ctx, archivetest.NewDB(b))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	now := time.Now()
	for i := range b.N {
		cust := fmt.Sprintf("bench-cust-%d", i%1000)
		ev := fmt.Sprintf("bench-ev-%d", i)
		id := featurestore.NewDecisionID(cust, now)
		body, _ := proto.Marshal(&arbiterv1.DecisionRecord{
			DecisionId: id, EventId: ev, CustomerId: cust, EventType: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE,
			Request:  &arbiterv1.DecideRequest{Event: &arbiterv1.Event{Id: ev, Attributes: map[string]string{"note": strings.Repeat("x", 1400)}}},
			Response: &arbiterv1.DecideResponse{DecisionId: id, Action: arbiterv1.Action_ACTION_SUPPRESS, DecidedAt: timestamppb.New(now)},
		})
		if _, err := store.Commit(ctx, &featurestore.Commit{CustomerID: cust, EventID: ev, DecisionID: id, Now: now, Record: body,
			Summary: decision.DecisionSummary{DecisionID: id, EventID: ev, EventType: decision.EventInvoiceOverdue,
				Action: decision.ActionSuppress, DecidedAt: now}}); err != nil {
			b.Fatal(err)
		}
	}
	exp := store.AuditExporter(NewSink(a), featurestore.WithAuditGroup(Group), featurestore.WithAuditDropRecords())
	b.ResetTimer()
	start := time.Now()
	st, err := exp.Drain(ctx)
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil || st.Delivered != b.N {
		b.Fatalf("Drain() = %+v, %v; want %d delivered", st, err, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
}

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

// TestRedisMemoryPerDecision measures what Redis keeps of each decision once the relay has
// archived it (the target: at most 400 bytes within the replay window, nothing after):
// the sum of MEMORY USAGE over every key a decision leaves (event id, record, outcomes) and the
// audit streams, divided by the decisions, with realistic 1.5 KB records. Per-customer state
// (features, caps, ledgers, the recent list) is the customer's, not the decision's, and is not
// counted.
func TestRedisMemoryPerDecision(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and uses PostgreSQL")
	}
	ctx := t.Context()
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	const window = 3 * time.Second
	store := featurestore.NewRedis(client, featurestore.WithRetention(window))
	a, err := archive.Open(ctx, archivetest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	const n = 2000
	now := time.Now()
	for i := range n {
		cust := fmt.Sprintf("mem-cust-%d", i%100)
		ev := fmt.Sprintf("mem-ev-%d", i)
		id := featurestore.NewDecisionID(cust, now)
		body, err := proto.Marshal(&arbiterv1.DecisionRecord{
			DecisionId: id, EventId: ev, CustomerId: cust, EventType: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE,
			Request:  &arbiterv1.DecideRequest{Event: &arbiterv1.Event{Id: ev, Attributes: map[string]string{"note": strings.Repeat("x", 1400)}}},
			Response: &arbiterv1.DecideResponse{DecisionId: id, Action: arbiterv1.Action_ACTION_SUPPRESS, DecidedAt: timestamppb.New(now)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Commit(ctx, &featurestore.Commit{CustomerID: cust, EventID: ev, DecisionID: id, Now: now, Record: body,
			Summary: decision.DecisionSummary{DecisionID: id, EventID: ev, EventType: decision.EventInvoiceOverdue,
				Action: decision.ActionSuppress, DecidedAt: now}}); err != nil {
			t.Fatal(err)
		}
	}
	before := decisionBytes(t, client)
	// The relay's exporter, as serve runs it; its first pass trims what it archived.
	time.Sleep(5 * time.Millisecond)
	exp := store.AuditExporter(NewSink(a), featurestore.WithAuditGroup(Group), featurestore.WithAuditDropRecords(),
		featurestore.WithAuditRetention(time.Millisecond))
	if _, err := exp.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	within := decisionBytes(t, client)
	t.Logf("Redis bytes per decision: %d before the relay, %d within the replay window after it", before/n, within/n)
	if within/n > 400 {
		t.Errorf("Redis keeps %d bytes per archived decision within the replay window, want at most 400", within/n)
	}
	time.Sleep(window + time.Second)
	after := decisionBytes(t, client)
	t.Logf("after the replay window: %d bytes for %d decisions", after, n)
	if after/n > 0 {
		t.Errorf("Redis keeps %d bytes per decision after the replay window, want 0", after/n)
	}
}

// decisionBytes sums MEMORY USAGE of the keys decisions leave in Redis: event ids, records,
// outcomes, and the audit streams' entries (of which only archived ones remain).
func decisionBytes(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	var total int64
	iter := c.Scan(t.Context(), 0, "*", 1000).Iterator()
	for iter.Next(t.Context()) {
		k := iter.Val()
		switch {
		case strings.Contains(k, ":e:"), strings.Contains(k, "}:d:"), strings.Contains(k, "}:o:"):
		case strings.HasSuffix(k, ":audit"):
			// An empty stream (its group kept) is the bucket's, not a decision's.
			if n, _ := c.XLen(t.Context(), k).Result(); n == 0 {
				continue
			}
		default:
			continue
		}
		b, err := c.MemoryUsage(t.Context(), k).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		total += b
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

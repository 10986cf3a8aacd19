package server

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestEventIDReusedForAnotherRequest: an event id is an idempotency key. The same request
// resent replays its decision (with other options too); another request under the same id is
// refused with INVALID_ARGUMENT naming event.id, instead of being answered with the first
// event's decision (issue 18: a fraud flag sent under an invoice's event id was lost).
func TestEventIDReusedForAnotherRequest(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			first := overdue("evt-reused", "cust-reused")
			resp, err := h.dc.Decide(t.Context(), first)
			if err != nil || resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
				t.Fatalf("Decide(overdue) = %v, %v; want a MESSAGE", resp.GetAction(), err)
			}

			// The same event resent, also asking for an explanation: replayed.
			again := proto.CloneOf(first)
			again.Options = &arbiterv1.DecideOptions{Explain: true}
			got, err := h.dc.Decide(t.Context(), again)
			if err != nil || !got.GetReplayed() || got.GetDecisionId() != resp.GetDecisionId() {
				t.Errorf("Decide(same event resent) = %s replayed %v, %v; want %s replayed", got.GetDecisionId(), got.GetReplayed(), err, resp.GetDecisionId())
			}

			// A fraud flag under the same event id: refused, not replayed.
			fraud := proto.CloneOf(first)
			fraud.Event.Type = arbiterv1.EventType_EVENT_TYPE_FRAUD_FLAG_RAISED
			_, err = h.dc.Decide(t.Context(), fraud)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "invalid event.id: already decided for a different request") {
				t.Errorf("Decide(another event under a used id) = %v, want INVALID_ARGUMENT naming event.id", err)
			}
			// A changed amount or attribute is another request too.
			changed := proto.CloneOf(first)
			changed.Event.Attributes = map[string]string{"invoice": "inv-2"}
			if _, err := h.dc.Decide(t.Context(), changed); status.Code(err) != codes.InvalidArgument {
				t.Errorf("Decide(changed attributes under a used id) = %v, want INVALID_ARGUMENT", err)
			}
		})
	}
}

// TestDegradedAnswersShareOneDecision: while the store is down, every answer to one event,
// however often it is resent, is the same degraded decision (one id, one record once the spool
// drains), and it never becomes the event's idempotent answer: resent once the store is back,
// the event is decided anew.
func TestDegradedAnswersShareOneDecision(t *testing.T) {
	c := newClock(testNow)
	store := featurestore.NewMemory(featurestore.WithClock(c.Now))
	t.Cleanup(func() { store.Close() })
	down := &switchStore{Store: store}
	sp := openTestSpool(t)
	h := newHarness(t, down, c, WithAuditSpool(sp))
	req := overdue("evt-degraded-once", "cust-degraded-once")

	down.down.Store(true)
	ids := map[string]int{}
	for range 5 {
		resp, err := h.dc.Decide(t.Context(), req)
		if err != nil || !resp.GetDegraded() {
			t.Fatalf("Decide(store down) = %v, %v; want a degraded answer", resp, err)
		}
		ids[resp.GetDecisionId()]++
	}
	if len(ids) != 1 {
		t.Fatalf("degraded answers to one event have %d decision ids %v, want 1", len(ids), ids)
	}
	var id string
	for k := range ids {
		id = k
	}
	if want := featurestore.DegradedDecisionID(req.GetCustomer().GetId(), req.GetEvent().GetId()); id != want {
		t.Errorf("degraded decision id = %s, want %s (the same on every replica)", id, want)
	}

	down.down.Store(false)
	n, err := sp.Drain(t.Context(), store)
	if err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	if n != 5 {
		t.Errorf("Drain() stored %d spooled records, want the 5 answers' records", n)
	}
	entries := 0
	if err := store.ScanAudit(t.Context(), func(decisionID string, _ []byte) error {
		if decisionID == id {
			entries++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if entries != 1 {
		t.Errorf("audit trail holds %d records of the degraded decision %s, want 1", entries, id)
	}
	resp, err := h.dc.Decide(t.Context(), req)
	if err != nil || resp.GetDegraded() || resp.GetReplayed() || resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
		t.Errorf("Decide(event resent, store back) = %v degraded %v replayed %v, %v; want a new MESSAGE", resp.GetAction(), resp.GetDegraded(), resp.GetReplayed(), err)
	}
}

// switchStore is a Store that is unavailable while down is set (a Redis that is down, without
// waiting for timeouts).
type switchStore struct {
	Store
	down atomic.Bool
}

func (s *switchStore) Load(ctx context.Context, customerID, eventID string, now time.Time) (featurestore.Loaded, error) {
	if s.down.Load() {
		return featurestore.Loaded{}, fmt.Errorf("load: %w (test)", featurestore.ErrUnavailable)
	}
	return s.Store.Load(ctx, customerID, eventID, now)
}

func (s *switchStore) Commit(ctx context.Context, c *featurestore.Commit) (featurestore.Committed, error) {
	if s.down.Load() {
		return featurestore.Committed{}, fmt.Errorf("commit: %w (test)", featurestore.ErrUnavailable)
	}
	return s.Store.Commit(ctx, c)
}

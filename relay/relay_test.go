package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

var decidedAt = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

func encodedRecord(t *testing.T, id, customer string) []byte {
	t.Helper()
	b, err := proto.Marshal(&arbiterv1.DecisionRecord{
		DecisionId: id, EventId: "ev-" + id, CustomerId: customer,
		EventType: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE,
		Policy:    &arbiterv1.PolicyRef{Id: "arbiter-default", Version: "2026.11.1", Digest: "sha256:abc"},
		Response: &arbiterv1.DecideResponse{DecisionId: id, Action: arbiterv1.Action_ACTION_MESSAGE,
			Reasons:   []*arbiterv1.Reason{{Code: "OVERDUE_REMINDER"}, {Code: "QUIET_HOURS"}},
			DecidedAt: timestamppb.New(decidedAt), Degraded: true,
			Experiment: &arbiterv1.ExperimentArm{Id: "exp-1", Arm: "holdout"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRecord(t *testing.T) {
	body := encodedRecord(t, "3f-1", "cust-1")
	got, err := Record("3f-1", body)
	if err != nil {
		t.Fatal(err)
	}
	want := archive.Record{
		DecisionID: "3f-1", CustomerID: "cust-1", EventID: "ev-3f-1", EventType: "EVENT_TYPE_INVOICE_OVERDUE",
		Action: "ACTION_MESSAGE", Reasons: []string{"OVERDUE_REMINDER", "QUIET_HOURS"},
		PolicyID: "arbiter-default", PolicyVersion: "2026.11.1", PolicyDigest: "sha256:abc",
		DecidedAt: decidedAt, Degraded: true, Body: body, ExperimentID: "exp-1", ExperimentArm: "holdout",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Record() mismatch (-want +got):\n%s", diff)
	}
	if _, err := Record("x", []byte{0xff, 0xff}); !errors.Is(err, featurestore.ErrCorrupt) {
		t.Errorf("Record(garbage) = %v, want ErrCorrupt", err)
	}
}

// TestSink writes decisions and outcomes into a real PostgreSQL, twice: each is archived once.
func TestSink(t *testing.T) {
	ctx := t.Context()
	a, err := archive.Open(ctx, archivetest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sink := NewSink(a)
	at := decidedAt.Add(time.Minute)
	entries := []featurestore.AuditEntry{
		{DecisionID: "3f-1", Record: encodedRecord(t, "3f-1", "cust-1")},
		{DecisionID: "3f-2", Record: encodedRecord(t, "3f-2", "cust-2")},
		{DecisionID: "3f-1", Outcome: &featurestore.StoredOutcome{Outcome: decision.OutcomeDelivered, OccurredAt: at, RecordedAt: at}},
	}
	for range 2 {
		if err := sink.WriteAudit(ctx, entries); err != nil {
			t.Fatalf("WriteAudit() = %v", err)
		}
	}
	for _, id := range []string{"3f-1", "3f-2"} {
		if r, err := a.Get(ctx, id); err != nil || r.CustomerID == "" {
			t.Errorf("archive Get(%s) = %+v, %v", id, r, err)
		}
	}
	outs, err := a.Outcomes(ctx, "3f-1")
	if err != nil || len(outs) != 1 || outs[0].Outcome != "OUTCOME_DELIVERED" || !outs[0].OccurredAt.Equal(at) {
		t.Errorf("archive Outcomes(3f-1) = %+v, %v; want one OUTCOME_DELIVERED at %v", outs, err, at)
	}
}

// fakeDrainer fails while failing is set, and counts its drains.
type fakeDrainer struct {
	mu      sync.Mutex
	failing bool
	drains  int
	stats   featurestore.AuditStats // what a successful drain reports
}

func (d *fakeDrainer) Drain(context.Context) (featurestore.AuditStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drains++
	if d.failing {
		return featurestore.AuditStats{}, fmt.Errorf("append: %w (test)", archive.ErrUnavailable)
	}
	return d.stats, nil
}

func (d *fakeDrainer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drains
}

func (d *fakeDrainer) set(failing bool) {
	d.mu.Lock()
	d.failing = failing
	d.mu.Unlock()
}

// TestRelayLag: the lag grows while the archive fails, the error is reported, and both clear
// once a drain succeeds.
func TestRelayLag(t *testing.T) {
	d := &fakeDrainer{failing: true}
	r, err := New(d, nil, WithPoll(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(300 * time.Millisecond)
	if lag, err := r.Lag(), r.Err(); lag < 250*time.Millisecond || !errors.Is(err, archive.ErrUnavailable) {
		t.Errorf("Lag(), Err() while the archive fails = %v, %v; want at least 250ms, ErrUnavailable", lag, err)
	}
	d.set(false)
	deadline := time.Now().Add(10 * time.Second)
	for r.Err() != nil || r.Lag() > 100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("Lag(), Err() after the archive is back = %v, %v; want under 100ms, nil", r.Lag(), r.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer safe for the relay's goroutine and the test's.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRelayLogsErasedApart: records gone because their customer was erased are logged at
// INFO, not as the ERROR of records that left Redis before the archive had them, which stays
// for expired and lost ones.
func TestRelayLogsErasedApart(t *testing.T) {
	for _, tt := range []struct {
		name      string
		stats     featurestore.AuditStats
		wantError bool
		wantInfo  string
	}{
		{"erased", featurestore.AuditStats{Delivered: 3, Erased: 2}, false, `"erased":2`},
		{"expired", featurestore.AuditStats{Delivered: 3, Expired: 1}, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDrainer{stats: tt.stats}
			var logs lockedBuffer
			r, err := New(d, nil, WithPoll(time.Millisecond), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { defer close(done); r.Run(ctx) }()
			deadline := time.Now().Add(10 * time.Second)
			for d.count() < 2 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			cancel()
			<-done
			out := logs.String()
			if got := strings.Contains(out, `"level":"ERROR"`); got != tt.wantError {
				t.Errorf("an ERROR logged = %v, want %v; logs:\n%s", got, tt.wantError, out)
			}
			if tt.wantInfo != "" && !strings.Contains(out, tt.wantInfo) {
				t.Errorf("logs lack %s:\n%s", tt.wantInfo, out)
			}
		})
	}
}

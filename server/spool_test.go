package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/spool"
)

// TestSpoolDegradedDrainedAndExported: with Redis down, every degraded answer is in the spool
// before it is returned; once Redis is back the server's drain stores them, and the audit
// export delivers each exactly once, marked degraded; a retry of a degraded event replays it,
// and GetDecision finds it.
func TestSpoolDegradedDrainedAndExported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	e, _ := newFaultEnv(t)
	e.proxy.Down()
	const n = 40
	var (
		mu   sync.Mutex
		ids  = map[string]*arbiterv1.DecideRequest{}
		wg   sync.WaitGroup
		reqs = make(chan *arbiterv1.DecideRequest)
	)
	for range 4 {
		wg.Go(func() {
			for req := range reqs {
				resp, _, err := e.decide(req)
				if err != nil || !resp.GetDegraded() {
					t.Errorf("Decide(%s) with Redis down = degraded %v, %v; want a degraded answer", req.GetEvent().GetId(), resp.GetDegraded(), err)
					continue
				}
				mu.Lock()
				ids[resp.GetDecisionId()] = req
				mu.Unlock()
			}
		})
	}
	for range n {
		reqs <- e.request()
	}
	close(reqs)
	wg.Wait()
	if len(ids) != n {
		t.Fatalf("%d degraded answers, want %d", len(ids), n)
	}
	// Each answer's record was on disk when the answer came back.
	recs := spooled(t, e.spool.Dir())
	inSpool := map[string]int{}
	for _, r := range recs {
		inSpool[r.GetDecisionId()]++
		if !r.GetResponse().GetDegraded() || r.GetRequest().GetEvent().GetId() != r.GetEventId() {
			t.Errorf("spooled record %s = degraded %v, event %q; want degraded, the request's event", r.GetDecisionId(), r.GetResponse().GetDegraded(), r.GetEventId())
		}
	}
	for id := range ids {
		if inSpool[id] != 1 {
			t.Errorf("decision %s is in the spool %d times, want 1", id, inSpool[id])
		}
	}
	// (Warm-up calls that degraded on a busy machine are in the spool too.)
	if len(recs) < n {
		t.Errorf("spool holds %d records, want at least %d", len(recs), n)
	}

	// Redis back: the background drain stores them.
	e.proxy.Up()
	ctx, cancel := context.WithCancel(t.Context())
	drained := make(chan struct{})
	go func() { e.srv.RunSpoolDrain(ctx); close(drained) }()
	for deadline := time.Now().Add(15 * time.Second); e.spool.PendingBytes() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %d bytes 15s after Redis came back", e.spool.PendingBytes())
		}
	}
	cancel()
	<-drained
	if left := spooled(t, e.spool.Dir()); len(left) != 0 {
		t.Errorf("spool files hold %d records after the drain, want 0", len(left))
	}

	sink := newCountingSink()
	export(t, e.redis, sink)
	for id := range ids {
		if sink.got[id] != 1 {
			t.Errorf("decision %s exported %d times, want 1", id, sink.got[id])
		} else if !sink.recs[id].GetResponse().GetDegraded() || !faultHasReasonRec(sink.recs[id], ReasonStoreUnavailable) {
			t.Errorf("exported decision %s = degraded %v, want degraded with %s", id, sink.recs[id].GetResponse().GetDegraded(), ReasonStoreUnavailable)
		}
	}
	// The drained decisions are found by GetDecision; but a degraded answer is never its
	// event's idempotent answer: the event resent once the store is back is decided anew.
	for id, req := range ids {
		resp, err := e.decideStored(req)
		if err != nil || resp.GetReplayed() || resp.GetDegraded() || resp.GetDecisionId() == id {
			t.Errorf("Decide(%s) again = %s replayed %v degraded %v, %v; want a new decision, neither replayed nor degraded", req.GetEvent().GetId(), resp.GetDecisionId(), resp.GetReplayed(), resp.GetDegraded(), err)
		}
		if _, _, err := e.store.GetDecision(t.Context(), id); err != nil {
			t.Errorf("GetDecision(%s) = %v", id, err)
		}
		break // one is enough: every record went through the same path
	}
}

// decideStored calls Decide until the answer comes from the store (a replay, or not degraded):
// on a busy machine one call can exceed the store budget and degrade.
func (e *faultEnv) decideStored(req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	resp, _, err := e.decide(req)
	for deadline := time.Now().Add(faultRecovery); err == nil && resp.GetDegraded() && !resp.GetReplayed() && time.Now().Before(deadline); {
		resp, _, err = e.decide(req)
	}
	return resp, err
}

func faultHasReasonRec(rec *arbiterv1.DecisionRecord, code string) bool {
	return faultHasReason(rec.GetResponse(), code)
}

// TestSpoolDryRunNotSpooled: a degraded dry run is answered and leaves nothing in the spool;
// a degraded decision does.
func TestSpoolDryRunNotSpooled(t *testing.T) {
	c := newClock(testNow)
	store := featurestore.NewMemory()
	store.Close()
	sp := openTestSpool(t)
	h := newHarness(t, store, c, WithAuditSpool(sp))
	req := overdue("ev-dry", "cust-1")
	req.Options = &arbiterv1.DecideOptions{DryRun: true}
	resp, err := h.dc.Decide(t.Context(), req)
	if err != nil || !resp.GetDegraded() || !resp.GetDryRun() {
		t.Fatalf("Decide(store down, dry run) = degraded %v dry run %v, %v; want a degraded dry run", resp.GetDegraded(), resp.GetDryRun(), err)
	}
	if n := len(spooled(t, sp.Dir())); n != 0 || sp.PendingBytes() != 0 {
		t.Errorf("spool after a dry run holds %d records (%d bytes), want none", n, sp.PendingBytes())
	}
	resp, err = h.dc.Decide(t.Context(), overdue("ev-real", "cust-1"))
	if err != nil || !resp.GetDegraded() {
		t.Fatalf("Decide(store down) = degraded %v, %v; want degraded", resp.GetDegraded(), err)
	}
	if recs := spooled(t, sp.Dir()); len(recs) != 1 || recs[0].GetDecisionId() != resp.GetDecisionId() {
		t.Errorf("spool after a degraded decision = %d records, want the decision %s", len(recs), resp.GetDecisionId())
	}
}

// TestSpoolDrainStopsAndResumes: a drain stops at the first store error, keeps the segment,
// and a later drain stores the rest; a record the store refuses as invalid is kept in a
// rejected segment instead of being lost or blocking the others.
func TestSpoolDrainStopsAndResumes(t *testing.T) {
	ctx := t.Context()
	sp := openTestSpool(t)
	var ids []string
	for i := range 5 {
		cust := fmt.Sprint("cust-", i)
		id := featurestore.NewDecisionID(cust, testNow)
		ids = append(ids, id)
		if err := sp.Append(ctx, testRecord(id, cust)); err != nil {
			t.Fatal(err)
		}
	}
	store := featurestore.NewMemory()
	defer store.Close()
	flaky := &flakyAppender{DecisionAppender: store, failAt: 3}
	if n, err := sp.Drain(ctx, flaky); !errors.Is(err, featurestore.ErrUnavailable) || n != 2 {
		t.Fatalf("Drain(store failing at the 3rd record) = %d, %v; want 2, ErrUnavailable", n, err)
	}
	if sp.PendingBytes() == 0 {
		t.Errorf("PendingBytes() after a stopped drain = 0, want the segment kept")
	}
	if n, err := sp.Drain(ctx, flaky); err != nil || n != 3 {
		t.Errorf("Drain(again) = %d, %v; want the 3 records left, nil", n, err)
	}
	if flaky.calls != 6 {
		t.Errorf("store calls = %d, want 6 (5 records, one failed once; none sent again)", flaky.calls)
	}

	// A record the store can never take (a malformed decision id).
	bad := testRecord("not-a-decision-id", "cust-x")
	good := testRecord(featurestore.NewDecisionID("cust-y", testNow), "cust-y")
	for _, r := range [][]byte{bad, good} {
		if err := sp.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := sp.Drain(ctx, store); err != nil || n != 1 {
		t.Errorf("Drain(one invalid record) = %d, %v; want 1, nil", n, err)
	}
	rejected, _ := filepath.Glob(filepath.Join(sp.Dir(), "*"+spool.RejectedExt))
	if len(rejected) != 1 || sp.PendingBytes() != 0 {
		t.Errorf("rejected segments = %v, pending %d bytes; want 1 kept aside, nothing pending", rejected, sp.PendingBytes())
	}
}

// TestDegradedWithoutSpoolRecordedInStore: with no spool, a store that can still write (the
// embedded store, when a call outlives the store budget) takes the degraded decision's record
// itself, so the answer is OK and recorded once.
func TestDegradedWithoutSpoolRecordedInStore(t *testing.T) {
	c := newClock(testNow)
	store := featurestore.NewMemory()
	// A reserve longer than any deadline leaves no store budget: every decision degrades.
	h := newHarness(t, store, c, WithAuditSpool(nil), WithStoreBudget(Budget{Reserve: time.Hour}))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := h.dc.Decide(ctx, overdue("ev-1", "cust-1"))
	if err != nil || !resp.GetDegraded() {
		t.Fatalf("Decide(no store budget) = degraded %v, %v; want a degraded answer", resp.GetDegraded(), err)
	}
	n := 0
	if err := store.ScanAudit(t.Context(), func(id string, _ []byte) error {
		if id == resp.GetDecisionId() {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("audit trail holds the degraded decision %d times, want 1", n)
	}
	if _, _, err := store.GetDecision(t.Context(), resp.GetDecisionId()); err != nil {
		t.Errorf("GetDecision(degraded decision) = %v, want its record", err)
	}
}

// TestSpoolDrainIdempotent drains the same spooled records twice, as after a crash between
// storing them and removing the segment: the audit trail holds each once, and an event that was
// decided anew in between keeps that decision.
func TestSpoolDrainIdempotent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	e, _ := newFaultEnv(t)
	e.proxy.Down()
	var reqs []*arbiterv1.DecideRequest
	ids := map[string]bool{}
	for range 6 {
		req := e.overdue()
		resp, _, err := e.decide(req)
		if err != nil || !resp.GetDegraded() {
			t.Fatalf("Decide(%s) with Redis down = degraded %v, %v", req.GetEvent().GetId(), resp.GetDegraded(), err)
		}
		reqs = append(reqs, req)
		ids[resp.GetDecisionId()] = true
	}
	e.proxy.Up()
	e.waitRecovery(time.Now())
	// The first event is decided anew before the drain: a MESSAGE from the store.
	fresh, err := e.decideStored(reqs[0])
	if err != nil || fresh.GetDegraded() || fresh.GetReplayed() || fresh.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
		t.Fatalf("Decide(%s) after recovery = %v degraded %v replayed %v, %v; want a new MESSAGE", reqs[0].GetEvent().GetId(), fresh.GetAction(), fresh.GetDegraded(), fresh.GetReplayed(), err)
	}
	if ids[fresh.GetDecisionId()] {
		t.Fatalf("the new decision has a spooled decision's id")
	}
	// Keep a copy of the segments: a crash after the store took them but before their removal.
	dir := e.spool.Dir()
	want := len(spooled(t, dir)) // with any warm-up call that degraded
	copies := map[string][]byte{}
	names, _ := filepath.Glob(filepath.Join(dir, "*"+spool.SegmentExt))
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		copies[name] = b
	}
	if len(copies) == 0 {
		t.Fatal("no spool segment after degraded decisions")
	}
	for round := range 2 {
		if round == 1 {
			if err := e.spool.Close(); err != nil {
				t.Fatal(err)
			}
			for name, b := range copies {
				if err := os.WriteFile(name, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			sp, err := spool.Open(dir)
			if err != nil {
				t.Fatalf("Open(after crash) = %v", err)
			}
			t.Cleanup(func() { _ = sp.Close() })
			e.spool = sp
		}
		n, err := e.spool.Drain(t.Context(), e.store)
		if err != nil || n != want {
			t.Fatalf("Drain() round %d = %d, %v; want %d, nil", round+1, n, err, want)
		}
	}

	sink := newCountingSink()
	export(t, e.redis, sink)
	for id := range ids {
		if sink.got[id] != 1 {
			t.Errorf("decision %s exported %d times after two drains, want 1", id, sink.got[id])
		}
	}
	if sink.got[fresh.GetDecisionId()] != 1 {
		t.Errorf("the new decision %s exported %d times, want 1", fresh.GetDecisionId(), sink.got[fresh.GetDecisionId()])
	}
	// The event decided anew keeps its new decision.
	again, err := e.decideStored(reqs[0])
	if err != nil || !again.GetReplayed() || again.GetDecisionId() != fresh.GetDecisionId() {
		t.Errorf("Decide(%s) after the drains = %s replayed %v, %v; want the new decision %s replayed", reqs[0].GetEvent().GetId(), again.GetDecisionId(), again.GetReplayed(), err, fresh.GetDecisionId())
	}
}

// TestSpoolUnwritable: a degraded decision that cannot be recorded is not answered OK.
func TestSpoolUnwritable(t *testing.T) {
	closedStore := func(t *testing.T) Store {
		m := featurestore.NewMemory()
		m.Close() // every store call fails with featurestore.ErrUnavailable
		return m
	}
	tests := []struct {
		name  string
		spool func(t *testing.T) *spool.Spool
	}{
		{"no spool", func(*testing.T) *spool.Spool { return nil }},
		{"spool directory removed", func(t *testing.T) *spool.Spool {
			sp := openTestSpool(t)
			if err := os.RemoveAll(sp.Dir()); err != nil {
				t.Fatal(err)
			}
			return sp
		}},
		{"spool closed", func(t *testing.T) *spool.Spool {
			sp := openTestSpool(t)
			sp.Close()
			return sp
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(testNow)
			h := newHarness(t, closedStore(t), c, WithAuditSpool(tt.spool(t)))
			resp, err := h.dc.Decide(t.Context(), overdue("ev-1", "cust-1"))
			if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "could not be recorded") {
				t.Errorf("Decide(store down, %s) = %v, %v; want Unavailable: could not be recorded", tt.name, resp, err)
			}
			// A dry run records nothing, so it is answered.
			req := overdue("ev-2", "cust-1")
			req.Options = &arbiterv1.DecideOptions{DryRun: true}
			if resp, err := h.dc.Decide(t.Context(), req); err != nil || !resp.GetDegraded() || !resp.GetDryRun() {
				t.Errorf("Decide(store down, dry run, %s) = degraded %v dry run %v, %v; want a degraded dry run", tt.name, resp.GetDegraded(), resp.GetDryRun(), err)
			}
		})
	}
}

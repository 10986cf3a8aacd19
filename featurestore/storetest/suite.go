package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
)

// base is the suite's "now": times in the store are whole milliseconds.
var base = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

var equateEmpty = cmpopts.EquateEmpty()

// Run runs the conformance suite. open is called once per subtest and must return an empty
// store.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"EmptyLoad", testEmptyLoad},
		{"CommitThenLoad", testCommitThenLoad},
		{"LoadNarrow", testLoadNarrow},
		{"IdempotentCommit", testIdempotentCommit},
		{"ConcurrentSameEvent", testConcurrentSameEvent},
		{"ConcurrentCap", testConcurrentCap},
		{"CapChecks", testCapChecks},
		{"LedgerChecks", testLedgerChecks},
		{"StopChecks", testStopChecks},
		{"LedgerCap", testLedgerCap},
		{"StaleVersion", testStaleVersion},
		{"Trim", testTrim},
		{"ExpiredStopsAndFailures", testExpired},
		{"RecentList", testRecent},
		{"GetDecision", testGetDecision},
		{"Confirm", testConfirm},
		{"ReadForConfirm", testReadForConfirm},
		{"EraseCustomer", testEraseCustomer},
		{"Outcomes", testOutcomes},
		{"OutcomeEffects", testOutcomeEffects},
		{"OutcomeOptOut", testOutcomeOptOut},
		{"PutFeatures", testPutFeatures},
		{"PutFeaturesTTL", testPutFeaturesTTL},
		{"PutFeaturesBatch", testPutFeaturesBatch},
		{"Audit", testAudit},
		{"AuditKeepsEveryEntry", testAuditKeepsEveryEntry},
		{"AppendDecision", testAppendDecision},
		{"InvalidArguments", testInvalid},
		{"Corruption", testCorruption},
		{"Unavailable", testUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// commit builds a commit of one decision for customer about event at now.
func commit(customer, event string, now time.Time, e decision.Effects) *featurestore.Commit {
	id := featurestore.NewDecisionID(customer, now)
	return &featurestore.Commit{
		CustomerID: customer,
		EventID:    event,
		DecisionID: id,
		Now:        now,
		Record:     []byte(customer + "|" + event + "|" + id),
		Summary: decision.DecisionSummary{
			DecisionID: id, EventID: event, EventType: decision.EventInvoiceOverdue,
			Action: decision.ActionSuppress, ReasonCodes: []string{"TEST"}, DecidedAt: now,
		},
		Effects: e,
	}
}

// message returns Effects reserving a message slot of the commit's decision; the decision id
// is filled in by mustCommit.
func withMessage(c *featurestore.Commit, ch decision.Channel, p decision.Purpose, checks ...decision.CapCheck) *featurestore.Commit {
	c.Effects.Message = &decision.SentMessage{DecisionID: c.DecisionID, Channel: ch, Purpose: p, At: c.Now}
	c.Effects.CapChecks = checks
	c.Summary.Action = decision.ActionMessage
	return c
}

func mustCommit(t *testing.T, s Store, c *featurestore.Commit) featurestore.Committed {
	t.Helper()
	got, err := s.Commit(context.Background(), c)
	if err != nil {
		t.Fatalf("Commit(%s) = %v", c.EventID, err)
	}
	return got
}

func mustApply(t *testing.T, s Store, c *featurestore.Commit) {
	t.Helper()
	if got := mustCommit(t, s, c); got.Record != nil || got.Conflict != "" {
		t.Fatalf("Commit(%s) = %+v, want applied", c.EventID, got)
	}
}

func mustState(t *testing.T, s Store, customer string, now time.Time) decision.State {
	t.Helper()
	st, err := s.State(context.Background(), customer, now)
	if err != nil {
		t.Fatalf("State(%s) = %v", customer, err)
	}
	return st
}

func testEmptyLoad(t *testing.T, s Store) {
	ctx := context.Background()
	got, err := s.Load(ctx, "nobody", "ev-1", base)
	if err != nil {
		t.Fatalf("Load(nobody) = %v", err)
	}
	// Version is opaque: a store may name the empty state's version.
	if diff := cmp.Diff(featurestore.Loaded{}, got, equateEmpty, cmpopts.IgnoreFields(featurestore.Loaded{}, "Version")); diff != "" {
		t.Errorf("Load(nobody) mismatch (-want +got):\n%s", diff)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
}

func testCommitThenLoad(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-1"
	if err := s.PutFeatures(ctx, cust, map[string]any{"risk_score": 0.5, "opted_out": false, "timezone": "Europe/Paris"}, 0); err != nil {
		t.Fatalf("PutFeatures() = %v", err)
	}
	decline := decision.LedgerEntry{
		Kind: decision.LedgerDecline, EventID: "ev-1", CardRef: "card-A", MerchantID: "m-1",
		AmountMinor: 1999, Currency: "EUR", Initiator: decision.InitiatorMerchant,
		Network: decision.NetworkVisa, At: base.Add(-time.Minute),
	}
	retry := decline
	retry.Kind, retry.At = decision.LedgerRetry, base
	c := commit(cust, "ev-1", base, decision.Effects{
		Ledger: []decision.LedgerEntry{decline, retry},
		Stops: []decision.RetryStop{
			{CardRef: "card-A", MerchantID: "m-2", Until: base.Add(30 * 24 * time.Hour), ReasonCode: "MAC_DO_NOT_RETRY"},
			{CardRef: "card-Z", Until: base.Add(-time.Hour), ReasonCode: "OLD"}, // already over
		},
		Features: []decision.FeatureUpdate{{Name: "fraud_hold", Value: true}, {Name: "risk_score", Value: nil}},
	})
	withMessage(c, decision.ChannelEmail, decision.PurposeCollections,
		decision.CapCheck{Name: "email", Channel: decision.ChannelEmail, Purposes: decision.PurposesOf(decision.PurposeCollections), Since: base.Add(-24 * time.Hour), Limit: 3})
	c.Effects.LedgerChecks = []decision.LedgerCheck{{Name: "visa", Kind: decision.LedgerRetry, CardRef: "card-A", AnyAmount: true, Since: base.Add(-30 * 24 * time.Hour), Limit: 20}}
	mustApply(t, s, c)
	dup, err := s.RecordOutcome(ctx, &featurestore.OutcomeCommit{
		CustomerID: cust, DecisionID: c.DecisionID, Outcome: decision.OutcomeDeliveryFailed,
		OccurredAt: base, Now: base.Add(time.Second),
		Effects: decision.OutcomeEffects{FailChannel: &decision.ChannelFailure{Channel: decision.ChannelSMS, Until: base.Add(2 * time.Hour)}},
	})
	if err != nil || dup {
		t.Fatalf("RecordOutcome() = %v, %v, want false, nil", dup, err)
	}

	now := base.Add(time.Minute)
	want := decision.State{
		Features: map[string]any{"opted_out": false, "timezone": "Europe/Paris", "fraud_hold": true},
		Messages: []decision.SentMessage{{DecisionID: c.DecisionID, Channel: decision.ChannelEmail, Purpose: decision.PurposeCollections, At: base}},
		Ledger:   []decision.LedgerEntry{decline, retry},
		Stops: []decision.RetryStop{
			{CardRef: "card-A", MerchantID: "m-2", Until: base.Add(30 * 24 * time.Hour), ReasonCode: "MAC_DO_NOT_RETRY"},
		},
		FailingChannels: []decision.ChannelFailure{{Channel: decision.ChannelSMS, Until: base.Add(2 * time.Hour)}},
		Recent:          []decision.DecisionSummary{c.Summary},
	}
	got, err := s.Load(ctx, cust, "ev-2", now)
	if err != nil {
		t.Fatalf("Load(ev-2) = %v", err)
	}
	if got.Record != nil {
		t.Errorf("Load(ev-2).Record = %q, want nil", got.Record)
	}
	if diff := cmp.Diff(want, got.State, equateEmpty); diff != "" {
		t.Errorf("Load(ev-2).State mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustState(t, s, cust, now), equateEmpty); diff != "" {
		t.Errorf("State() mismatch (-want +got):\n%s", diff)
	}
	// Another customer sees nothing of it.
	if diff := cmp.Diff(decision.State{}, mustState(t, s, "cust-2", now), equateEmpty); diff != "" {
		t.Errorf("State(cust-2) mismatch (-want +got):\n%s", diff)
	}
}

func testIdempotentCommit(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-idem"
	first := withMessage(commit(cust, "ev-1", base, decision.Effects{}), decision.ChannelSMS, decision.PurposeService)
	mustApply(t, s, first)
	before := mustState(t, s, cust, base)

	second := withMessage(commit(cust, "ev-1", base.Add(time.Second), decision.Effects{
		Features: []decision.FeatureUpdate{{Name: "x", Value: 1.0}},
	}), decision.ChannelEmail, decision.PurposeService)
	got := mustCommit(t, s, second)
	if diff := cmp.Diff(featurestore.Committed{Record: first.Record}, got); diff != "" {
		t.Errorf("Commit(ev-1 again) mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, mustState(t, s, cust, base), equateEmpty); diff != "" {
		t.Errorf("State after a replayed commit changed (-before +after):\n%s", diff)
	}
	loaded, err := s.Load(ctx, cust, "ev-1", base.Add(time.Minute))
	if err != nil {
		t.Fatalf("Load(ev-1) = %v", err)
	}
	if diff := cmp.Diff(featurestore.Loaded{Record: first.Record}, loaded, equateEmpty); diff != "" {
		t.Errorf("Load(ev-1) mismatch (-want +got):\n%s", diff)
	}
	if _, _, err := s.GetDecision(ctx, second.DecisionID); !errors.Is(err, featurestore.ErrNotFound) {
		t.Errorf("GetDecision(replayed commit's id) = %v, want ErrNotFound", err)
	}
	// The same event id of another customer is another event.
	mustApply(t, s, commit("cust-other", "ev-1", base, decision.Effects{}))
}

func testConcurrentSameEvent(t *testing.T, s Store) {
	const (
		cust = "cust-conc"
		n    = 20
	)
	commits := make([]*featurestore.Commit, n)
	results := make([]featurestore.Committed, n)
	errs := make([]error, n)
	for i := range commits {
		commits[i] = withMessage(commit(cust, "ev-same", base, decision.Effects{
			Ledger: []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: "ev-same", CardRef: "c", At: base}},
		}), decision.ChannelPush, decision.PurposeService,
			decision.CapCheck{Name: "push", Channel: decision.ChannelPush, Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-time.Hour), Limit: 100})
	}
	var wg sync.WaitGroup
	for i := range commits {
		wg.Go(func() { results[i], errs[i] = s.Commit(context.Background(), commits[i]) })
	}
	wg.Wait()
	winner := -1
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("Commit #%d = %v", i, errs[i])
		}
		if results[i].Record == nil && results[i].Conflict == "" {
			if winner >= 0 {
				t.Fatalf("Commit #%d and #%d both applied, want exactly one", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no concurrent Commit applied, want exactly one")
	}
	for i := range results {
		if i != winner && string(results[i].Record) != string(commits[winner].Record) {
			t.Errorf("Commit #%d = %+v, want the replay of #%d's record %q", i, results[i], winner, commits[winner].Record)
		}
	}
	st := mustState(t, s, cust, base)
	if len(st.Messages) != 1 || len(st.Ledger) != 1 || len(st.Recent) != 1 {
		t.Errorf("State() holds %d messages, %d ledger entries, %d recent, want 1 each", len(st.Messages), len(st.Ledger), len(st.Recent))
	}
	if n := countAudit(t, s, cust); n != 1 {
		t.Errorf("audit entries for %s = %d, want 1", cust, n)
	}
}

func testConcurrentCap(t *testing.T, s Store) {
	const (
		cust  = "cust-cap"
		n     = 30
		limit = 5
	)
	check := decision.CapCheck{Name: "email_day", Channel: decision.ChannelEmail, Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-24 * time.Hour), Limit: limit}
	results := make([]featurestore.Committed, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c := withMessage(commit(cust, fmt.Sprintf("ev-%d", i), base, decision.Effects{}), decision.ChannelEmail, decision.PurposeService, check)
		wg.Go(func() { results[i], errs[i] = s.Commit(context.Background(), c) })
	}
	wg.Wait()
	applied := 0
	for i := range results {
		switch {
		case errs[i] != nil:
			t.Fatalf("Commit #%d = %v", i, errs[i])
		case results[i].Conflict == "email_day":
		case results[i].Conflict == "" && results[i].Record == nil:
			applied++
		default:
			t.Errorf("Commit #%d = %+v, want applied or Conflict email_day", i, results[i])
		}
	}
	if applied != limit {
		t.Errorf("%d concurrent commits under a cap of %d: %d applied, want %d", n, limit, applied, limit)
	}
	if got := len(mustState(t, s, cust, base).Messages); got != limit {
		t.Errorf("State().Messages holds %d, want %d", got, limit)
	}
	if got := countAudit(t, s, cust); got != limit {
		t.Errorf("audit entries = %d, want %d (none for conflicts)", got, limit)
	}
}

func testCapChecks(t *testing.T, s Store) {
	const cust = "cust-caps"
	// Stored: email/service at -2h, sms/service at -1h, email/marketing at -30m, email/service at -3d.
	seed := []struct {
		ch decision.Channel
		p  decision.Purpose
		at time.Duration
	}{
		{decision.ChannelEmail, decision.PurposeService, -2 * time.Hour},
		{decision.ChannelSMS, decision.PurposeService, -time.Hour},
		{decision.ChannelEmail, decision.PurposeMarketing, -30 * time.Minute},
		{decision.ChannelEmail, decision.PurposeService, -72 * time.Hour},
	}
	var stored []decision.SentMessage
	for i, m := range seed {
		c := withMessage(commit(cust, fmt.Sprintf("seed-%d", i), base.Add(m.at), decision.Effects{}), m.ch, m.p)
		mustApply(t, s, c)
		stored = append(stored, *c.Effects.Message)
	}
	day := base.Add(-24 * time.Hour)
	tests := []struct {
		name  string
		check decision.CapCheck
		want  int // matching messages: hand-counted
	}{
		{"email service day", decision.CapCheck{Channel: decision.ChannelEmail, Purposes: decision.PurposesOf(decision.PurposeService), Since: day}, 1},
		{"email service week", decision.CapCheck{Channel: decision.ChannelEmail, Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-7 * 24 * time.Hour)}, 2},
		{"any channel service day", decision.CapCheck{Purposes: decision.PurposesOf(decision.PurposeService), Since: day}, 2},
		{"any channel all purposes day", decision.CapCheck{Purposes: decision.PurposesOf(decision.PurposeService, decision.PurposeMarketing), Since: day}, 3},
		{"email marketing", decision.CapCheck{Channel: decision.ChannelEmail, Purposes: decision.PurposesOf(decision.PurposeMarketing), Since: day}, 1},
		{"since is inclusive", decision.CapCheck{Channel: decision.ChannelSMS, Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-time.Hour)}, 1},
		{"since excludes older", decision.CapCheck{Channel: decision.ChannelSMS, Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-59 * time.Minute)}, 0},
		{"no purpose", decision.CapCheck{Since: day}, 0},
		{"push", decision.CapCheck{Channel: decision.ChannelPush, Purposes: decision.PurposesOf(decision.PurposeService), Since: day}, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.check.Count(stored); got != tt.want {
				t.Fatalf("reference CapCheck.Count = %d, want %d: the table is wrong", got, tt.want)
			}
			tt.check.Name = "cap"
			tt.check.Limit = tt.want
			c := commit(cust, fmt.Sprintf("at-limit-%d", i), base, decision.Effects{CapChecks: []decision.CapCheck{tt.check}})
			if got := mustCommit(t, s, c); got.Conflict != "cap" {
				t.Errorf("Commit(limit %d) = %+v, want Conflict cap", tt.want, got)
			}
			tt.check.Limit = tt.want + 1
			c = commit(cust, fmt.Sprintf("under-limit-%d", i), base, decision.Effects{CapChecks: []decision.CapCheck{tt.check}})
			if got := mustCommit(t, s, c); got.Conflict != "" {
				t.Errorf("Commit(limit %d) = %+v, want applied", tt.want+1, got)
			}
		})
	}
	// The first failing check is the one named.
	c := commit(cust, "two-checks", base, decision.Effects{CapChecks: []decision.CapCheck{
		{Name: "ok", Purposes: decision.PurposesOf(decision.PurposeService), Since: day, Limit: 10},
		{Name: "full", Purposes: decision.PurposesOf(decision.PurposeService), Since: day, Limit: 2},
		{Name: "also-full", Purposes: decision.PurposesOf(decision.PurposeService), Since: day, Limit: 1},
	}})
	if got := mustCommit(t, s, c); got.Conflict != "full" {
		t.Errorf("Commit(two failing checks) = %+v, want Conflict full", got)
	}
}

func testLedgerChecks(t *testing.T, s Store) {
	const cust = "cust-ledger"
	mk := func(kind decision.LedgerKind, ev, card, merchant string, amount int64, cur string, ini decision.Initiator, at time.Duration) decision.LedgerEntry {
		return decision.LedgerEntry{Kind: kind, EventID: ev, CardRef: card, MerchantID: merchant, AmountMinor: amount,
			Currency: cur, Initiator: ini, Network: decision.NetworkVisa, At: base.Add(at)}
	}
	mit, cit := decision.InitiatorMerchant, decision.InitiatorCustomer
	entries := []decision.LedgerEntry{
		mk(decision.LedgerDecline, "e1", "card-A", "m-1", 1000, "EUR", mit, -2*time.Hour),
		mk(decision.LedgerDecline, "e2", "card-A", "m-2", 2000, "EUR", cit, -time.Hour),
		mk(decision.LedgerDecline, "e3", "card-A", "m-1", 1000, "GBP", mit, -10*24*time.Hour),
		mk(decision.LedgerRetry, "e4", "card-A", "m-1", 1000, "EUR", mit, -30*time.Minute),
		mk(decision.LedgerDecline, "e5", "card-B", "m-1", 1000, "EUR", mit, -time.Hour),
	}
	mustApply(t, s, commit(cust, "seed", base, decision.Effects{Ledger: entries}))
	day, month := base.Add(-24*time.Hour), base.Add(-30*24*time.Hour)
	tests := []struct {
		name  string
		check decision.LedgerCheck
		want  int
	}{
		{"every field", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", MerchantID: "m-1", AmountMinor: 1000, Currency: "EUR", Initiator: mit, Since: month}, 1},
		{"any merchant", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", AnyAmount: true, Since: month}, 3},
		{"any amount one merchant", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", MerchantID: "m-1", AnyAmount: true, Since: month}, 2},
		{"amount must match", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", AmountMinor: 2000, Since: month}, 1},
		{"zero amount is an amount", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", Since: month}, 0},
		{"any currency", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", MerchantID: "m-1", AmountMinor: 1000, Since: month}, 2},
		{"currency", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", AnyAmount: true, Currency: "GBP", Since: month}, 1},
		{"initiator CIT", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", AnyAmount: true, Initiator: cit, Since: month}, 1},
		{"initiator MIT", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", AnyAmount: true, Initiator: mit, Since: month}, 2},
		{"since excludes older", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-A", AnyAmount: true, Since: day}, 2},
		{"retries", decision.LedgerCheck{Kind: decision.LedgerRetry, CardRef: "card-A", AnyAmount: true, Since: day}, 1},
		{"other card", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-B", AnyAmount: true, Since: day}, 1},
		{"unknown card", decision.LedgerCheck{Kind: decision.LedgerDecline, CardRef: "card-C", AnyAmount: true, Since: month}, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.check.Count(entries); got != tt.want {
				t.Fatalf("reference LedgerCheck.Count = %d, want %d: the table is wrong", got, tt.want)
			}
			tt.check.Name = "ledger"
			tt.check.Limit = tt.want
			c := commit(cust, fmt.Sprintf("at-limit-%d", i), base, decision.Effects{LedgerChecks: []decision.LedgerCheck{tt.check}})
			if got := mustCommit(t, s, c); got.Conflict != "ledger" {
				t.Errorf("Commit(limit %d) = %+v, want Conflict ledger", tt.want, got)
			}
			tt.check.Limit = tt.want + 1
			c = commit(cust, fmt.Sprintf("under-limit-%d", i), base, decision.Effects{LedgerChecks: []decision.LedgerCheck{tt.check}})
			if got := mustCommit(t, s, c); got.Conflict != "" {
				t.Errorf("Commit(limit %d) = %+v, want applied", tt.want+1, got)
			}
		})
	}
	// A failed check applies nothing: not the ledger entries, the message or the record.
	c := withMessage(commit(cust, "blocked", base, decision.Effects{
		Ledger:       []decision.LedgerEntry{mk(decision.LedgerRetry, "blocked", "card-A", "m-1", 1000, "EUR", mit, 0)},
		LedgerChecks: []decision.LedgerCheck{{Name: "full", Kind: decision.LedgerRetry, CardRef: "card-A", AnyAmount: true, Since: day, Limit: 1}},
		Stops:        []decision.RetryStop{{CardRef: "card-A", Until: base.Add(time.Hour)}},
		Features:     []decision.FeatureUpdate{{Name: "f", Value: "v"}},
	}), decision.ChannelEmail, decision.PurposeService)
	before := mustState(t, s, cust, base)
	if got := mustCommit(t, s, c); got.Conflict != "full" {
		t.Fatalf("Commit(blocked) = %+v, want Conflict full", got)
	}
	if diff := cmp.Diff(before, mustState(t, s, cust, base), equateEmpty); diff != "" {
		t.Errorf("State after a conflicting commit changed (-before +after):\n%s", diff)
	}
	if _, _, err := s.GetDecision(context.Background(), c.DecisionID); !errors.Is(err, featurestore.ErrNotFound) {
		t.Errorf("GetDecision(conflicting commit) = %v, want ErrNotFound", err)
	}
	// The event is not decided: a later commit of it applies.
	mustApply(t, s, commit(cust, "blocked", base, decision.Effects{}))
}

func testStopChecks(t *testing.T, s Store) {
	const cust = "cust-stopcheck"
	stops := []decision.RetryStop{
		{CardRef: "card-A", MerchantID: "m-1", Until: base.Add(time.Hour), ReasonCode: "RECURRING_ENDED"},
		{CardRef: "card-C", Until: base.Add(time.Hour), ReasonCode: "HARD_DECLINE"},
	}
	mustApply(t, s, commit(cust, "seed", base, decision.Effects{Stops: stops}))
	at := func(d time.Duration) time.Time { return base.Add(d) }
	tests := []struct {
		name  string
		check decision.StopCheck
		want  bool // blocks
	}{
		{"merchant stop blocks its merchant", decision.StopCheck{CardRef: "card-A", MerchantID: "m-1", At: base}, true},
		{"merchant stop spares another merchant", decision.StopCheck{CardRef: "card-A", MerchantID: "m-2", At: base}, false},
		{"merchant stop spares no merchant", decision.StopCheck{CardRef: "card-A", At: base}, false},
		{"merchant stop spares another card", decision.StopCheck{CardRef: "card-B", MerchantID: "m-1", At: base}, false},
		{"card-wide stop blocks every merchant", decision.StopCheck{CardRef: "card-C", MerchantID: "m-2", At: base}, true},
		{"card-wide stop blocks no merchant", decision.StopCheck{CardRef: "card-C", At: base}, true},
		{"in force until its last millisecond", decision.StopCheck{CardRef: "card-C", MerchantID: "m-1", At: at(time.Hour - time.Millisecond)}, true},
		{"until is exclusive", decision.StopCheck{CardRef: "card-C", MerchantID: "m-1", At: at(time.Hour)}, false},
		{"expired card-wide stop", decision.StopCheck{CardRef: "card-C", MerchantID: "m-1", At: at(2 * time.Hour)}, false},
		{"expired merchant stop", decision.StopCheck{CardRef: "card-A", MerchantID: "m-1", At: at(2 * time.Hour)}, false},
		{"unknown card", decision.StopCheck{CardRef: "card-Z", MerchantID: "m-1", At: base}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.check.Blocks(stops); got != tt.want {
				t.Fatalf("reference StopCheck.Blocks = %v, want %v: the table is wrong", got, tt.want)
			}
			tt.check.Name = "stop"
			want := ""
			if tt.want {
				want = "stop"
			}
			c := commit(cust, fmt.Sprintf("check-%d", i), base, decision.Effects{StopChecks: []decision.StopCheck{tt.check}})
			if got := mustCommit(t, s, c); got.Conflict != want || got.Record != nil {
				t.Errorf("Commit(%+v) = %+v, want Conflict %q", tt.check, got, want)
			}
		})
	}

	// A failed stop check applies nothing, though every other check holds: not the ledger
	// entries, the stops, the message, the features or the record.
	mit := decision.InitiatorMerchant
	retry := decision.LedgerEntry{Kind: decision.LedgerRetry, EventID: "blocked", CardRef: "card-C", MerchantID: "m-1",
		AmountMinor: 1000, Currency: "EUR", Initiator: mit, Network: decision.NetworkVisa, At: base}
	c := withMessage(commit(cust, "blocked", base, decision.Effects{
		Ledger:       []decision.LedgerEntry{retry},
		LedgerChecks: []decision.LedgerCheck{{Name: "ledger", Kind: decision.LedgerRetry, CardRef: "card-C", AnyAmount: true, Since: base.Add(-time.Hour), Limit: 5}},
		StopChecks: []decision.StopCheck{
			{Name: "other-card", CardRef: "card-B", MerchantID: "m-1", At: base},
			{Name: "retry_stop", CardRef: "card-C", MerchantID: "m-1", At: base},
		},
		Stops:    []decision.RetryStop{{CardRef: "card-D", Until: base.Add(time.Hour)}},
		Features: []decision.FeatureUpdate{{Name: "f", Value: "v"}},
	}), decision.ChannelEmail, decision.PurposeService,
		decision.CapCheck{Name: "cap", Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-time.Hour), Limit: 5})
	before := mustState(t, s, cust, base)
	if got := mustCommit(t, s, c); got.Conflict != "retry_stop" {
		t.Fatalf("Commit(blocked by a card-wide stop) = %+v, want Conflict retry_stop", got)
	}
	if diff := cmp.Diff(before, mustState(t, s, cust, base), equateEmpty); diff != "" {
		t.Errorf("State after a conflicting commit changed (-before +after):\n%s", diff)
	}
	if _, _, err := s.GetDecision(context.Background(), c.DecisionID); !errors.Is(err, featurestore.ErrNotFound) {
		t.Errorf("GetDecision(conflicting commit) = %v, want ErrNotFound", err)
	}

	// The race the check closes: a hard stop committed after a retry's state was read fails
	// the retry's commit.
	const racer = "cust-stoprace"
	mustApply(t, s, commit(racer, "never", base, decision.Effects{
		Stops: []decision.RetryStop{{CardRef: "card-R", Until: base.Add(30 * 24 * time.Hour), ReasonCode: "HARD_DECLINE"}},
	}))
	soft := commit(racer, "soft", base, decision.Effects{
		Ledger:     []decision.LedgerEntry{{Kind: decision.LedgerRetry, EventID: "soft", CardRef: "card-R", MerchantID: "m-1", At: base}},
		StopChecks: []decision.StopCheck{{Name: "retry_stop", CardRef: "card-R", MerchantID: "m-1", At: base}},
	})
	if got := mustCommit(t, s, soft); got.Conflict != "retry_stop" {
		t.Errorf("Commit(retry after a concurrent hard stop) = %+v, want Conflict retry_stop", got)
	}
	if st := mustState(t, s, racer, base); len(st.Ledger) != 0 {
		t.Errorf("State after the conflicting retry holds ledger %+v, want none", st.Ledger)
	}
}

// testLedgerCap: a ledger that would pass featurestore.LedgerCap entries drops its oldest, and
// each dropped entry's card is stopped (RETRY_LEDGER_FULL) until the entry would have left
// the 30-day window; another card's retries are not touched, and a stop is never shortened.
func testLedgerCap(t *testing.T, s Store) {
	const cust = "cust-ledgercap"
	entry := func(ev, card string, at time.Time) decision.LedgerEntry {
		return decision.LedgerEntry{Kind: decision.LedgerDecline, EventID: ev, CardRef: card, MerchantID: "m-1",
			AmountMinor: 1000, Currency: "EUR", Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: at}
	}
	var old []decision.LedgerEntry
	for i := range 5 {
		old = append(old, entry(fmt.Sprintf("old-%d", i), "card-old", base.Add(-10*time.Hour+time.Duration(i)*time.Minute)))
	}
	mustApply(t, s, commit(cust, "old", base, decision.Effects{Ledger: old}))
	// LedgerCap-2 entries of another card, in commits of 32: the last commit drops 3 of
	// card-old's.
	var fresh []decision.LedgerEntry
	for i := range featurestore.LedgerCap - 2 {
		fresh = append(fresh, entry(fmt.Sprintf("new-%d", i), "card-new", base.Add(-5*time.Hour+time.Duration(i)*time.Second)))
	}
	for i := 0; i < len(fresh); i += 32 {
		mustApply(t, s, commit(cust, fmt.Sprintf("new-%d", i), base, decision.Effects{Ledger: fresh[i:min(i+32, len(fresh))]}))
	}
	st := mustState(t, s, cust, base)
	want := append(append([]decision.LedgerEntry{}, old[3:]...), fresh...)
	if diff := cmp.Diff(want, st.Ledger, equateEmpty); diff != "" {
		t.Errorf("ledger after %d entries, want the newest %d (-want +got):\n%s", len(old)+len(fresh), featurestore.LedgerCap, diff)
	}
	// The latest dropped entry sets the stop's end: 30 days and a millisecond after it.
	stop := decision.RetryStop{CardRef: "card-old", Until: old[2].At.Add(30*24*time.Hour + time.Millisecond), ReasonCode: decision.CodeLedgerFull}
	if diff := cmp.Diff([]decision.RetryStop{stop}, st.Stops, equateEmpty); diff != "" {
		t.Errorf("stops after the ledger dropped card-old entries (-want +got):\n%s", diff)
	}
	check := func(name, card string, at time.Time) string {
		c := commit(cust, fmt.Sprintf("check-%s-%s-%d", name, card, at.UnixMilli()), base, decision.Effects{
			StopChecks: []decision.StopCheck{{Name: "retry_stop", CardRef: card, MerchantID: "m-9", At: at}},
		})
		return mustCommit(t, s, c).Conflict
	}
	if got := check("old", "card-old", stop.Until.Add(-time.Millisecond)); got != "retry_stop" {
		t.Errorf("a retry of card-old in the stop's last millisecond: Conflict %q, want retry_stop", got)
	}
	if got := check("old", "card-old", stop.Until); got != "" {
		t.Errorf("a retry of card-old when its dropped entries are out of every window: Conflict %q, want none", got)
	}
	if got := check("new", "card-new", base); got != "" {
		t.Errorf("a retry of card-new: Conflict %q, want none", got)
	}

	// A shorter stop for the same card leaves the longer one in place; a longer one replaces it.
	short := decision.RetryStop{CardRef: "card-old", Until: base.Add(time.Hour), ReasonCode: decision.CodeHardDecline}
	mustApply(t, s, commit(cust, "short", base, decision.Effects{Stops: []decision.RetryStop{short}}))
	if got := mustState(t, s, cust, base).Stops; !slices.Equal(got, []decision.RetryStop{stop}) {
		t.Errorf("stops after a shorter stop of the card = %+v, want %+v kept", got, stop)
	}
	long := decision.RetryStop{CardRef: "card-old", Until: base.Add(60 * 24 * time.Hour), ReasonCode: decision.CodeHardDecline}
	mustApply(t, s, commit(cust, "long", base, decision.Effects{Stops: []decision.RetryStop{long}}))
	if got := mustState(t, s, cust, base).Stops; !slices.Equal(got, []decision.RetryStop{long}) {
		t.Errorf("stops after a longer stop of the card = %+v, want %+v", got, long)
	}
}

// testStaleVersion: a commit made on a Load whose version is stale (something was added
// since) re-checks its caps, ledgers and stops; one on the current version applies.
func testStaleVersion(t *testing.T, s Store) {
	const cust = "cust-version"
	ctx := context.Background()
	load := func(ev string) featurestore.Loaded {
		t.Helper()
		l, err := s.Load(ctx, cust, ev, base)
		if err != nil {
			t.Fatalf("Load(%s) = %v", ev, err)
		}
		return l
	}
	day := base.Add(-24 * time.Hour)
	capOf := func(limit int) decision.CapCheck {
		return decision.CapCheck{Name: "email_day", Channel: decision.ChannelEmail,
			Purposes: decision.PurposesOf(decision.PurposeService), Since: day, Limit: limit}
	}
	mustApply(t, s, withMessage(commit(cust, "seed", base, decision.Effects{}), decision.ChannelEmail, decision.PurposeService))

	// Two decisions read the same state (one email today) and each reserves the second of
	// a cap of 2: the first applies, the second must see the first's message.
	a, b := load("a"), load("b")
	ca := withMessage(commit(cust, "a", base, decision.Effects{}), decision.ChannelEmail, decision.PurposeService, capOf(2))
	ca.Version = a.Version
	mustApply(t, s, ca)
	cb := withMessage(commit(cust, "b", base, decision.Effects{}), decision.ChannelEmail, decision.PurposeService, capOf(2))
	cb.Version = b.Version
	if got := mustCommit(t, s, cb); got.Conflict != "email_day" {
		t.Errorf("Commit on a stale version after a message = %+v, want Conflict email_day", got)
	}

	// The same for a ledger entry and a retry stop added since the Load.
	retry := decision.LedgerCheck{Name: "retries", Kind: decision.LedgerRetry, CardRef: "card-A", AnyAmount: true, Since: day, Limit: 1}
	entry := decision.LedgerEntry{Kind: decision.LedgerRetry, EventID: "c", CardRef: "card-A", MerchantID: "m-1",
		AmountMinor: 100, Currency: "EUR", Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: base}
	c, d := load("c"), load("d")
	cc := commit(cust, "c", base, decision.Effects{Ledger: []decision.LedgerEntry{entry}, LedgerChecks: []decision.LedgerCheck{retry}})
	cc.Version = c.Version
	mustApply(t, s, cc)
	cd := commit(cust, "d", base, decision.Effects{LedgerChecks: []decision.LedgerCheck{retry}})
	cd.Version = d.Version
	if got := mustCommit(t, s, cd); got.Conflict != "retries" {
		t.Errorf("Commit on a stale version after a ledger entry = %+v, want Conflict retries", got)
	}

	stop := decision.StopCheck{Name: "stopped", CardRef: "card-S", At: base}
	e, f := load("e"), load("f")
	ce := commit(cust, "e", base, decision.Effects{Stops: []decision.RetryStop{{CardRef: "card-S", Until: base.Add(time.Hour), ReasonCode: "HARD_DECLINE"}}})
	ce.Version = e.Version
	mustApply(t, s, ce)
	cf := commit(cust, "f", base, decision.Effects{StopChecks: []decision.StopCheck{stop}})
	cf.Version = f.Version
	if got := mustCommit(t, s, cf); got.Conflict != "stopped" {
		t.Errorf("Commit on a stale version after a stop = %+v, want Conflict stopped", got)
	}

	// On the current version, a commit within its checks applies.
	g := load("g")
	cg := withMessage(commit(cust, "g", base, decision.Effects{}), decision.ChannelSMS, decision.PurposeService,
		decision.CapCheck{Name: "sms_day", Channel: decision.ChannelSMS, Purposes: decision.PurposesOf(decision.PurposeService), Since: day, Limit: 1})
	cg.Version = g.Version
	mustApply(t, s, cg)
}

func testTrim(t *testing.T, s Store) {
	const cust = "cust-trim"
	t0 := base
	old := withMessage(commit(cust, "old", t0, decision.Effects{
		Ledger: []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: "old", CardRef: "c", At: t0}},
	}), decision.ChannelEmail, decision.PurposeService)
	mustApply(t, s, old)

	// 29 days later both are in Load's 30-day window.
	st := mustState(t, s, cust, t0.Add(29*24*time.Hour))
	if len(st.Messages) != 1 || len(st.Ledger) != 1 {
		t.Fatalf("State(t0+29d) holds %d messages and %d ledger entries, want 1 and 1", len(st.Messages), len(st.Ledger))
	}
	// 30 days and a minute later they are outside it.
	st = mustState(t, s, cust, t0.Add(30*24*time.Hour+time.Minute))
	if len(st.Messages) != 0 || len(st.Ledger) != 0 {
		t.Errorf("State(t0+30d) holds %d messages and %d ledger entries, want none", len(st.Messages), len(st.Ledger))
	}

	// A write 32 days later trims them: a check reaching back before t0 no longer counts them.
	t1 := t0.Add(32 * 24 * time.Hour)
	mustApply(t, s, withMessage(commit(cust, "new", t1, decision.Effects{
		Ledger: []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: "new", CardRef: "c", At: t1}},
	}), decision.ChannelEmail, decision.PurposeService))
	long := t0.Add(-24 * time.Hour)
	c := commit(cust, "probe", t1, decision.Effects{
		CapChecks:    []decision.CapCheck{{Name: "cap", Purposes: decision.PurposesOf(decision.PurposeService), Since: long, Limit: 2}},
		LedgerChecks: []decision.LedgerCheck{{Name: "ledger", Kind: decision.LedgerDecline, CardRef: "c", Since: long, Limit: 2}},
	})
	if got := mustCommit(t, s, c); got.Conflict != "" {
		t.Errorf("Commit(probe back to t0-1d, limit 2) = %+v, want applied: members older than 31 days must be trimmed", got)
	}
}

func testExpired(t *testing.T, s Store) {
	const cust = "cust-exp"
	c := commit(cust, "ev", base, decision.Effects{Stops: []decision.RetryStop{
		{CardRef: "a", Until: base.Add(time.Hour), ReasonCode: "R1"},
		{CardRef: "b", Until: base.Add(3 * time.Hour), ReasonCode: "R2"},
	}})
	mustApply(t, s, c)
	if _, err := s.RecordOutcome(context.Background(), &featurestore.OutcomeCommit{
		CustomerID: cust, DecisionID: c.DecisionID, Outcome: decision.OutcomeDeliveryFailed, OccurredAt: base, Now: base,
		Effects: decision.OutcomeEffects{FailChannel: &decision.ChannelFailure{Channel: decision.ChannelEmail, Until: base.Add(time.Hour)}},
	}); err != nil {
		t.Fatalf("RecordOutcome() = %v", err)
	}
	tests := []struct {
		at        time.Duration
		wantStops []string
		wantFail  int
	}{
		{0, []string{"a", "b"}, 1},
		{time.Hour - time.Millisecond, []string{"a", "b"}, 1},
		{time.Hour, []string{"b"}, 0}, // until is exclusive
		{4 * time.Hour, nil, 0},
	}
	for _, tt := range tests {
		st := mustState(t, s, cust, base.Add(tt.at))
		var stops []string
		for _, s := range st.Stops {
			stops = append(stops, s.CardRef)
		}
		if diff := cmp.Diff(tt.wantStops, stops, equateEmpty); diff != "" || len(st.FailingChannels) != tt.wantFail {
			t.Errorf("State(base+%v): stops %v, %d failing channels; want %v, %d", tt.at, stops, len(st.FailingChannels), tt.wantStops, tt.wantFail)
		}
	}
}

func testRecent(t *testing.T, s Store) {
	const cust = "cust-recent"
	var last *featurestore.Commit
	for i := range 25 {
		last = commit(cust, fmt.Sprintf("ev-%02d", i), base.Add(time.Duration(i)*time.Second), decision.Effects{})
		last.Summary.ReasonCodes = nil
		mustApply(t, s, last)
	}
	st := mustState(t, s, cust, base.Add(time.Minute))
	if len(st.Recent) != 20 {
		t.Fatalf("State().Recent holds %d, want 20", len(st.Recent))
	}
	if diff := cmp.Diff(last.Summary, st.Recent[0], equateEmpty); diff != "" {
		t.Errorf("State().Recent[0] mismatch (-want +got):\n%s", diff)
	}
	if got, want := st.Recent[19].EventID, "ev-05"; got != want {
		t.Errorf("State().Recent[19].EventID = %q, want %q", got, want)
	}
}

func testGetDecision(t *testing.T, s Store) {
	ctx := context.Background()
	c := commit("cust-get", "ev", base, decision.Effects{})
	mustApply(t, s, c)
	rec, outs, err := s.GetDecision(ctx, c.DecisionID)
	if err != nil || string(rec) != string(c.Record) || len(outs) != 0 {
		t.Errorf("GetDecision(%s) = %q, %v, %v; want %q, no outcomes, nil", c.DecisionID, rec, outs, err, c.Record)
	}
	valid := featurestore.NewDecisionID("cust-get", base)
	for _, id := range []string{
		valid, "", "abc", valid[:len(valid)-1], "zz" + valid[2:], valid[:10] + "X" + valid[11:],
		"\x00" + valid[1:], valid + "0", "../../etc",
	} {
		if _, _, err := s.GetDecision(ctx, id); !errors.Is(err, featurestore.ErrNotFound) {
			t.Errorf("GetDecision(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func testOutcomes(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-out"
	c := commit(cust, "ev", base, decision.Effects{})
	mustApply(t, s, c)
	record := func(o decision.Outcome, occurred, now time.Time) bool {
		t.Helper()
		dup, err := s.RecordOutcome(ctx, &featurestore.OutcomeCommit{CustomerID: cust, DecisionID: c.DecisionID, Outcome: o, OccurredAt: occurred, Now: now})
		if err != nil {
			t.Fatalf("RecordOutcome(%v) = %v", o, err)
		}
		return dup
	}
	if record(decision.OutcomeDelivered, base.Add(time.Minute), base.Add(2*time.Minute)) {
		t.Errorf("RecordOutcome(delivered) = duplicate, want first")
	}
	if !record(decision.OutcomeDelivered, base.Add(5*time.Minute), base.Add(6*time.Minute)) {
		t.Errorf("RecordOutcome(delivered again) = first, want duplicate")
	}
	if record(decision.OutcomeOpened, base.Add(3*time.Minute), base.Add(4*time.Minute)) {
		t.Errorf("RecordOutcome(opened) = duplicate, want first")
	}
	_, outs, err := s.GetDecision(ctx, c.DecisionID)
	if err != nil {
		t.Fatalf("GetDecision() = %v", err)
	}
	want := []featurestore.StoredOutcome{
		{Outcome: decision.OutcomeDelivered, OccurredAt: base.Add(time.Minute), RecordedAt: base.Add(2 * time.Minute)},
		{Outcome: decision.OutcomeOpened, OccurredAt: base.Add(3 * time.Minute), RecordedAt: base.Add(4 * time.Minute)},
	}
	if diff := cmp.Diff(want, outs); diff != "" {
		t.Errorf("GetDecision() outcomes mismatch (-want +got):\n%s", diff)
	}
	_, err = s.RecordOutcome(ctx, &featurestore.OutcomeCommit{CustomerID: cust, DecisionID: featurestore.NewDecisionID(cust, base), Outcome: decision.OutcomeDelivered, Now: base})
	if !errors.Is(err, featurestore.ErrNotFound) {
		t.Errorf("RecordOutcome(unknown decision) = %v, want ErrNotFound", err)
	}
	_, err = s.RecordOutcome(ctx, &featurestore.OutcomeCommit{CustomerID: cust, DecisionID: "nope", Outcome: decision.OutcomeDelivered, Now: base})
	if !errors.Is(err, featurestore.ErrNotFound) {
		t.Errorf("RecordOutcome(malformed id) = %v, want ErrNotFound", err)
	}
}

func testOutcomeEffects(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-effects"
	cap1 := decision.CapCheck{Name: "one", Channel: decision.ChannelEmail, Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-time.Hour), Limit: 1}
	first := withMessage(commit(cust, "m1", base, decision.Effects{
		Ledger: []decision.LedgerEntry{
			{Kind: decision.LedgerDecline, EventID: "m1", CardRef: "card-A", At: base},
			{Kind: decision.LedgerRetry, EventID: "m1", CardRef: "card-A", At: base},
			{Kind: decision.LedgerDecline, EventID: "m1", CardRef: "card-B", At: base},
		},
	}), decision.ChannelEmail, decision.PurposeService, cap1)
	mustApply(t, s, first)
	if got := mustCommit(t, s, withMessage(commit(cust, "m2", base, decision.Effects{}), decision.ChannelEmail, decision.PurposeService, cap1)); got.Conflict != "one" {
		t.Fatalf("Commit(second message under cap 1) = %+v, want Conflict one", got)
	}

	// Delivery failed: release the slot and mark the channel failing.
	failed := &featurestore.OutcomeCommit{
		CustomerID: cust, DecisionID: first.DecisionID, Outcome: decision.OutcomeDeliveryFailed, OccurredAt: base, Now: base,
		Effects: decision.OutcomeEffects{
			ReleaseMessage: first.Effects.Message,
			FailChannel:    &decision.ChannelFailure{Channel: decision.ChannelEmail, Until: base.Add(time.Hour)},
		},
	}
	if dup, err := s.RecordOutcome(ctx, failed); err != nil || dup {
		t.Fatalf("RecordOutcome(delivery failed) = %v, %v, want false, nil", dup, err)
	}
	st := mustState(t, s, cust, base)
	if len(st.Messages) != 0 {
		t.Errorf("State().Messages after release = %v, want none", st.Messages)
	}
	if diff := cmp.Diff([]decision.ChannelFailure{{Channel: decision.ChannelEmail, Until: base.Add(time.Hour)}}, st.FailingChannels); diff != "" {
		t.Errorf("State().FailingChannels mismatch (-want +got):\n%s", diff)
	}
	second := withMessage(commit(cust, "m2", base, decision.Effects{}), decision.ChannelEmail, decision.PurposeService, cap1)
	mustApply(t, s, second)

	// A repeat of the same outcome applies nothing, even with other effects.
	again := *failed
	again.Effects = decision.OutcomeEffects{ReleaseMessage: second.Effects.Message, ResetLedger: &decision.LedgerReset{CardRef: "card-A"}}
	if dup, err := s.RecordOutcome(ctx, &again); err != nil || !dup {
		t.Fatalf("RecordOutcome(delivery failed again) = %v, %v, want true, nil", dup, err)
	}
	st = mustState(t, s, cust, base)
	if len(st.Messages) != 1 || len(st.Ledger) != 3 {
		t.Errorf("after a duplicate outcome: %d messages, %d ledger entries, want 1 and 3", len(st.Messages), len(st.Ledger))
	}

	// Paid: reset the ledger of card-A only.
	paid := &featurestore.OutcomeCommit{
		CustomerID: cust, DecisionID: first.DecisionID, Outcome: decision.OutcomePaid, OccurredAt: base, Now: base,
		Effects: decision.OutcomeEffects{ResetLedger: &decision.LedgerReset{CardRef: "card-A"}},
	}
	if dup, err := s.RecordOutcome(ctx, paid); err != nil || dup {
		t.Fatalf("RecordOutcome(paid) = %v, %v, want false, nil", dup, err)
	}
	st = mustState(t, s, cust, base)
	want := []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: "m1", CardRef: "card-B", At: base}}
	if diff := cmp.Diff(want, st.Ledger); diff != "" {
		t.Errorf("State().Ledger after reset mismatch (-want +got):\n%s", diff)
	}
}

func testPutFeatures(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-feat"
	put := func(f map[string]any) {
		t.Helper()
		if err := s.PutFeatures(ctx, cust, f, 0); err != nil {
			t.Fatalf("PutFeatures(%v) = %v", f, err)
		}
	}
	put(map[string]any{"a": 1, "b": "x", "list": []any{1.5, "y", nil}, "obj": map[string]any{"k": false}})
	put(map[string]any{"b": nil, "c": true, "missing": nil})
	want := map[string]any{"a": 1.0, "c": true, "list": []any{1.5, "y", nil}, "obj": map[string]any{"k": false}}
	if diff := cmp.Diff(want, mustState(t, s, cust, base).Features); diff != "" {
		t.Errorf("State().Features mismatch (-want +got):\n%s", diff)
	}
	put(map[string]any{"a": nil, "c": nil, "list": nil, "obj": nil})
	if got := mustState(t, s, cust, base).Features; len(got) != 0 {
		t.Errorf("State().Features after deleting all = %v, want none", got)
	}
	for _, bad := range []map[string]any{
		{"nan": math.NaN()},
		{"fn": func() {}},
		{"": 1},
		{"ctl\x1f": 1},
		{"big": strings.Repeat("x", 70<<10)},
	} {
		if err := s.PutFeatures(ctx, cust, bad, 0); !errors.Is(err, featurestore.ErrInvalid) {
			t.Errorf("PutFeatures(%v) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.PutFeatures(ctx, "", map[string]any{"a": 1}, 0); !errors.Is(err, featurestore.ErrInvalid) {
		t.Errorf("PutFeatures(empty customer id) = %v, want ErrInvalid", err)
	}
}

// testPutFeaturesTTL waits for a real expiry: both stores expire on the wall clock by default.
func testPutFeaturesTTL(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-ttl"
	if err := s.PutFeatures(ctx, cust, map[string]any{"a": 1}, 300*time.Millisecond); err != nil {
		t.Fatalf("PutFeatures(ttl 300ms) = %v", err)
	}
	if got := mustState(t, s, cust, base).Features; len(got) != 1 {
		t.Fatalf("State().Features right after PutFeatures = %v, want a", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(mustState(t, s, cust, base).Features) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("features with a 300ms TTL still there after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A PutFeatures without a TTL removes the expiry: opt-outs must not lapse.
	if err := s.PutFeatures(ctx, cust, map[string]any{"a": 1}, 200*time.Millisecond); err != nil {
		t.Fatalf("PutFeatures(ttl 200ms) = %v", err)
	}
	if err := s.PutFeatures(ctx, cust, map[string]any{"opted_out": true}, 0); err != nil {
		t.Fatalf("PutFeatures(no ttl) = %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	if diff := cmp.Diff(map[string]any{"a": 1.0, "opted_out": true}, mustState(t, s, cust, base).Features); diff != "" {
		t.Errorf("features after a PutFeatures without TTL mismatch (-want +got):\n%s", diff)
	}
}

func testPutFeaturesBatch(t *testing.T, s Store) {
	ctx := context.Background()
	items := make([]featurestore.FeatureRecord, 300)
	for i := range items {
		items[i] = featurestore.FeatureRecord{
			CustomerID: fmt.Sprintf("batch-%d", i),
			Features:   map[string]any{"n": i, "vulnerable": i%7 == 0},
		}
	}
	if err := s.PutFeaturesBatch(ctx, items); err != nil {
		t.Fatalf("PutFeaturesBatch(300) = %v", err)
	}
	for _, i := range []int{0, 1, 7, 299} {
		want := map[string]any{"n": float64(i), "vulnerable": i%7 == 0}
		if diff := cmp.Diff(want, mustState(t, s, fmt.Sprintf("batch-%d", i), base).Features); diff != "" {
			t.Errorf("State(batch-%d).Features mismatch (-want +got):\n%s", i, diff)
		}
	}
	bad := []featurestore.FeatureRecord{{CustomerID: "batch-ok", Features: map[string]any{"a": 1}}, {CustomerID: "", Features: map[string]any{"a": 1}}}
	if err := s.PutFeaturesBatch(ctx, bad); !errors.Is(err, featurestore.ErrInvalid) {
		t.Errorf("PutFeaturesBatch(with an empty customer id) = %v, want ErrInvalid", err)
	}
	if got := mustState(t, s, "batch-ok", base).Features; len(got) != 0 {
		t.Errorf("PutFeaturesBatch(invalid batch) wrote %v, want nothing", got)
	}
}

func countAudit(t *testing.T, s Store, customer string) int {
	t.Helper()
	ids := auditIDs(t, s)
	n := 0
	for _, c := range ids {
		if c == customer {
			n++
		}
	}
	return n
}

// auditIDs returns the customer of each audit entry by decision id, read from the record the
// suite wrote ("customer|event|decision id").
func auditIDs(t *testing.T, s Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.ScanAudit(context.Background(), func(id string, record []byte) error {
		if _, dup := out[id]; dup {
			return fmt.Errorf("decision %s has two audit entries", id)
		}
		f := strings.Split(string(record), "|")
		if len(f) != 3 || f[2] != id {
			return fmt.Errorf("audit entry %s holds record %q", id, record)
		}
		out[id] = f[0]
		return nil
	})
	if err != nil {
		t.Fatalf("ScanAudit() = %v", err)
	}
	return out
}

func testAudit(t *testing.T, s Store) {
	var applied []string
	for i := range 40 {
		cust := fmt.Sprintf("audit-%d", i%8) // spread over buckets
		c := withMessage(commit(cust, fmt.Sprintf("ev-%d", i/8), base, decision.Effects{}), decision.ChannelSMS, decision.PurposeService,
			decision.CapCheck{Name: "cap", Channel: decision.ChannelSMS, Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-time.Hour), Limit: 3})
		got := mustCommit(t, s, c)
		if got.Conflict != "" {
			continue // a conflict adds no entry
		}
		applied = append(applied, c.DecisionID)
		// A replay adds no entry.
		r := commit(cust, fmt.Sprintf("ev-%d", i/8), base, decision.Effects{})
		if got := mustCommit(t, s, r); got.Record == nil {
			t.Fatalf("Commit(replay) = %+v, want the stored record", got)
		}
	}
	if len(applied) != 24 {
		t.Fatalf("%d commits applied, want 24 (8 customers x cap 3)", len(applied))
	}
	got := auditIDs(t, s)
	if len(got) != len(applied) {
		t.Errorf("ScanAudit() saw %d entries, want %d", len(got), len(applied))
	}
	for _, id := range applied {
		if _, ok := got[id]; !ok {
			t.Errorf("ScanAudit() has no entry for applied decision %s", id)
		}
	}
}

// testAuditKeepsEveryEntry: one bucket's audit trail keeps every entry younger than the
// retention, however many: nothing leaves it before an exporter could ship it.
func testAuditKeepsEveryEntry(t *testing.T, s Store) {
	const n = 600 // one customer, so one bucket
	for i := range n {
		mustApply(t, s, commit("audit-many", fmt.Sprintf("ev-%d", i), base, decision.Effects{}))
	}
	mustAppend(t, s, decided("audit-many", "ev-degraded", base), false)
	if got := countAudit(t, s, "audit-many"); got != n+1 {
		t.Errorf("audit entries of %d commits and an append = %d, want %d", n, got, n+1)
	}
}

// decided returns a decision about customer's event answered without the store, as the
// server's audit spool holds it.
func decided(customer, event string, now time.Time) *featurestore.Decided {
	id := featurestore.NewDecisionID(customer, now)
	return &featurestore.Decided{CustomerID: customer, EventID: event, DecisionID: id, Record: []byte(customer + "|" + event + "|" + id)}
}

func mustAppend(t *testing.T, s Store, d *featurestore.Decided, wantDuplicate bool) {
	t.Helper()
	dup, err := s.AppendDecision(context.Background(), d)
	if err != nil || dup != wantDuplicate {
		t.Fatalf("AppendDecision(%s) = duplicate %v, %v; want %v, nil", d.EventID, dup, err, wantDuplicate)
	}
}

func testAppendDecision(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-append"

	// A decision answered without the store: appended once, GetDecision finds it, the audit
	// trail holds it once, and appending it again writes nothing. It is not its event's
	// idempotent answer: the event resent is decided anew.
	d := decided(cust, "ev-1", base)
	mustAppend(t, s, d, false)
	mustAppend(t, s, d, true)
	loaded, err := s.Load(ctx, cust, "ev-1", base.Add(time.Minute))
	if err != nil {
		t.Fatalf("Load(ev-1) = %v", err)
	}
	if loaded.Record != nil {
		t.Errorf("Load(event of an appended degraded decision) = record %q, want the state: the event is decided anew", loaded.Record)
	}
	if rec, _, err := s.GetDecision(ctx, d.DecisionID); err != nil || string(rec) != string(d.Record) {
		t.Errorf("GetDecision(%s) = %q, %v; want %q", d.DecisionID, rec, err, d.Record)
	}
	// A commit of the same event applies: the event gets its real decision.
	anew := commit(cust, "ev-1", base.Add(time.Minute), decision.Effects{})
	mustApply(t, s, anew)

	// An event decided anew before the append keeps its decision; the appended one is
	// recorded and audited all the same.
	c := commit(cust, "ev-2", base.Add(time.Second), decision.Effects{})
	mustApply(t, s, c)
	late := decided(cust, "ev-2", base)
	mustAppend(t, s, late, false)
	loaded, err = s.Load(ctx, cust, "ev-2", base.Add(time.Minute))
	if err != nil {
		t.Fatalf("Load(ev-2) = %v", err)
	}
	if string(loaded.Record) != string(c.Record) {
		t.Errorf("Load(ev-2 decided anew, then appended) = record %q, want the new decision's %q", loaded.Record, c.Record)
	}
	if rec, _, err := s.GetDecision(ctx, late.DecisionID); err != nil || string(rec) != string(late.Record) {
		t.Errorf("GetDecision(%s) = %q, %v; want %q", late.DecisionID, rec, err, late.Record)
	}
	// The appended decisions write no state: the recent decisions are the two committed.
	st := mustState(t, s, cust, base.Add(time.Minute))
	var recent []string
	for _, r := range st.Recent {
		recent = append(recent, r.DecisionID)
	}
	slices.Sort(recent)
	want := []string{anew.DecisionID, c.DecisionID}
	slices.Sort(want)
	if !slices.Equal(recent, want) {
		t.Errorf("State(%s).Recent = %v, want only the committed decisions %v", cust, recent, want)
	}

	ids := auditIDs(t, s) // fails on two entries of one decision
	for _, id := range []string{d.DecisionID, anew.DecisionID, c.DecisionID, late.DecisionID} {
		if ids[id] != cust {
			t.Errorf("audit trail has no entry for %s", id)
		}
	}
	if len(ids) != 4 {
		t.Errorf("audit trail holds %d entries, want 4", len(ids))
	}

	for _, tt := range []struct {
		name   string
		mutate func(d *featurestore.Decided)
	}{
		{"empty customer", func(d *featurestore.Decided) { d.CustomerID = "" }},
		{"empty event", func(d *featurestore.Decided) { d.EventID = "" }},
		{"malformed decision id", func(d *featurestore.Decided) { d.DecisionID = "x" }},
		{"decision id of another bucket", func(d *featurestore.Decided) {
			for i := 0; ; i++ {
				if id := featurestore.NewDecisionID(fmt.Sprint("other-", i), base); id[:2] != d.DecisionID[:2] {
					d.DecisionID = id
					return
				}
			}
		}},
		{"empty record", func(d *featurestore.Decided) { d.Record = nil }},
	} {
		bad := decided(cust, "ev-bad", base)
		tt.mutate(bad)
		if _, err := s.AppendDecision(ctx, bad); !errors.Is(err, featurestore.ErrInvalid) {
			t.Errorf("AppendDecision(%s) = %v, want ErrInvalid", tt.name, err)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.AppendDecision(canceled, decided(cust, "ev-3", base)); !errors.Is(err, featurestore.ErrUnavailable) {
		t.Errorf("AppendDecision(canceled context) = %v, want ErrUnavailable", err)
	}
}

func testInvalid(t *testing.T, s Store) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(c *featurestore.Commit)
	}{
		{"empty customer", func(c *featurestore.Commit) { c.CustomerID = "" }},
		{"empty event", func(c *featurestore.Commit) { c.EventID = "" }},
		{"control character in event", func(c *featurestore.Commit) { c.EventID = "a\x1fb" }},
		{"long customer", func(c *featurestore.Commit) { c.CustomerID = string(make([]byte, 1000)) }},
		{"malformed decision id", func(c *featurestore.Commit) { c.DecisionID = "x" }},
		{"decision id of another bucket", func(c *featurestore.Commit) {
			for i := 0; ; i++ {
				id := featurestore.NewDecisionID(fmt.Sprint("other-", i), base)
				if id[:2] != c.DecisionID[:2] {
					c.DecisionID = id
					return
				}
			}
		}},
		{"empty record", func(c *featurestore.Commit) { c.Record = nil }},
		{"separator in card_ref", func(c *featurestore.Commit) {
			c.Effects.Ledger = []decision.LedgerEntry{{Kind: decision.LedgerDecline, CardRef: "a\x1fb"}}
		}},
		{"feature not JSON", func(c *featurestore.Commit) {
			c.Effects.Features = []decision.FeatureUpdate{{Name: "x", Value: math.Inf(1)}}
		}},
		{"unnamed check", func(c *featurestore.Commit) { c.Effects.CapChecks = []decision.CapCheck{{Limit: 1}} }},
		{"unnamed stop check", func(c *featurestore.Commit) { c.Effects.StopChecks = []decision.StopCheck{{CardRef: "c"}} }},
		{"separator in stop check card_ref", func(c *featurestore.Commit) {
			c.Effects.StopChecks = []decision.StopCheck{{Name: "stop", CardRef: "a\x1fb"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := commit("cust-invalid", "ev", base, decision.Effects{})
			tt.mutate(c)
			if _, err := s.Commit(ctx, c); !errors.Is(err, featurestore.ErrInvalid) {
				t.Errorf("Commit(%s) = %v, want ErrInvalid", tt.name, err)
			}
		})
	}
	if _, err := s.Load(ctx, "", "ev", base); !errors.Is(err, featurestore.ErrInvalid) {
		t.Errorf("Load(empty customer) = %v, want ErrInvalid", err)
	}
	if got := mustState(t, s, "cust-invalid", base); len(got.Recent) != 0 {
		t.Errorf("an invalid commit wrote %v", got.Recent)
	}
}

var corruptionNames = map[Corruption]string{
	CorruptFeatureJSON: "FeatureJSON", CorruptHugeFeature: "HugeFeature", CorruptMessageMember: "MessageMember",
	CorruptLedgerMember: "LedgerMember", CorruptMessagesType: "MessagesType", CorruptFeaturesType: "FeaturesType",
	CorruptStopValue: "StopValue",
}

func testCorruption(t *testing.T, s Store) {
	cor, ok := s.(Corrupter)
	if !ok {
		t.Skip("the store does not implement storetest.Corrupter")
	}
	ctx := context.Background()
	all := []Corruption{CorruptFeatureJSON, CorruptHugeFeature, CorruptMessageMember, CorruptLedgerMember,
		CorruptMessagesType, CorruptFeaturesType, CorruptStopValue}
	// commitReads says whether a Commit with cap, ledger and stop effects reads the corrupted
	// key (features are written, never read, by Commit).
	commitReads := map[Corruption]bool{
		CorruptMessageMember: true, CorruptLedgerMember: true, CorruptMessagesType: true,
		CorruptFeaturesType: true, CorruptStopValue: true,
	}
	for _, c := range all {
		t.Run(corruptionNames[c], func(t *testing.T) {
			cust := fmt.Sprintf("corrupt-%d", c)
			if err := cor.Corrupt(ctx, cust, c, base.Add(-time.Minute)); err != nil {
				t.Fatalf("Corrupt(%d) = %v", c, err)
			}
			if _, err := s.Load(ctx, cust, "ev", base); !errors.Is(err, featurestore.ErrCorrupt) {
				t.Errorf("Load() = %v, want ErrCorrupt", err)
			}
			if _, err := s.State(ctx, cust, base); !errors.Is(err, featurestore.ErrCorrupt) {
				t.Errorf("State() = %v, want ErrCorrupt", err)
			}
			cm := withMessage(commit(cust, "ev", base, decision.Effects{
				LedgerChecks: []decision.LedgerCheck{{Name: "l", Kind: decision.LedgerDecline, CardRef: "c", AnyAmount: true, Since: base.Add(-time.Hour), Limit: 10}},
				Stops:        []decision.RetryStop{{CardRef: "c", Until: base.Add(time.Hour)}},
				Features:     []decision.FeatureUpdate{{Name: "f", Value: 1}},
			}), decision.ChannelEmail, decision.PurposeService,
				decision.CapCheck{Name: "c", Purposes: decision.PurposesOf(decision.PurposeService), Since: base.Add(-time.Hour), Limit: 10})
			_, err := s.Commit(ctx, cm)
			if commitReads[c] {
				if !errors.Is(err, featurestore.ErrCorrupt) {
					t.Errorf("Commit() = %v, want ErrCorrupt", err)
				}
				if _, _, err := s.GetDecision(ctx, cm.DecisionID); !errors.Is(err, featurestore.ErrNotFound) {
					t.Errorf("GetDecision() after a corrupt commit = %v, want ErrNotFound (nothing applied)", err)
				}
			} else if err != nil {
				t.Errorf("Commit() = %v, want nil: it does not read the corrupted key", err)
			}
			// A stop check alone reads the stops: it reports the corruption instead of
			// deciding on a stop it cannot read.
			sc := commit(cust, "stop-check", base, decision.Effects{
				StopChecks: []decision.StopCheck{{Name: "s", CardRef: "other", At: base}},
			})
			_, err = s.Commit(ctx, sc)
			if c == CorruptStopValue && !errors.Is(err, featurestore.ErrCorrupt) {
				t.Errorf("Commit(stop check only) = %v, want ErrCorrupt", err)
			} else if c != CorruptStopValue && err != nil {
				t.Errorf("Commit(stop check only) = %v, want nil: it does not read the corrupted key", err)
			}
			// A commit that neither reads nor writes the corrupted key applies.
			if got, err := s.Commit(ctx, commit(cust, "plain", base, decision.Effects{})); err != nil || got.Conflict != "" || got.Record != nil {
				t.Errorf("Commit(no effects) = %+v, %v, want applied", got, err)
			}
		})
	}
}

func testUnavailable(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Load(ctx, "cust", "ev", base); !errors.Is(err, featurestore.ErrUnavailable) {
		t.Errorf("Load(canceled context) = %v, want ErrUnavailable", err)
	}
	if _, err := s.Commit(ctx, commit("cust", "ev", base, decision.Effects{})); !errors.Is(err, featurestore.ErrUnavailable) {
		t.Errorf("Commit(canceled context) = %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, featurestore.ErrUnavailable) {
		t.Errorf("Ping(closed store) = %v, want ErrUnavailable", err)
	}
	if _, err := s.State(context.Background(), "cust", base); !errors.Is(err, featurestore.ErrUnavailable) {
		t.Errorf("State(closed store) = %v, want ErrUnavailable", err)
	}
}

// testConfirm: a confirmation that proceeds is recorded and keeps the reservation; a
// revocation releases the message slot and the retry's ledger entry and is final: a later
// Confirm returns it and changes nothing; confirmations are kept, oldest first, at most 16.
func testConfirm(t *testing.T, s Store) {
	ctx := context.Background()
	c := withMessage(commit("cust-conf", "ev-1", base, decision.Effects{}), decision.ChannelSMS, decision.PurposeService)
	retry := decision.LedgerEntry{Kind: decision.LedgerRetry, EventID: "ev-1", CardRef: "tok_1", MerchantID: "m-1",
		AmountMinor: 1000, Currency: "GBP", Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: base}
	c.Effects.Ledger = []decision.LedgerEntry{retry}
	mustApply(t, s, c)
	conf := func(proceed bool, at time.Time, reasons ...string) *featurestore.Confirmation {
		return &featurestore.Confirmation{CustomerID: "cust-conf", DecisionID: c.DecisionID, CheckedAt: at, Proceed: proceed,
			Reasons: reasons, Message: c.Effects.Message, Retry: &retry}
	}
	if prior, err := s.Confirm(ctx, conf(true, base.Add(time.Minute), "STILL_VALID")); err != nil || prior != nil {
		t.Fatalf("Confirm(proceed) = %v, %v; want recorded", prior, err)
	}
	st := mustState(t, s, "cust-conf", base.Add(time.Minute))
	if len(st.Messages) != 1 || len(st.Ledger) != 1 {
		t.Fatalf("after a confirmation that proceeds: %d messages, %d ledger entries; want 1 and 1", len(st.Messages), len(st.Ledger))
	}
	if prior, err := s.Confirm(ctx, conf(false, base.Add(2*time.Minute), "OPTED_OUT", "QUIET_HOURS")); err != nil || prior != nil {
		t.Fatalf("Confirm(revoke) = %v, %v; want recorded", prior, err)
	}
	st = mustState(t, s, "cust-conf", base.Add(2*time.Minute))
	if len(st.Messages) != 0 || len(st.Ledger) != 0 {
		t.Errorf("after a revocation: %d messages, %d ledger entries; want both released", len(st.Messages), len(st.Ledger))
	}
	prior, err := s.Confirm(ctx, conf(true, base.Add(3*time.Minute), "STILL_VALID"))
	want := &featurestore.StoredConfirmation{Proceed: false, Reasons: []string{"OPTED_OUT", "QUIET_HOURS"}, CheckedAt: base.Add(2 * time.Minute)}
	if err != nil || prior == nil || !cmp.Equal(*prior, *want) {
		t.Errorf("Confirm after a revocation = %+v, %v; want the revocation %+v", prior, err, want)
	}
	got, err := s.Confirmations(ctx, c.DecisionID)
	if err != nil || len(got) != 2 || !got[0].Proceed || got[1].Proceed {
		t.Errorf("Confirmations() = %+v, %v; want the proceed then the revocation", got, err)
	}
	// At most 16, the newest.
	d := withMessage(commit("cust-conf", "ev-2", base, decision.Effects{}), decision.ChannelSMS, decision.PurposeService)
	mustApply(t, s, d)
	for i := range 20 {
		cf := &featurestore.Confirmation{CustomerID: "cust-conf", DecisionID: d.DecisionID, CheckedAt: base.Add(time.Duration(i) * time.Second), Proceed: true, Reasons: []string{"STILL_VALID"}}
		if _, err := s.Confirm(ctx, cf); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Confirmations(ctx, d.DecisionID); err != nil || len(got) != 16 || !got[15].CheckedAt.Equal(base.Add(19*time.Second)) {
		t.Errorf("after 20 confirmations: %d kept (%v), want the newest 16", len(got), err)
	}
}

// testEraseCustomer erases a customer whose id holds SCAN's glob characters: everything but
// the suppression record goes, another customer keeps everything, and the tombstone stays.
func testEraseCustomer(t *testing.T, s Store) {
	ctx := context.Background()
	const cust, other = "cust*[erase]?", "cust-erase-other"
	features := map[string]any{
		"opted_out": true, "consent_sms_marketing": false, "consent_email_service": true,
		"fraud_hold": false, "segment": "gold", "timezone": "Europe/London",
	}
	for _, c := range []string{cust, other} {
		if err := s.PutFeatures(ctx, c, features, 0); err != nil {
			t.Fatalf("PutFeatures(%s) = %v", c, err)
		}
	}
	stop := decision.RetryStop{CardRef: "tok_1", Until: base.Add(90 * 24 * time.Hour), ReasonCode: "DO_NOT_HONOR"}
	retry := decision.LedgerEntry{Kind: decision.LedgerRetry, EventID: "ev-1", CardRef: "tok_1", MerchantID: "m-1",
		AmountMinor: 1000, Currency: "GBP", Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: base}
	first := withMessage(commit(cust, "ev-1", base, decision.Effects{Ledger: []decision.LedgerEntry{retry}, Stops: []decision.RetryStop{stop}}),
		decision.ChannelSMS, decision.PurposeService)
	second := commit(cust, "ev-2", base.Add(time.Minute), decision.Effects{})
	theirs := commit(other, "ev-1", base, decision.Effects{})
	for _, c := range []*featurestore.Commit{first, second, theirs} {
		mustApply(t, s, c)
	}
	if _, err := s.RecordOutcome(ctx, &featurestore.OutcomeCommit{CustomerID: cust, DecisionID: first.DecisionID,
		Outcome: decision.OutcomeDelivered, OccurredAt: base, Now: base.Add(time.Minute)}); err != nil {
		t.Fatalf("RecordOutcome() = %v", err)
	}
	if _, err := s.Confirm(ctx, &featurestore.Confirmation{CustomerID: cust, DecisionID: first.DecisionID,
		CheckedAt: base.Add(time.Minute), Proceed: true, Reasons: []string{"STILL_VALID"}}); err != nil {
		t.Fatalf("Confirm() = %v", err)
	}
	if ids, err := s.DecisionsOf(ctx, cust); err != nil || len(ids) != 2 {
		t.Fatalf("DecisionsOf(%s) = %v, %v, want both decisions", cust, ids, err)
	}

	at := base.Add(2 * time.Minute)
	e := &featurestore.Erasure{CustomerID: cust, At: at, Actor: "dpo", Reason: "ticket 7"}
	if err := s.EraseCustomer(ctx, e); err != nil {
		t.Fatalf("EraseCustomer() = %v", err)
	}
	wantErased := map[string]int64{"features": 4, "decisions": 2, "events": 2, "outcomes": 1, "confirmations": 1,
		"recent_decisions": 2, "failing_channels": 0}
	if diff := cmp.Diff(wantErased, e.Erased); diff != "" {
		t.Errorf("EraseCustomer() erased (-want +got):\n%s", diff)
	}
	wantIDs := []string{first.DecisionID, second.DecisionID}
	slices.Sort(wantIDs)
	if diff := cmp.Diff(wantIDs, e.DecisionIDs); diff != "" {
		t.Errorf("EraseCustomer() decision ids (-want +got):\n%s", diff)
	}
	wantKept := map[string]any{"opted_out": true, "consent_sms_marketing": false}
	if diff := cmp.Diff(wantKept, e.Kept.Features); diff != "" {
		t.Errorf("EraseCustomer() kept features (-want +got):\n%s", diff)
	}

	st := mustState(t, s, cust, at)
	if diff := cmp.Diff(wantKept, st.Features); diff != "" {
		t.Errorf("State() features after erasure (-want +got):\n%s", diff)
	}
	if len(st.Messages) != 1 || len(st.Ledger) != 1 || len(st.Stops) != 1 || len(st.Recent) != 0 {
		t.Errorf("State() after erasure: %d messages, %d ledger entries, %d stops, %d recent; want the cap, ledger and stop kept, no recent",
			len(st.Messages), len(st.Ledger), len(st.Stops), len(st.Recent))
	}
	for _, id := range wantIDs {
		if _, _, err := s.GetDecision(ctx, id); !errors.Is(err, featurestore.ErrNotFound) {
			t.Errorf("GetDecision(%s) after erasure = %v, want ErrNotFound", id, err)
		}
		if got, err := s.Confirmations(ctx, id); err != nil || len(got) != 0 {
			t.Errorf("Confirmations(%s) after erasure = %v, %v, want none", id, got, err)
		}
	}
	if l, err := s.Load(ctx, cust, "ev-1", at); err != nil || l.Record != nil {
		t.Errorf("Load(ev-1) after erasure = record %q, %v; want no replay", l.Record, err)
	}
	if ids, err := s.DecisionsOf(ctx, cust); err != nil || len(ids) != 0 {
		t.Errorf("DecisionsOf(%s) after erasure = %v, %v, want none", cust, ids, err)
	}
	// The audit trail keeps no record of the erased decisions. (Redis's outbox may still name an
	// outcome of one, without a record: the archive skips it as erased.)
	if err := s.ScanAudit(ctx, func(id string, record []byte) error {
		if len(record) > 0 && strings.HasPrefix(string(record), cust+"|") {
			t.Errorf("audit trail after erasure still holds decision %s", id)
		}
		return nil
	}); err != nil {
		t.Errorf("ScanAudit() = %v", err)
	}

	// The other customer keeps everything.
	if got := mustState(t, s, other, at); len(got.Features) != len(features) || len(got.Recent) != 1 {
		t.Errorf("State(%s) = %d features, %d recent; want %d and 1", other, len(got.Features), len(got.Recent), len(features))
	}
	if _, _, err := s.GetDecision(ctx, theirs.DecisionID); err != nil {
		t.Errorf("GetDecision(other customer's) = %v", err)
	}

	// Erasing again finds nothing more; both tombstones stay.
	again := &featurestore.Erasure{CustomerID: cust, At: at.Add(time.Minute), Actor: "dpo"}
	if err := s.EraseCustomer(ctx, again); err != nil || again.Erased["decisions"] != 0 || again.Erased["features"] != 0 {
		t.Errorf("EraseCustomer(again) = %v, erased %v; want nothing more", err, again.Erased)
	}
	tombs, err := s.Erasures(ctx, cust)
	if err != nil || len(tombs) != 2 {
		t.Fatalf("Erasures() = %d, %v, want 2", len(tombs), err)
	}
	if got := tombs[0]; got.Actor != "dpo" || got.Reason != "ticket 7" || !got.At.Equal(at) || got.Erased["decisions"] != 2 || got.Kept.Features["opted_out"] != true {
		t.Errorf("Erasures()[0] = %+v, want the first erasure's tombstone", got)
	}
	if tombs, err := s.Erasures(ctx, other); err != nil || len(tombs) != 0 {
		t.Errorf("Erasures(%s) = %v, %v, want none", other, tombs, err)
	}
	if err := s.EraseCustomer(ctx, &featurestore.Erasure{At: at}); !errors.Is(err, featurestore.ErrInvalid) {
		t.Errorf("EraseCustomer(no customer) = %v, want ErrInvalid", err)
	}
}

// testOutcomeOptOut: an outcome whose effects opt the customer out sets opted_out, without
// expiry, even on features that had one.
func testOutcomeOptOut(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-optout"
	if err := s.PutFeatures(ctx, cust, map[string]any{"segment": "gold"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	c := withMessage(commit(cust, "ev", base, decision.Effects{}), decision.ChannelEmail, decision.PurposeMarketing)
	mustApply(t, s, c)
	if _, err := s.RecordOutcome(ctx, &featurestore.OutcomeCommit{CustomerID: cust, DecisionID: c.DecisionID,
		Outcome: decision.OutcomeOptedOut, OccurredAt: base, Now: base, Effects: decision.OutcomeEffects{OptOut: true}}); err != nil {
		t.Fatalf("RecordOutcome(opted out) = %v", err)
	}
	want := map[string]any{"segment": "gold", "opted_out": true}
	if diff := cmp.Diff(want, mustState(t, s, cust, base).Features); diff != "" {
		t.Errorf("State().Features after an opt-out outcome (-want +got):\n%s", diff)
	}
}

// testReadForConfirm: one read gives the record, its outcomes and the state of the customer
// the record names (field 4 of an encoded DecisionRecord), the same state State reads, also
// for a customer id that key escaping changes; a record that names no customer gives no state.
func testReadForConfirm(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust:read%1"
	if err := s.PutFeatures(ctx, cust, map[string]any{"opted_out": true, "segment": "gold"}, 0); err != nil {
		t.Fatal(err)
	}
	c := withMessage(commit(cust, "ev-1", base, decision.Effects{}), decision.ChannelSMS, decision.PurposeService)
	var rec []byte
	rec = protowire.AppendTag(rec, 1, protowire.BytesType)
	rec = protowire.AppendString(rec, c.DecisionID)
	rec = protowire.AppendTag(rec, 2, protowire.BytesType)
	rec = protowire.AppendString(rec, "ev-1")
	rec = protowire.AppendTag(rec, 3, protowire.VarintType)
	rec = protowire.AppendVarint(rec, 300) // two bytes
	rec = protowire.AppendTag(rec, 4, protowire.BytesType)
	rec = protowire.AppendString(rec, cust)
	rec = protowire.AppendTag(rec, 5, protowire.BytesType)
	rec = protowire.AppendString(rec, "rest of the record")
	c.Record = rec
	mustApply(t, s, c)
	if _, err := s.RecordOutcome(ctx, &featurestore.OutcomeCommit{CustomerID: cust, DecisionID: c.DecisionID,
		Outcome: decision.OutcomeDelivered, OccurredAt: base, Now: base}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadForConfirm(ctx, c.DecisionID, base)
	if err != nil {
		t.Fatalf("ReadForConfirm() = %v", err)
	}
	if string(got.Record) != string(rec) || got.CustomerID != cust || len(got.Outcomes) != 1 {
		t.Errorf("ReadForConfirm() = record %q, customer %q, %d outcomes; want the record, %q, 1", got.Record, got.CustomerID, len(got.Outcomes), cust)
	}
	if diff := cmp.Diff(mustState(t, s, cust, base), got.State, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ReadForConfirm().State differs from State() (-State +ReadForConfirm):\n%s", diff)
	}
	plain := commit("cust-plain", "ev-1", base, decision.Effects{}) // its record is not a DecisionRecord
	mustApply(t, s, plain)
	if got, err := s.ReadForConfirm(ctx, plain.DecisionID, base); err != nil || got.CustomerID != "" || len(got.State.Recent) != 0 {
		t.Errorf("ReadForConfirm(record without a customer) = %+v, %v; want the record, no customer, no state", got, err)
	}
	if _, err := s.ReadForConfirm(ctx, featurestore.NewDecisionID(cust, base), base); !errors.Is(err, featurestore.ErrNotFound) {
		t.Errorf("ReadForConfirm(unknown) = %v, want ErrNotFound", err)
	}
}

// testLoadNarrow: LoadNarrow gives what Load gives narrowed by decision.Narrow, for a payment
// on either card and for an event that reads no ledger, on a customer with 24 decisions over two
// days (more than the recent list keeps, some older than 24 hours) and ledger entries of both
// kinds on two cards.
func testLoadNarrow(t *testing.T, s Store) {
	ctx := context.Background()
	const cust = "cust-narrow"
	now := base.Add(48 * time.Hour)
	for i := range 24 {
		at := base.Add(time.Duration(i) * 2 * time.Hour)
		card := "card-A"
		if i%3 == 0 {
			card = "card-B"
		}
		kind := decision.LedgerDecline
		if i%4 == 0 {
			kind = decision.LedgerRetry
		}
		ev := fmt.Sprintf("n-%d", i)
		mustApply(t, s, commit(cust, ev, at, decision.Effects{Ledger: []decision.LedgerEntry{
			{Kind: kind, EventID: ev, CardRef: card, MerchantID: "m", AmountMinor: 100, Currency: "GBP", At: at},
		}}))
	}
	for _, tc := range []struct {
		name string
		ev   decision.Event
	}{
		{"card A", decision.Event{Type: decision.EventPaymentFailed, Payment: &decision.PaymentFailure{CardRef: "card-A"}}},
		{"card B", decision.Event{Type: decision.EventPaymentFailed, Payment: &decision.PaymentFailure{CardRef: "card-B"}}},
		{"unknown card", decision.Event{Type: decision.EventPaymentFailed, Payment: &decision.PaymentFailure{CardRef: "card-C"}}},
		{"no payment", decision.Event{Type: decision.EventInvoiceOverdue}},
	} {
		l, err := s.Load(ctx, cust, "new-event", now)
		if err != nil {
			t.Fatal(err)
		}
		in := decision.Input{Event: tc.ev, Now: now, State: l.State}
		decision.Narrow(&in)
		payment, card := decision.NarrowedLedger(&tc.ev)
		got, err := s.LoadNarrow(ctx, cust, "new-event", now, featurestore.Narrowing{Payment: payment, CardRef: card})
		if err != nil {
			t.Fatalf("%s: LoadNarrow() = %v", tc.name, err)
		}
		if diff := cmp.Diff(in.State, got.State, equateEmpty); diff != "" {
			t.Errorf("%s: LoadNarrow() differs from Load() and Narrow (-narrowed +LoadNarrow):\n%s", tc.name, diff)
		}
		if got.Version != l.Version {
			t.Errorf("%s: LoadNarrow().Version = %q, Load() %q", tc.name, got.Version, l.Version)
		}
	}
	if got, err := s.LoadNarrow(ctx, cust, "n-3", now, featurestore.Narrowing{}); err != nil || got.Record == nil {
		t.Errorf("LoadNarrow(a decided event) = %v, %v; want its record", got, err)
	}
}

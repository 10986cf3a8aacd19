package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
)

func TestDecideRoundTrip(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)

			req := overdue("ev-1", "cust-1")
			resp, err := h.dc.Decide(ctx, req)
			if err != nil {
				t.Fatalf("Decide(%v) error: %v", req, err)
			}
			if resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE || resp.GetMessage().GetChannel() != arbiterv1.Channel_CHANNEL_EMAIL {
				t.Fatalf("Decide(overdue) = %v %v, want ACTION_MESSAGE on CHANNEL_EMAIL", resp.GetAction(), resp.GetMessage().GetChannel())
			}
			if resp.GetDecisionId() == "" || resp.GetReplayed() || resp.GetDegraded() || resp.GetDryRun() {
				t.Errorf("Decide(overdue) = id %q replayed %v degraded %v dry_run %v, want an id and no flags",
					resp.GetDecisionId(), resp.GetReplayed(), resp.GetDegraded(), resp.GetDryRun())
			}
			if got, want := resp.GetDecidedAt().AsTime(), testNow; !got.Equal(want) {
				t.Errorf("Decide(overdue).decided_at = %v, want %v", got, want)
			}
			ref := decision.DefaultPolicy().Ref()
			if diff := cmp.Diff(toPolicyRef(ref), resp.GetPolicy(), protocmp.Transform()); diff != "" {
				t.Errorf("Decide(overdue).policy mismatch (-want +got):\n%s", diff)
			}
			if len(resp.GetReasons()) == 0 {
				t.Errorf("Decide(overdue).reasons is empty, want at least one")
			}

			// GetDecision returns the record: request, response, policy, snapshot.
			got, err := h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()})
			if err != nil {
				t.Fatalf("GetDecision(%s) error: %v", resp.GetDecisionId(), err)
			}
			rec := got.GetRecord()
			if diff := cmp.Diff(resp, rec.GetResponse(), protocmp.Transform()); diff != "" {
				t.Errorf("GetDecision().record.response mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(req, rec.GetRequest(), protocmp.Transform()); diff != "" {
				t.Errorf("GetDecision().record.request mismatch (-want +got):\n%s", diff)
			}
			if rec.GetEventId() != "ev-1" || rec.GetCustomerId() != "cust-1" || rec.GetEventType() != req.GetEvent().GetType() {
				t.Errorf("GetDecision() = event %q customer %q type %v, want ev-1 cust-1 %v",
					rec.GetEventId(), rec.GetCustomerId(), rec.GetEventType(), req.GetEvent().GetType())
			}
			if rec.GetSnapshot() == nil || rec.GetTimings() == nil || !rec.GetRecordedAt().AsTime().Equal(testNow) {
				t.Errorf("GetDecision() = snapshot %v timings %v recorded_at %v, want a snapshot, timings and %v",
					rec.GetSnapshot(), rec.GetTimings(), rec.GetRecordedAt(), testNow)
			}

			// The customer's state shows the reserved message and the decision.
			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState(cust-1) error: %v", err)
			}
			wantMsgs := []*arbiterv1.SentMessage{{
				DecisionId: resp.GetDecisionId(), Channel: arbiterv1.Channel_CHANNEL_EMAIL,
				Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, At: st.GetMessages()[0].GetAt(),
			}}
			if diff := cmp.Diff(wantMsgs, st.GetMessages(), protocmp.Transform()); diff != "" {
				t.Errorf("GetCustomerState().messages mismatch (-want +got):\n%s", diff)
			}
			// The counters of the active policy's caps count the message where it applies.
			counts := map[string][2]int64{}
			for _, cv := range st.GetCounters() {
				counts[cv.GetName()] = [2]int64{cv.GetCount(), cv.GetLimit()}
			}
			if got := counts["all_daily"]; got[0] != 1 || got[1] == 0 {
				t.Errorf("GetCustomerState().counters[all_daily] = %d of %d, want 1 of a limit", got[0], got[1])
			}
			if got := counts["sms_daily"]; got[0] != 0 {
				t.Errorf("GetCustomerState().counters[sms_daily] = %d, want 0 after an e-mail", got[0])
			}
			if n := len(st.GetRecentDecisions()); n != 1 || st.GetRecentDecisions()[0].GetDecisionId() != resp.GetDecisionId() {
				t.Errorf("GetCustomerState().recent_decisions = %v, want just %s", st.GetRecentDecisions(), resp.GetDecisionId())
			}
		})
	}
}

func TestDecideReplay(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			first, err := h.dc.Decide(ctx, overdue("ev-1", "cust-1"))
			if err != nil {
				t.Fatalf("Decide() error: %v", err)
			}
			c.Advance(1e9) // a later call with the same event id still replays
			again, err := h.dc.Decide(ctx, overdue("ev-1", "cust-1"))
			if err != nil {
				t.Fatalf("Decide(again) error: %v", err)
			}
			want := proto.Clone(first).(*arbiterv1.DecideResponse)
			want.Replayed = true
			if diff := cmp.Diff(want, again, protocmp.Transform()); diff != "" {
				t.Errorf("Decide(same event id) mismatch (-want +got):\n%s", diff)
			}
			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			if n := len(st.GetMessages()); n != 1 {
				t.Errorf("GetCustomerState().messages after a replay = %d, want 1", n)
			}
		})
	}
}

func TestDecideConcurrentReplay(t *testing.T) {
	const calls = 20
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			var wg sync.WaitGroup
			resps := make([]*arbiterv1.DecideResponse, calls)
			errs := make([]error, calls)
			for i := range calls {
				wg.Go(func() { resps[i], errs[i] = h.dc.Decide(ctx, overdue("ev-same", "cust-1")) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("concurrent Decide error: %v", err)
			}
			ids := map[string]int{}
			fresh := 0
			for _, r := range resps {
				if r.GetDegraded() {
					t.Fatalf("concurrent Decide() = degraded %v, want a decision on the customer's state", r.GetReasons())
				}
				ids[r.GetDecisionId()]++
				if !r.GetReplayed() {
					fresh++
				}
			}
			if len(ids) != 1 || fresh != 1 {
				t.Errorf("%d concurrent Decide(same event) = decision ids %v with %d not replayed, want one id and 1 not replayed", calls, ids, fresh)
			}
			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			if n, m := len(st.GetMessages()), len(st.GetRecentDecisions()); n != 1 || m != 1 {
				t.Errorf("GetCustomerState() after %d concurrent calls = %d messages, %d decisions, want 1 and 1", calls, n, m)
			}
		})
	}
}

// TestDecideDryRunOnDecidedEvent: a dry run of an event id already decided evaluates afresh
// (its own decision id, an explanation the stored answer lacks, not replayed), names the
// stored decision in prior_decision_id, and changes nothing: a real call still replays the
// stored decision.
func TestDecideDryRunOnDecidedEvent(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			first, err := h.dc.Decide(ctx, overdue("ev-1", "cust-1"))
			if err != nil {
				t.Fatalf("Decide() error: %v", err)
			}
			before, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}

			c.Advance(time.Minute)
			req := overdue("ev-1", "cust-1")
			req.Options = &arbiterv1.DecideOptions{DryRun: true, Explain: true}
			dry, err := h.dc.Decide(ctx, req)
			if err != nil {
				t.Fatalf("Decide(dry run of a decided event) error: %v", err)
			}
			if !dry.GetDryRun() || dry.GetReplayed() || dry.GetPriorDecisionId() != first.GetDecisionId() ||
				dry.GetDecisionId() == first.GetDecisionId() || dry.GetExplanation() == nil {
				t.Errorf("Decide(dry run of a decided event) = id %q dry_run %v replayed %v prior %q explanation %v, want a new id, dry_run, not replayed, prior %q, an explanation",
					dry.GetDecisionId(), dry.GetDryRun(), dry.GetReplayed(), dry.GetPriorDecisionId(), dry.GetExplanation() != nil, first.GetDecisionId())
			}
			if !dry.GetDecidedAt().AsTime().Equal(testNow.Add(time.Minute)) {
				t.Errorf("Decide(dry run of a decided event).decided_at = %v, want now (%v)", dry.GetDecidedAt().AsTime(), testNow.Add(time.Minute))
			}

			after, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			if diff := cmp.Diff(before, after, protocmp.Transform()); diff != "" {
				t.Errorf("GetCustomerState() changed across the dry run (-before +after):\n%s", diff)
			}
			again, err := h.dc.Decide(ctx, overdue("ev-1", "cust-1"))
			if err != nil {
				t.Fatalf("Decide() again error: %v", err)
			}
			if !again.GetReplayed() || again.GetDecisionId() != first.GetDecisionId() || again.GetPriorDecisionId() != "" {
				t.Errorf("Decide() after the dry run = id %q replayed %v prior %q, want %q replayed, no prior",
					again.GetDecisionId(), again.GetReplayed(), again.GetPriorDecisionId(), first.GetDecisionId())
			}
		})
	}
}

func TestDecideDryRun(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			req := overdue("ev-dry", "cust-1")
			req.Options = &arbiterv1.DecideOptions{DryRun: true, Explain: true}
			resp, err := h.dc.Decide(ctx, req)
			if err != nil {
				t.Fatalf("Decide(dry_run) error: %v", err)
			}
			if !resp.GetDryRun() || resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE || resp.GetExplanation() == nil {
				t.Errorf("Decide(dry_run, explain) = dry_run %v action %v explanation %v, want true, ACTION_MESSAGE, set",
					resp.GetDryRun(), resp.GetAction(), resp.GetExplanation() != nil)
			}
			_, err = h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()})
			if status.Code(err) != codes.NotFound {
				t.Errorf("GetDecision(dry-run decision) error = %v, want NotFound", err)
			}
			st, err := h.fc.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: "cust-1"})
			if err != nil {
				t.Fatalf("GetCustomerState() error: %v", err)
			}
			if n, m := len(st.GetMessages()), len(st.GetRecentDecisions()); n != 0 || m != 0 {
				t.Errorf("GetCustomerState() after a dry run = %d messages, %d decisions, want none", n, m)
			}
			// The same event id decided for real afterwards is a new decision.
			real, err := h.dc.Decide(ctx, overdue("ev-dry", "cust-1"))
			if err != nil {
				t.Fatalf("Decide() error: %v", err)
			}
			if real.GetReplayed() || real.GetDryRun() {
				t.Errorf("Decide() after a dry run = replayed %v dry_run %v, want neither", real.GetReplayed(), real.GetDryRun())
			}
		})
	}
}

func TestDecideInvalid(t *testing.T) {
	c := newClock(testNow)
	h := newHarness(t, memoryStore(t, c), c)
	tests := []struct {
		name   string
		modify func(r *arbiterv1.DecideRequest)
		field  string
	}{
		{"no event", func(r *arbiterv1.DecideRequest) { r.Event = nil }, "event"},
		{"no event id", func(r *arbiterv1.DecideRequest) { r.Event.Id = "" }, "event.id"},
		{"long event id", func(r *arbiterv1.DecideRequest) { r.Event.Id = strings.Repeat("x", 129) }, "event.id"},
		{"control character in event id", func(r *arbiterv1.DecideRequest) { r.Event.Id = "a\nb" }, "event.id"},
		{"no event type", func(r *arbiterv1.DecideRequest) { r.Event.Type = 0 }, "event.type"},
		{"unknown event type", func(r *arbiterv1.DecideRequest) { r.Event.Type = 99 }, "event.type"},
		{"no customer", func(r *arbiterv1.DecideRequest) { r.Customer = nil }, "customer"},
		{"no customer id", func(r *arbiterv1.DecideRequest) { r.Customer.Id = "" }, "customer.id"},
		{"unknown consent channel", func(r *arbiterv1.DecideRequest) { r.Customer.Consents[0].Channel = 42 }, "customer.consents[0].channel"},
		{"no consent purpose", func(r *arbiterv1.DecideRequest) { r.Customer.Consents[0].Purpose = 0 }, "customer.consents[0].purpose"},
		{"unknown preferred channel", func(r *arbiterv1.DecideRequest) { r.Customer.PreferredChannels = []arbiterv1.Channel{7} }, "customer.preferred_channels[0]"},
		{"payment event without payment", func(r *arbiterv1.DecideRequest) { r.Event.Type = arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED }, "event.payment"},
		{"no decline code", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.DeclineCode = "" }, "event.payment.decline_code"},
		{"no network", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.Network = 0 }, "event.payment.network"},
		{"unknown network", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.Network = 9 }, "event.payment.network"},
		{"lower-case currency", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.Currency = "gbp" }, "event.payment.currency"},
		{"no currency", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.Currency = "" }, "event.payment.currency"},
		{"negative amount", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.AmountMinor = -1 }, "event.payment.amount_minor"},
		{"card number as amount", func(r *arbiterv1.DecideRequest) {
			*r = *declined("e", "c")
			r.Event.Payment.AmountMinor = 4832423834581860
		}, "event.payment.amount_minor"},
		{"amount of 13 digits", func(r *arbiterv1.DecideRequest) {
			*r = *declined("e", "c")
			r.Event.Payment.AmountMinor = MaxAmountMinor + 1
		}, "event.payment.amount_minor"},
		{"ten billion yen", func(r *arbiterv1.DecideRequest) {
			*r = *declined("e", "c")
			r.Event.Payment.Currency, r.Event.Payment.AmountMinor = "JPY", 10_000_000_000
		}, "event.payment.amount_minor"},
		{"no card ref", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.CardRef = "" }, "event.payment.card_ref"},
		{"unknown initiator", func(r *arbiterv1.DecideRequest) { *r = *declined("e", "c"); r.Event.Payment.Initiator = 5 }, "event.payment.initiator"},
		{"too many attributes", func(r *arbiterv1.DecideRequest) {
			r.Event.Attributes = map[string]string{}
			for i := range MaxAttributes + 1 {
				r.Event.Attributes[fmt.Sprint("k", i)] = "v"
			}
		}, "event.attributes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := overdue("ev-1", "cust-1")
			tc.modify(req)
			_, err := h.dc.Decide(t.Context(), req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "invalid "+tc.field+": ") {
				t.Errorf("Decide(%s) = %v %q, want InvalidArgument naming %q", tc.name, st.Code(), st.Message(), tc.field)
			}
		})
	}
}

func TestMaxAmountMinor(t *testing.T) {
	for _, tt := range []struct {
		currency string
		want     int64
	}{
		{"JPY", 9_999_999_999}, {"EUR", 999_999_999_999}, {"USD", 999_999_999_999},
		{"KWD", 999_999_999_999}, {"CLF", 999_999_999_999}, {"XTS", 999_999_999_999},
	} {
		if got := maxAmountMinor(tt.currency); got != tt.want {
			t.Errorf("maxAmountMinor(%s) = %d, want %d", tt.currency, got, tt.want)
		}
	}
	// The largest amounts are accepted.
	for _, currency := range []string{"JPY", "EUR"} {
		r := declined("e", "c")
		r.Event.Payment.Currency, r.Event.Payment.AmountMinor = currency, maxAmountMinor(currency)
		if err := validateDecide(r); err != nil {
			t.Errorf("validateDecide(%s %d) = %v, want nil", currency, maxAmountMinor(currency), err)
		}
	}
}

func TestDecideInvalidTimezoneIsNotAnInputError(t *testing.T) {
	c := newClock(testNow)
	h := newHarness(t, memoryStore(t, c), c)
	req := overdue("ev-tz", "cust-1")
	req.Customer.Timezone = "Mars/Olympus_Mons"
	resp, err := h.dc.Decide(t.Context(), req)
	if err != nil {
		t.Fatalf("Decide(invalid timezone) error: %v", err)
	}
	if resp.GetAction() == arbiterv1.Action_ACTION_MESSAGE && resp.GetMessage().GetSendAt() == nil {
		t.Errorf("Decide(invalid timezone) = an immediate MESSAGE, want the guardrails to fail closed")
	}
	if !hasCode(resp.GetReasons(), "TIMEZONE_UNKNOWN") {
		t.Errorf("Decide(invalid timezone).reasons = %v, want TIMEZONE_UNKNOWN", resp.GetReasons())
	}
}

func TestDecideDegraded(t *testing.T) {
	ctx := t.Context()
	c := newClock(testNow)
	store := memoryStore(t, c).(interface {
		Store
		Close() error
	})
	h := newHarness(t, store, c)
	store.Close() // every store call now fails with featurestore.ErrUnavailable

	for _, req := range []*arbiterv1.DecideRequest{overdue("ev-1", "cust-1"), declined("ev-2", "cust-1")} {
		resp, err := h.dc.Decide(ctx, req)
		if err != nil {
			t.Fatalf("Decide(%s) with the store down error: %v", req.GetEvent().GetType(), err)
		}
		if !resp.GetDegraded() || !hasCode(resp.GetReasons(), ReasonStoreUnavailable) {
			t.Errorf("Decide(%s) with the store down = degraded %v reasons %v, want degraded with %s",
				req.GetEvent().GetType(), resp.GetDegraded(), resp.GetReasons(), ReasonStoreUnavailable)
		}
		if a := resp.GetAction(); a == arbiterv1.Action_ACTION_MESSAGE || a == arbiterv1.Action_ACTION_RETRY {
			t.Errorf("Decide(%s) with the store down = %v, want no MESSAGE or RETRY", req.GetEvent().GetType(), a)
		}
	}
	_, err := h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: "00-0190f5a2-7c1e-7d4b-9a51-0c3e5b7d9f21"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetDecision() with the store down error = %v, want Unavailable", err)
	}
}

func TestDecideNoPolicy(t *testing.T) {
	c := newClock(testNow)
	srv := New(memoryStore(t, c), rollout.NewHolder(nil), WithClock(c.Now))
	_, err := srv.Decide(t.Context(), overdue("ev-1", "cust-1"))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Decide() with no policy error = %v, want Unavailable", err)
	}
}

// TestDecideCanceled checks that the caller's own cancellation ends the call instead of
// degrading it.
func TestDecideCanceled(t *testing.T) {
	c := newClock(testNow)
	srv := New(memoryStore(t, c), rollout.NewHolder(decision.DefaultPolicy()), WithClock(c.Now))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := srv.Decide(ctx, overdue("ev-1", "cust-1"))
	if status.Code(err) != codes.Canceled {
		t.Errorf("Decide(canceled context) error = %v, want Canceled", err)
	}
}

func hasCode(rs []*arbiterv1.Reason, code string) bool {
	for _, r := range rs {
		if r.GetCode() == code {
			return true
		}
	}
	return false
}

// TestDecideLedgerCap: a customer whose declines pass the store's ledger cap gets no more
// retries on the card whose entries were dropped (RETRY_LEDGER_FULL), while the first
// decline of that card was retried.
func TestDecideLedgerCap(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := t.Context()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			decline := func(n int, card string) *arbiterv1.DecideResponse {
				t.Helper()
				req := declined(fmt.Sprintf("ev-cap-%d", n), "cust-cap")
				req.Event.Payment.CardRef = card
				req.Event.Payment.AmountMinor = int64(1000 + n) // each its own credential
				resp, err := h.dc.Decide(ctx, req)
				if err != nil || resp.GetDegraded() {
					t.Fatalf("Decide(decline %d on %s) = %v, degraded %v", n, card, err, resp.GetDegraded())
				}
				c.Advance(time.Second)
				return resp
			}
			if resp := decline(0, "tok_old"); resp.GetAction() != arbiterv1.Action_ACTION_RETRY {
				t.Fatalf("first decline of tok_old = %v %v, want RETRY", resp.GetAction(), resp.GetReasons())
			}
			// Each decline adds a decline entry (and a retry entry when retried): past the cap
			// well before 2 × LedgerCap declines of another card.
			for n := 1; n <= featurestore.LedgerCap; n++ {
				decline(n, "tok_new")
			}
			resp := decline(featurestore.LedgerCap+1, "tok_old")
			if resp.GetAction() == arbiterv1.Action_ACTION_RETRY || !hasCode(resp.GetReasons(), decision.CodeLedgerFull) {
				t.Errorf("decline of tok_old after its entries were dropped = %v %v, want no RETRY, reason %s",
					resp.GetAction(), resp.GetReasons(), decision.CodeLedgerFull)
			}
		})
	}
}

// TestRecordKeepsTheLedgerItReads checks that a decision's record holds the part of the retry
// ledger the decision reads, with the count of declines on every card: a decline keeps its
// card's entries, another event none; and that the count still drives rules and escalation
// contexts.
func TestRecordKeepsTheLedgerItReads(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			ctx := context.Background()
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			const cust = "cust-cards"
			decline := func(id, card string) *arbiterv1.DecideResponse {
				t.Helper()
				req := declined(id, cust)
				req.Event.Payment.CardRef = card
				resp, err := h.dc.Decide(ctx, req)
				if err != nil {
					t.Fatalf("Decide(%s) error: %v", id, err)
				}
				c.Advance(time.Hour)
				return resp
			}
			record := func(resp *arbiterv1.DecideResponse) *arbiterv1.DecisionRecord {
				t.Helper()
				got, err := h.dc.GetDecision(ctx, &arbiterv1.GetDecisionRequest{DecisionId: resp.GetDecisionId()})
				if err != nil {
					t.Fatalf("GetDecision(%s) error: %v", resp.GetDecisionId(), err)
				}
				return got.GetRecord()
			}

			// Three declines on one card, two on another; count the retries granted on the first.
			retriesA := 0
			for i, card := range []string{"tok_a", "tok_b", "tok_a", "tok_b", "tok_a"} {
				if decline(fmt.Sprint("d", i), card).GetAction() == arbiterv1.Action_ACTION_RETRY && card == "tok_a" {
					retriesA++
				}
			}
			snap := record(decline("d5", "tok_a")).GetSnapshot()
			declinesA := 0
			for _, e := range snap.GetLedger() {
				if e.GetCardRef() != "tok_a" {
					t.Errorf("the record of a tok_a decline holds an entry of %q: %v", e.GetCardRef(), e)
				}
				if e.GetKind() == "decline" {
					declinesA++
				}
			}
			if declinesA != 3 || len(snap.GetLedger()) != 3+retriesA {
				t.Errorf("the record of a tok_a decline holds %d entries, %d declines; want the card's 3 declines and %d retries",
					len(snap.GetLedger()), declinesA, retriesA)
			}
			if !snap.GetNarrowed() || snap.GetLedgerDeclines_30D() != 5 || snap.GetRecentDecisions_24H() != 5 || len(snap.GetRecent()) != 3 {
				t.Errorf("snapshot: narrowed %v, ledger_declines_30d %d, recent_decisions_24h %d, %d recent; want narrowed, 5 (both cards), 5 and the newest 3",
					snap.GetNarrowed(), snap.GetLedgerDeclines_30D(), snap.GetRecentDecisions_24H(), len(snap.GetRecent()))
			}

			// A call to the contact centre reads only the count: its record holds no entries,
			// and the count routes it to payments support.
			call := &arbiterv1.DecideRequest{
				Event:    &arbiterv1.Event{Id: "call-1", Type: arbiterv1.EventType_EVENT_TYPE_INBOUND_CONTACT},
				Customer: &arbiterv1.Customer{Id: cust, Timezone: "Europe/London"},
			}
			resp, err := h.dc.Decide(ctx, call)
			if err != nil {
				t.Fatalf("Decide(call-1) error: %v", err)
			}
			if q := resp.GetEscalate().GetQueue(); q != "payments-support" || resp.GetEscalate().GetContext()["open_payment_failures"] != "6" {
				t.Errorf("Decide(call-1) = %v to %q, context %v; want ESCALATE to payments-support with open_payment_failures 6",
					resp.GetAction(), q, resp.GetEscalate().GetContext())
			}
			snap = record(resp).GetSnapshot()
			if len(snap.GetLedger()) != 0 || snap.GetLedgerDeclines_30D() != 6 {
				t.Errorf("the record of a call holds %d ledger entries and ledger_declines_30d %d, want none and 6",
					len(snap.GetLedger()), snap.GetLedgerDeclines_30D())
			}
		})
	}
}

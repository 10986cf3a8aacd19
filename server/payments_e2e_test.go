package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// decline returns a payment failure for customer on card, with the decline code, network,
// merchant advice code and initiator given.
func decline(eventID, customerID, card, code string, network arbiterv1.CardNetwork, mac string, ini arbiterv1.Initiator) *arbiterv1.DecideRequest {
	req := declined(eventID, customerID)
	p := req.Event.Payment
	p.CardRef, p.DeclineCode, p.Network, p.MerchantAdviceCode, p.Initiator = card, code, network, mac, ini
	return req
}

// TestPaymentLedgerEndToEnd runs the card-network retry rules of issue 5 through the whole
// pipeline (validation, one-round-trip load, engine, atomic commit) on both stores, with the
// default policy and an injected clock.
func TestPaymentLedgerEndToEnd(t *testing.T) {
	const (
		visa = arbiterv1.CardNetwork_CARD_NETWORK_VISA
		mc   = arbiterv1.CardNetwork_CARD_NETWORK_MASTERCARD
		mit  = arbiterv1.Initiator_INITIATOR_MERCHANT
		cit  = arbiterv1.Initiator_INITIATOR_CUSTOMER
	)
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			c := newClock(testNow)
			h := newHarness(t, sf.make(t, c), c)
			n := 0
			decide := func(req *arbiterv1.DecideRequest) *arbiterv1.DecideResponse {
				t.Helper()
				n++
				resp, err := h.dc.Decide(t.Context(), req)
				if err != nil {
					t.Fatalf("Decide(%s) error: %v", req.GetEvent().GetId(), err)
				}
				if resp.GetDegraded() {
					t.Fatalf("Decide(%s) degraded: %v", req.GetEvent().GetId(), resp.GetReasons())
				}
				return resp
			}
			hasReason := func(resp *arbiterv1.DecideResponse, code string) bool {
				for _, r := range resp.GetReasons() {
					if r.GetCode() == code {
						return true
					}
				}
				return false
			}

			// 25 consecutive Visa "51" declines of one credential, 25 hours apart (all within
			// the rolling 30 days): at most 20 RETRY answers, fewer when the policy says so.
			retries := 0
			var lastRetry string
			for i := range 25 {
				resp := decide(decline(fmt.Sprintf("v51-%d", i), "cust-v", "tok_v", "51", visa, "", mit))
				if resp.GetAction() == arbiterv1.Action_ACTION_RETRY {
					retries++
					lastRetry = resp.GetDecisionId()
					if !hasReason(resp, "SOFT_DECLINE") {
						t.Errorf("RETRY for a Visa 51 lacks SOFT_DECLINE: %v", resp.GetReasons())
					}
				}
				c.Advance(25 * time.Hour)
			}
			if retries == 0 || retries > 20 {
				t.Errorf("25 Visa 51 declines gave %d RETRY answers, want 1 to 20", retries)
			}

			// An approval of the last retry resets the credential's ledger: the next decline is
			// retried again.
			if _, err := h.dc.RecordOutcome(t.Context(), &arbiterv1.RecordOutcomeRequest{
				DecisionId: lastRetry, Outcome: arbiterv1.Outcome_OUTCOME_RETRY_APPROVED,
			}); err != nil {
				t.Fatalf("RecordOutcome(RETRY_APPROVED) error: %v", err)
			}
			if resp := decide(decline("v51-after-approval", "cust-v", "tok_v", "51", visa, "", mit)); resp.GetAction() != arbiterv1.Action_ACTION_RETRY {
				t.Errorf("decline after an approval = %v %v, want ACTION_RETRY (the ledger was reset)", resp.GetAction(), resp.GetReasons())
			}

			// A category 1 code ("04", pick up card) is never retried, and neither is any
			// later decline of that card.
			if resp := decide(decline("v04", "cust-h", "tok_h", "04", visa, "", mit)); resp.GetAction() == arbiterv1.Action_ACTION_RETRY {
				t.Errorf("Visa 04 = ACTION_RETRY, want no retry")
			}
			for i := range 3 {
				c.Advance(time.Hour)
				if resp := decide(decline(fmt.Sprintf("v04-then-51-%d", i), "cust-h", "tok_h", "51", visa, "", mit)); resp.GetAction() == arbiterv1.Action_ACTION_RETRY {
					t.Errorf("51 after a category 1 code on the same card = ACTION_RETRY, want none")
				}
			}

			// Mastercard MAC 25: not before 24 hours after the decline.
			declinedAt := c.Now()
			resp := decide(decline("mc-mac25", "cust-m", "tok_m", "51", mc, "25", mit))
			if resp.GetAction() != arbiterv1.Action_ACTION_RETRY {
				t.Fatalf("Mastercard 51 with MAC 25 = %v %v, want ACTION_RETRY", resp.GetAction(), resp.GetReasons())
			}
			if nb := resp.GetRetry().GetNotBefore().AsTime(); nb.Before(declinedAt.Add(24 * time.Hour)) {
				t.Errorf("MAC 25 retry not_before = %v, want at least %v", nb, declinedAt.Add(24*time.Hour))
			}
			if !hasReason(resp, "MAC_RETRY_AFTER") {
				t.Errorf("MAC 25 retry lacks MAC_RETRY_AFTER: %v", resp.GetReasons())
			}

			// 11 Mastercard declines of one card within a day: no 11th retry; and the
			// customer-initiated attempts are counted apart from the merchant-initiated ones.
			mcRetries := 0
			var last *arbiterv1.DecideResponse
			for i := range 11 {
				c.Advance(time.Minute)
				last = decide(decline(fmt.Sprintf("mc-day-%d", i), "cust-d", "tok_d", "51", mc, "", mit))
				if last.GetAction() == arbiterv1.Action_ACTION_RETRY {
					mcRetries++
				}
			}
			if last.GetAction() == arbiterv1.Action_ACTION_RETRY || mcRetries > 10 {
				t.Errorf("11 Mastercard declines in a day: %d retries, 11th = %v; want at most 10 and no 11th", mcRetries, last.GetAction())
			}
			c.Advance(26 * time.Hour)
			visaMIT := 0
			for i := range 6 {
				if decide(decline(fmt.Sprintf("ab-mit-%d", i), "cust-a", "tok_a", "51", visa, "", mit)).GetAction() == arbiterv1.Action_ACTION_RETRY {
					visaMIT++
				}
				c.Advance(25 * time.Hour)
			}
			if resp := decide(decline("ab-cit", "cust-a", "tok_a", "51", visa, "", cit)); resp.GetAction() != arbiterv1.Action_ACTION_RETRY {
				t.Errorf("first customer-initiated decline after %d merchant-initiated retries = %v %v, want ACTION_RETRY (CIT and MIT are counted apart)",
					visaMIT, resp.GetAction(), resp.GetReasons())
			}
			t.Logf("%d decisions: Visa 51 x25 -> %d retries; Mastercard x11 in a day -> %d retries; Visa MIT -> %d retries", n, retries, mcRetries, visaMIT)
		})
	}
}

// TestDecideConcurrentCap sends 50 concurrent events for one customer, each of which the
// default policy would answer with a message: the frequency caps hold, because slots are
// reserved atomically in the commit.
func TestDecideConcurrentCap(t *testing.T) {
	for _, sf := range stores() {
		t.Run(sf.name, func(t *testing.T) {
			c := newClock(testNow)
			store := sf.make(t, c)
			h := newHarness(t, store, c)
			var (
				mu       sync.Mutex
				messages int
				wg       sync.WaitGroup
			)
			for i := range 50 {
				wg.Go(func() {
					resp, err := h.dc.Decide(t.Context(), overdue(fmt.Sprintf("cc-%d", i), "cust-cap"))
					if err != nil {
						t.Errorf("Decide(cc-%d) error: %v", i, err)
						return
					}
					if resp.GetAction() == arbiterv1.Action_ACTION_MESSAGE {
						mu.Lock()
						messages++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			st, err := store.State(t.Context(), "cust-cap", c.Now())
			if err != nil {
				t.Fatal(err)
			}
			// The default policy caps non-security messages at 2 a day.
			if messages < 1 || messages > 2 || len(st.Messages) != messages {
				t.Errorf("50 concurrent overdue events: %d MESSAGE answers, %d reserved slots; want 1 to 2 (the daily cap), equal", messages, len(st.Messages))
			}
		})
	}
}

package decision

import (
	"fmt"
	"testing"
	"time"
)

// ledgerRun feeds declines for one customer through the guardrails, committing each decision's
// Effects to an in-memory store as the real store would (checks first), and returns the
// results.
type ledgerRun struct {
	t     *testing.T
	g     *guardrails
	store simStore
	now   time.Time
	n     int
}

func newLedgerRun(t *testing.T, pc PaymentConfig) *ledgerRun {
	return &ledgerRun{t: t, g: mustGuardrails(t, GuardrailConfig{}, pc), now: mustTime(t, "2026-06-10T00:30:00Z"),
		store: simStore{st: State{Features: map[string]any{}}}}
}

// decline reports a decline of p at the current time and returns the decision.
func (r *ledgerRun) decline(p PaymentFailure) (*Input, *Result) {
	r.t.Helper()
	r.n++
	in := payInput(r.t)
	in.Event.ID = fmt.Sprint("p", r.n)
	in.Event.Payment = &p
	in.Now = r.now
	in.State = r.store.clone()
	res := simDecide(r.g, in, payCandidates())
	if err := r.store.commit(res.Effects); err != nil {
		r.t.Fatalf("decline %d: commit() = %v, want the checks to hold on the state the decision read", r.n, err)
	}
	return in, res
}

func visa51() PaymentFailure {
	return PaymentFailure{DeclineCode: "51", Network: NetworkVisa, AmountMinor: 4999, Currency: "GBP", Acquirer: "acq-a",
		CardRef: "tok_1", Initiator: InitiatorMerchant, MerchantID: "m1"}
}

func TestLedgerVisa25Declines(t *testing.T) {
	tests := []struct {
		name        string
		pc          PaymentConfig
		wantRetries int
		wantCode    string
	}{
		{"network limit", PaymentConfig{RetryLimits: map[string]int{"later": 20}, Backoff: []string{"1h"}}, 20, CodeNetworkRetryLimit},
		{"business limit of the default policy", PaymentConfig{Backoff: []string{"1h"}}, 4, CodeRetryLimit},
		{"lowered network limit", PaymentConfig{RetryLimits: map[string]int{"later": 20}, NetworkLimits: NetworkLimits{VisaReattempts30d: ptr(15)}, Backoff: []string{"1h"}}, 15, CodeNetworkRetryLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newLedgerRun(t, tt.pc)
			retries := 0
			for i := range 25 {
				_, res := r.decline(visa51())
				switch res.Action {
				case ActionRetry:
					retries++
					if i >= tt.wantRetries {
						t.Errorf("decline %d: RETRY after %d retries, want at most %d", i+1, retries-1, tt.wantRetries)
					}
					if res.Retry.Attempt != retries {
						t.Errorf("decline %d: retry attempt %d, want %d", i+1, res.Retry.Attempt, retries)
					}
					r.now = res.Retry.NotBefore
				case ActionMessage, ActionSuppress: // SUPPRESS once the message caps are full too
					// The first answer without a retry names the limit that stopped it; later
					// ones may also reach the network's limit on declines.
					want := tt.wantCode
					if i > tt.wantRetries && !hasReason(res.Reasons, want) {
						want = CodeNetworkRetryLimit
					}
					if !hasReason(res.Reasons, want) || !hasReason(res.Reasons, CodeSoftDecline) {
						t.Errorf("decline %d: %v with %v, want %s and %s", i+1, res.Action, codes(res.Reasons), want, CodeSoftDecline)
					}
					r.now = r.now.Add(time.Hour)
				default:
					t.Fatalf("decline %d: %v, want RETRY or MESSAGE", i+1, res.Action)
				}
			}
			if retries != tt.wantRetries {
				t.Errorf("25 Visa 51 declines gave %d RETRY answers, want %d", retries, tt.wantRetries)
			}
		})
	}
}

func TestLedgerNeverAfterCategory1(t *testing.T) {
	r := newLedgerRun(t, PaymentConfig{RetryLimits: map[string]int{"later": 20}})
	if _, res := r.decline(visa51()); res.Action != ActionRetry {
		t.Fatalf("first 51: %v, want RETRY", res.Action)
	}
	r.now = r.now.Add(4 * time.Hour)
	lost := visa51()
	lost.DeclineCode = "43"
	if _, res := r.decline(lost); res.Action == ActionRetry || !hasReason(res.Reasons, CodeHardDecline) {
		t.Fatalf("43 (stolen card): %v %v, want no RETRY and %s", res.Action, codes(res.Reasons), CodeHardDecline)
	}
	for i := range 10 {
		r.now = r.now.Add(day)
		p := visa51()
		p.MerchantID = fmt.Sprint("m", i) // any merchant, any amount
		p.AmountMinor = int64(100 + i)
		if _, res := r.decline(p); res.Action == ActionRetry {
			t.Fatalf("51 %d days after a category 1 decline: RETRY, want none", i+1)
		}
	}
}

func TestLedgerMAC25(t *testing.T) {
	r := newLedgerRun(t, PaymentConfig{Backoff: []string{"5m"}})
	p := visa51()
	p.Network, p.MerchantAdviceCode = NetworkMastercard, "25"
	in, res := r.decline(p)
	if res.Action != ActionRetry {
		t.Fatalf("MAC 25: %v %v, want RETRY", res.Action, codes(res.Reasons))
	}
	if min := in.Now.Add(24 * time.Hour); res.Retry.NotBefore.Before(min) {
		t.Errorf("MAC 25: not_before %s, want at least %s", res.Retry.NotBefore, min)
	}
	if !hasReason(res.Reasons, CodeMACRetryAfter) {
		t.Errorf("MAC 25: reasons %v, want %s", codes(res.Reasons), CodeMACRetryAfter)
	}
}

func TestLedgerMastercardDailyLimit(t *testing.T) {
	r := newLedgerRun(t, PaymentConfig{RetryLimits: map[string]int{"later": 20}, Backoff: []string{"5m"}})
	retries := 0
	for i := range 11 {
		p := visa51()
		p.Network = NetworkMastercard
		p.MerchantID = fmt.Sprint("m", i%3) // the daily limit is per card
		_, res := r.decline(p)
		if res.Action == ActionRetry {
			retries++
			if i >= 9 {
				t.Errorf("Mastercard decline %d in one day: RETRY, want none (its attempt would be the 11th)", i+1)
			}
		}
		r.now = r.now.Add(time.Hour)
	}
	if retries != 9 {
		t.Errorf("11 Mastercard declines in one day gave %d retries, want 9 (attempts 2 to 10)", retries)
	}
	// A new calendar day does not reset the count: the rolling 24 hours still hold 11 declines.
	r.now = mustTime(t, "2026-06-11T00:05:00Z")
	p := visa51()
	p.Network = NetworkMastercard
	if _, res := r.decline(p); res.Action == ActionRetry {
		t.Errorf("decline at 00:05 next day with 11 declines in the last 24h: RETRY, want none")
	}
}

func TestLedgerCITAndMITApart(t *testing.T) {
	r := newLedgerRun(t, PaymentConfig{RetryLimits: map[string]int{"later": 20}, Backoff: []string{"1h"}})
	for range 21 {
		r.decline(visa51())
		r.now = r.now.Add(time.Hour)
	}
	if _, res := r.decline(visa51()); res.Action == ActionRetry {
		t.Fatalf("MIT after 20 MIT retries: RETRY, want none")
	}
	cit := visa51()
	cit.Initiator = InitiatorCustomer
	if _, res := r.decline(cit); res.Action != ActionRetry {
		t.Errorf("first CIT decline after 20 MIT retries: %v %v, want RETRY", res.Action, codes(res.Reasons))
	}
}

func TestLedgerApprovalResets(t *testing.T) {
	r := newLedgerRun(t, PaymentConfig{Backoff: []string{"1h"}}) // LATER: 4 retries
	var lastIn *Input
	var lastRetry *Result
	for range 6 {
		in, res := r.decline(visa51())
		if res.Action == ActionRetry {
			lastIn, lastRetry = in, res
		}
		r.now = r.now.Add(time.Hour)
	}
	if _, res := r.decline(visa51()); res.Action == ActionRetry {
		t.Fatalf("after the business limit: RETRY, want none")
	}
	r.store.outcome(r.g.outcome(lastIn, lastRetry, OutcomeRetryApproved, r.now))
	r.now = r.now.Add(time.Hour)
	if _, res := r.decline(visa51()); res.Action != ActionRetry || res.Retry.Attempt != 1 {
		t.Errorf("after an approval: %v, want RETRY attempt 1", res.Action)
	}
}

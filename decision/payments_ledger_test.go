package decision

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/arbiter-dev/arbiter/policies"
)

// ledgerRun feeds declines for one customer through an engine, committing each decision's
// Effects to an in-memory store as the real store would (checks first).
type ledgerRun struct {
	t       *testing.T
	decide  func(*Input) *Result
	outcome func(in *Input, res *Result, o Outcome, now time.Time) OutcomeEffects
	store   simStore
	now     time.Time
	n       int
}

// ledgerEngine makes a ledgerRun whose policy has the given `payments:` section (YAML).
type ledgerEngine func(t *testing.T, payments string) *ledgerRun

// ledgerEngines are the engines every ledger scenario runs on: the guardrails with a
// retry-then-message pair of candidates, and Decide with the default policy's rules.
var ledgerEngines = map[string]ledgerEngine{
	"guardrails": func(t *testing.T, payments string) *ledgerRun {
		var pc PaymentConfig
		if err := decodeStrict([]byte(payments), &pc); err != nil {
			t.Fatalf("payments section: %v", err)
		}
		g := mustGuardrails(t, GuardrailConfig{}, pc)
		return newLedgerRun(t, func(in *Input) *Result { return simDecide(g, in, payCandidates()) }, g.outcome)
	},
	"Decide with the default policy": func(t *testing.T, payments string) *ledgerRun {
		p := defaultPolicyWithPayments(t, payments)
		return newLedgerRun(t, func(in *Input) *Result {
			res, err := p.Decide(context.Background(), in)
			if err != nil {
				t.Fatalf("Decide() = %v", err)
			}
			return res
		}, p.Outcome)
	},
}

func newLedgerRun(t *testing.T, decide func(*Input) *Result, outcome func(*Input, *Result, Outcome, time.Time) OutcomeEffects) *ledgerRun {
	return &ledgerRun{t: t, decide: decide, outcome: outcome, now: mustTime(t, "2026-06-10T00:30:00Z"),
		store: simStore{st: State{Features: map[string]any{}}}}
}

// defaultPolicyWithPayments compiles the default bundle with its `payments:` section
// replaced (an empty payments keeps the default bundle's own).
func defaultPolicyWithPayments(t *testing.T, payments string) *Policy {
	t.Helper()
	files := map[string][]byte{}
	err := fs.WalkDir(policies.Default, "default", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.Default, path)
		files[strings.TrimPrefix(path, "default/")] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if payments != "" {
		b := string(files["bundle.yaml"])
		i := strings.Index(b, "\npayments:")
		if i < 0 {
			t.Fatalf("the default bundle.yaml has no payments section to replace")
		}
		rest := b[i+1:]
		end := len(rest)
		for j, line := range strings.SplitAfter(rest, "\n")[1:] {
			if line != "" && line[0] != ' ' && line[0] != '#' && line[0] != '\n' {
				end = len(strings.Join(strings.SplitAfter(rest, "\n")[:j+1], ""))
				break
			}
		}
		indented := "  " + strings.ReplaceAll(strings.TrimSpace(payments), "\n", "\n  ")
		files["bundle.yaml"] = []byte(b[:i+1] + "payments:\n" + indented + "\n" + rest[end:])
	}
	p, err := ParsePolicy(files)
	if err != nil {
		t.Fatalf("ParsePolicy(default with payments %q) = %v", payments, err)
	}
	return p
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
	res := r.decide(in)
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
		payments    string
		wantRetries int
		wantCode    string
	}{
		{"network limit", "retry_limits: {later: 20}\nbackoff: [1h]", 20, CodeNetworkRetryLimit},
		{"business limit of the default policy", "retry_limits: {later: 4}\nbackoff: [1h]", 4, CodeRetryLimit},
		{"lowered network limit", "retry_limits: {later: 20}\nnetwork_limits: {visa_reattempts_30d: 15}\nbackoff: [1h]", 15, CodeNetworkRetryLimit},
	}
	for engine, mk := range ledgerEngines {
		for _, tt := range tests {
			t.Run(engine+"/"+tt.name, func(t *testing.T) {
				r := mk(t, tt.payments)
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
}

func TestLedgerNeverAfterCategory1(t *testing.T) {
	for engine, mk := range ledgerEngines {
		t.Run(engine, func(t *testing.T) {
			r := mk(t, "retry_limits: {later: 20}")
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
		})
	}
}

func TestLedgerMAC25(t *testing.T) {
	for engine, mk := range ledgerEngines {
		t.Run(engine, func(t *testing.T) {
			r := mk(t, "backoff: [5m]")
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
		})
	}
}

func TestLedgerMastercardDailyLimit(t *testing.T) {
	for engine, mk := range ledgerEngines {
		t.Run(engine, func(t *testing.T) {
			r := mk(t, "retry_limits: {later: 20}\nbackoff: [5m]")
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
		})
	}
}

func TestLedgerCITAndMITApart(t *testing.T) {
	for engine, mk := range ledgerEngines {
		t.Run(engine, func(t *testing.T) {
			r := mk(t, "retry_limits: {later: 20}\nbackoff: [1h]")
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
		})
	}
}

func TestLedgerApprovalResets(t *testing.T) {
	for engine, mk := range ledgerEngines {
		t.Run(engine, func(t *testing.T) {
			r := mk(t, "retry_limits: {later: 4}\nbackoff: [1h]")
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
			r.store.outcome(r.outcome(lastIn, lastRetry, OutcomeRetryApproved, r.now))
			r.now = r.now.Add(time.Hour)
			if _, res := r.decline(visa51()); res.Action != ActionRetry || res.Retry.Attempt != 1 {
				t.Errorf("after an approval: %v, want RETRY attempt 1", res.Action)
			}
		})
	}
}

func TestLedgerStopCheckOnRetry(t *testing.T) {
	stop := func(merchant string) []RetryStop {
		return []RetryStop{{CardRef: "tok_1", MerchantID: merchant, Until: mustTime(t, "2026-07-01T00:00:00Z"), ReasonCode: CodeRecurringEnded}}
	}
	tests := []struct {
		name       string
		mutate     func(p *PaymentFailure)
		stops      []RetryStop
		vulnerable bool
		wantRetry  bool
	}{
		{name: "soft decline", wantRetry: true},
		{name: "stop for another merchant", stops: stop("m2"), wantRetry: true},
		{name: "stop for this merchant", stops: stop("m1")},
		{name: "card-wide stop", stops: stop("")},
		{name: "NEVER decline", mutate: func(p *PaymentFailure) { p.DeclineCode = "14" }},
		{name: "Mastercard MAC 03", mutate: func(p *PaymentFailure) { p.Network, p.MerchantAdviceCode = NetworkMastercard, "03" }},
		{name: "vulnerable customer", vulnerable: true},
	}
	for engine, mk := range ledgerEngines {
		for _, tt := range tests {
			t.Run(engine+"/"+tt.name, func(t *testing.T) {
				r := mk(t, "")
				r.store.st.Stops = tt.stops
				if tt.vulnerable {
					r.store.st.Features["vulnerable"] = true
				}
				p := visa51()
				if tt.mutate != nil {
					tt.mutate(&p)
				}
				_, res := r.decline(p)
				if got := res.Action == ActionRetry; got != tt.wantRetry {
					t.Fatalf("decline: %v %v, want RETRY %v", res.Action, codes(res.Reasons), tt.wantRetry)
				}
				var want []StopCheck
				if tt.wantRetry {
					want = []StopCheck{{Name: checkRetryStop, CardRef: "tok_1", MerchantID: "m1", At: r.now}}
				}
				if diff := cmp.Diff(want, res.Effects.StopChecks, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("Effects.StopChecks of a %v answer mismatch (-want +got):\n%s", res.Action, diff)
				}
				// The engine's stop rule at decision time is the one the store applies.
				sc := StopCheck{CardRef: p.CardRef, MerchantID: p.MerchantID, At: r.now}
				if got, stopped := sc.Blocks(tt.stops), hasReason(res.Reasons, CodeRecurringEnded); got != stopped {
					t.Errorf("StopCheck.Blocks(%v) = %v, but the decision's reasons %v say stopped %v", tt.stops, got, codes(res.Reasons), stopped)
				}
			})
		}
	}
}

// TestLedgerConcurrentHardStop is the race the stop check closes: two declines of one card
// read the same state; the NEVER one commits its stop first, so the soft one's RETRY cannot
// commit, and deciding it again on the new state gives no RETRY.
func TestLedgerConcurrentHardStop(t *testing.T) {
	for engine, mk := range ledgerEngines {
		t.Run(engine, func(t *testing.T) {
			r := mk(t, "")
			read := r.store.clone()
			decide := func(id string, p PaymentFailure, st State) *Result {
				in := payInput(t)
				in.Event.ID, in.Event.Payment, in.Now, in.State = id, &p, r.now, st
				return r.decide(in)
			}
			hard := visa51()
			hard.DeclineCode = "14"
			soft := visa51()
			soft.MerchantID = "m2"
			never, retry := decide("never", hard, read), decide("soft", soft, read)
			if retry.Action != ActionRetry {
				t.Fatalf("soft decline on the state before the stop: %v, want RETRY", retry.Action)
			}
			if err := r.store.commit(never.Effects); err != nil {
				t.Fatalf("commit(NEVER decline) = %v", err)
			}
			if len(r.store.st.Stops) != 1 {
				t.Fatalf("NEVER decline set stops %v, want one card-wide stop", r.store.st.Stops)
			}
			if err := r.store.commit(retry.Effects); err == nil {
				t.Fatalf("commit(RETRY read before a concurrent hard stop) = nil, want a stop check conflict")
			}
			if again := decide("soft", soft, r.store.clone()); again.Action == ActionRetry || !hasReason(again.Reasons, CodeHardDecline) {
				t.Errorf("soft decline decided again after the stop: %v %v, want no RETRY and %s", again.Action, codes(again.Reasons), CodeHardDecline)
			}
		})
	}
}

package decision

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/arbiter-dev/arbiter/policies"
)

var (
	invariantSteps = flag.Int("invariant.steps", 4000, "steps of TestInvariants")
	invariantSeed  = flag.Uint64("invariant.seed", 1, "random seed of TestInvariants")
)

// simCustomer is one customer of the invariant test: what callers say about them, their
// stored state, and the decisions made for them.
type simCustomer struct {
	id        string
	tz        string
	consents  []Consent
	preferred []Channel
	store     simStore
	past      []simPast
	// stops are the hard stops the test itself derives from the declines it sent:
	// card (and merchant, when set) -> until.
	stops []RetryStop
}

type simPast struct {
	in  *Input
	res *Result
}

var simZones = []string{"Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Adelaide", "Asia/Kathmandu", "", "Not/AZone"}

var simCodes = []string{"51", "05", "91", "96", "61", "19", "04", "43", "54", "59", "1A", "N7", "R0", "R1", "03", "ZZ", "13"}

var simMACs = []string{"", "", "", "01", "02", "03", "21", "24", "25", "26", "30"}

// TestInvariants drives random events, outcomes, feature changes and clock steps for a few
// customers through the engine, applying every decision's Effects to an in-memory store, and
// checks after every decision, independently of the guardrails' own code, that no message
// goes out in quiet hours, over a cap, without consent, to an opted-out customer or
// automatically to a vulnerable one, and that no retry breaks a card-network rule.
//
// It runs twice: through Decide with the default policy, and with hand-built candidates (a
// retry and a message on every decline) under raised business limits, which drives the
// card-network limits themselves. Run more steps with -invariant.steps=N and another seed
// with -invariant.seed=S.
func TestInvariants(t *testing.T) {
	t.Run("default policy", func(t *testing.T) {
		p := DefaultPolicy()
		runInvariants(t, p.guards, func(in *Input, _ []Candidate) *Result {
			res, err := p.Decide(context.Background(), in)
			if err != nil {
				t.Fatalf("Decide() = %v", err)
			}
			return res
		})
	})
	// The same walk, deciding each event twice: on the whole state and on the state Narrow
	// keeps (the server's path). The answers, effects and explanations must match.
	t.Run("narrowed state", func(t *testing.T) {
		p := countingPolicy(t)
		ledgers, recents, fired := 0, 0, map[string]int{}
		runInvariants(t, p.guards, func(in *Input, _ []Candidate) *Result {
			full, err := p.Decide(context.Background(), in)
			if err != nil {
				t.Fatalf("Decide() = %v", err)
			}
			nin := *in
			nin.Explain = true
			nin.State.Ledger, nin.State.Recent = slices.Clone(in.State.Ledger), slices.Clone(in.State.Recent)
			Narrow(&nin)
			if len(nin.State.Ledger) < len(in.State.Ledger) {
				ledgers++
			}
			if len(nin.State.Recent) < len(in.State.Recent) {
				recents++
			}
			got, err := p.Decide(context.Background(), &nin)
			if err != nil {
				t.Fatalf("Decide(narrowed) = %v", err)
			}
			want := full
			if !in.Explain {
				ein := *in
				ein.Explain = true
				if want, err = p.Decide(context.Background(), &ein); err != nil {
					t.Fatalf("Decide(explain) = %v", err)
				}
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("event %s (%v; ledger %d entries, %d kept; recent %d, %d kept): the narrowed state changes the decision (-whole +narrowed):\n%s",
					in.Event.ID, in.Event.Type, len(in.State.Ledger), len(nin.State.Ledger), len(in.State.Recent), len(nin.State.Recent), diff)
			}
			for _, r := range full.Reasons {
				fired[r.Code]++
			}
			return full
		})
		if ledgers < *invariantSteps/10 || recents < *invariantSteps/10 {
			t.Errorf("only %d decisions had ledger entries and %d recent decisions to drop: the walk does not exercise Narrow", ledgers, recents)
		}
		// The counts must decide some answers, or a wrong count would go unseen.
		if fired["BUSY_DAY"] == 0 || fired["MANY_DECLINES"] == 0 || fired["ROUTE_PAYMENTS_SUPPORT"] == 0 {
			t.Errorf("reasons BUSY_DAY %d, MANY_DECLINES %d, ROUTE_PAYMENTS_SUPPORT %d times: the counts never decided an answer",
				fired["BUSY_DAY"], fired["MANY_DECLINES"], fired["ROUTE_PAYMENTS_SUPPORT"])
		}
	})
	t.Run("hand-built candidates", func(t *testing.T) {
		g := mustGuardrails(t, GuardrailConfig{}, PaymentConfig{RetryLimits: map[string]int{"later": 20, "generic": 20}, Backoff: []string{"10m", "1h"}})
		runInvariants(t, g, func(in *Input, cands []Candidate) *Result { return simDecide(g, in, cands) })
	})
}

// countingPolicy is the default bundle with rules on every event type that read the counts
// Narrow keeps (recent.declines_30d and recent.decisions_24h).
func countingPolicy(t *testing.T) *Policy {
	t.Helper()
	files := map[string][]byte{}
	err := fs.WalkDir(policies.Default, "default", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(path, "default/tests/") {
			return err
		}
		files[strings.TrimPrefix(path, "default/")], err = fs.ReadFile(policies.Default, path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files["counting.yaml"] = []byte(`rules:
  - id: busy-day
    description: A customer with many decisions today talks to a person.
    on: [RISKY_LOGIN, MESSAGE_UNOPENED, CHECKOUT_ABANDONED, INBOUND_CONTACT]
    when: recent.decisions_24h >= 5
    priority: 750
    action: ESCALATE
    escalate: {queue: busy, priority: 4}
    reasons: [BUSY_DAY]
  - id: many-declines
    description: Many declines on any card this month hold off reminders.
    on: [INVOICE_OVERDUE, CARD_EXPIRING, CHECKOUT_ABANDONED, MESSAGE_UNOPENED]
    when: recent.declines_30d >= 5
    priority: 720
    action: SUPPRESS
    reasons: [MANY_DECLINES]
`)
	p, err := ParsePolicy(files)
	if err != nil {
		t.Fatalf("ParsePolicy(default + counting.yaml): %v", err)
	}
	return p
}

func runInvariants(t *testing.T, g *guardrails, decide func(*Input, []Candidate) *Result) {
	r := rand.New(rand.NewPCG(*invariantSeed, 7))
	now := mustTime(t, "2026-03-01T12:00:00Z") // spans both DST changes of 2026 with enough steps
	var cs []*simCustomer
	for i := range 4 {
		c := &simCustomer{id: fmt.Sprint("c", i), tz: simZones[r.IntN(len(simZones))], store: simStore{st: State{Features: map[string]any{}}}}
		for ch := ChannelEmail; ch < channelCount; ch++ {
			for p := PurposeService; p < purposeCount; p++ {
				if r.IntN(3) > 0 {
					c.consents = append(c.consents, Consent{Channel: ch, Purpose: p, Granted: r.IntN(5) > 0})
				}
			}
		}
		for _, ch := range r.Perm(int(channelCount) - 1)[:1+r.IntN(3)] {
			c.preferred = append(c.preferred, Channel(ch+1))
		}
		cs = append(cs, c)
	}

	counts := map[Action]int{}
	// A burst is a run of soft declines for one customer minutes apart, as a gateway retrying
	// hard produces: it drives the ledgers to their limits.
	burst, bc := 0, cs[0]
	for step := range *invariantSteps {
		if burst == 0 && r.IntN(150) == 0 {
			burst, bc = 20+r.IntN(30), cs[r.IntN(len(cs))]
		}
		// Clock: mostly minutes to hours, sometimes days.
		switch {
		case burst > 0:
			now = now.Add(time.Duration(r.IntN(20)) * time.Minute)
		case r.IntN(10) == 0:
			now = now.Add(time.Duration(1+r.IntN(3)) * day)
		default:
			now = now.Add(time.Duration(r.IntN(180)) * time.Minute)
		}
		c := cs[r.IntN(len(cs))]
		if burst > 0 {
			c = bc
		}
		c.store.expire(now)
		switch k := r.IntN(20); {
		case burst > 0:
		case k < 3:
			simFeatureChange(r, c)
			continue
		case k < 6:
			simOutcome(r, g, c, now)
			continue
		}

		in := &Input{
			Event:    Event{ID: fmt.Sprint("e", step), Type: EventType(1 + r.IntN(int(eventTypeCount)-1))},
			Customer: Customer{ID: c.id, Timezone: c.tz, Consents: c.consents, PreferredChannels: c.preferred, Vulnerable: r.IntN(30) == 0},
			State:    c.store.clone(),
			Now:      now,
			Degraded: r.IntN(25) == 0,
		}
		if r.IntN(3) == 0 || burst > 0 {
			in.Event.Type = EventPaymentFailed
		}
		if in.Degraded {
			in.State = State{}
		}
		var cands []Candidate
		if in.Event.Type == EventPaymentFailed {
			in.Event.Payment = &PaymentFailure{
				DeclineCode:        simCodes[r.IntN(len(simCodes))],
				Network:            Network(1 + r.IntN(4)),
				MerchantAdviceCode: simMACs[r.IntN(len(simMACs))],
				AmountMinor:        int64(1000 * (1 + r.IntN(2))),
				Currency:           "GBP",
				Acquirer:           "acq-a",
				CardRef:            fmt.Sprint("tok_", r.IntN(2)),
				Initiator:          Initiator(1 + r.IntN(2)),
				MerchantID:         fmt.Sprint("m", r.IntN(2)),
			}
			if burst > 0 {
				burst--
				in.Event.Payment.DeclineCode = []string{"51", "05", "91"}[r.IntN(3)]
				in.Event.Payment.MerchantAdviceCode = ""
				// One credential per burst, on one network.
				pp := in.Event.Payment
				pp.CardRef, pp.AmountMinor, pp.Initiator, pp.MerchantID = "tok_0", 1000, InitiatorMerchant, "m0"
				pp.Network = NetworkVisa
				if bc.id == "c1" || bc.id == "c3" {
					pp.Network = NetworkMastercard
				}
			}
			cands = append(cands,
				Candidate{RuleID: "retry", Priority: 10, Action: ActionRetry, Delay: time.Duration(r.IntN(3)) * time.Hour},
				Candidate{RuleID: "ask", Priority: 5, Action: ActionMessage, Purpose: PurposeService})
		} else {
			var chans []Channel
			for range r.IntN(4) {
				chans = append(chans, Channel(r.IntN(int(channelCount)+1)))
			}
			cands = append(cands,
				Candidate{RuleID: "msg", Priority: 5, Action: ActionMessage, Purpose: Purpose(r.IntN(int(purposeCount) + 1)),
					Channels: chans, Delay: time.Duration(r.IntN(4)) * 3 * time.Hour},
				Candidate{RuleID: "quiet", Priority: 0, Action: ActionSuppress})
		}

		if r.IntN(4) == 0 {
			in.Event.Attributes = map[string]string{
				"intent":  []string{"fraud", "payment", "other"}[r.IntN(3)],
				"channel": []string{"EMAIL", "SMS", "PUSH"}[r.IntN(3)],
			}
		}
		res := decide(in, cands)
		counts[res.Action]++
		checkDecision(t, step, g, c, in, res)
		if err := c.store.commit(res.Effects); err != nil {
			t.Fatalf("step %d: commit() = %v, want the decision's checks to hold on the state it read", step, err)
		}
		c.store.record(DecisionSummary{DecisionID: fmt.Sprint("d", step), EventID: in.Event.ID, EventType: in.Event.Type,
			Action: res.Action, ReasonCodes: codes(res.Reasons), DecidedAt: now})
		checkCaps(t, step, g, c)
		if res.Action == ActionRetry {
			checkLedger(t, step, c, in)
		}
		simRecordStops(c, in)
		c.past = append(c.past, simPast{in: in, res: res})
		if t.Failed() {
			t.Fatalf("stopping at step %d (seed %d)", step, *invariantSeed)
		}
	}
	t.Logf("actions over %d steps: retry %d, message %d, escalate %d, suppress %d", *invariantSteps,
		counts[ActionRetry], counts[ActionMessage], counts[ActionEscalate], counts[ActionSuppress])
	if counts[ActionRetry] == 0 || counts[ActionMessage] == 0 || counts[ActionEscalate] == 0 || counts[ActionSuppress] == 0 {
		t.Errorf("the random walk never produced some action: %v; the test is not exercising the guardrails", counts)
	}
}

func simFeatureChange(r *rand.Rand, c *simCustomer) {
	ft := c.store.st.Features
	vals := []any{true, false, false, nil, nil, nil, nil, "yes"}
	rare := []any{true, false, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}
	switch r.IntN(8) {
	case 6:
		ft["days_past_due"] = float64(r.IntN(90))
	case 7:
		ft["risk_score"] = r.Float64()
	case 0:
		ft["opted_out"] = vals[r.IntN(len(vals))]
	case 1:
		ft["fraud_hold"] = vals[r.IntN(len(vals))]
	case 2:
		ft["vulnerable"] = rare[r.IntN(len(rare))]
	case 3:
		ft["hardship"] = rare[r.IntN(len(rare))]
	case 4:
		ft["timezone"] = simZones[r.IntN(len(simZones))]
	case 5:
		ch, p := Channel(1+r.IntN(int(channelCount)-1)), Purpose(1+r.IntN(int(purposeCount)-1))
		ft["consent_"+ch.name()+"_"+p.name()] = vals[r.IntN(len(vals))]
	}
	for k, v := range ft {
		if v == nil {
			delete(ft, k)
		}
	}
}

func simOutcome(r *rand.Rand, g *guardrails, c *simCustomer, now time.Time) {
	if len(c.past) == 0 {
		return
	}
	p := c.past[r.IntN(len(c.past))]
	var o Outcome
	switch p.res.Action {
	case ActionMessage:
		o = []Outcome{OutcomeDelivered, OutcomeDeliveryFailed, OutcomeOpened}[r.IntN(3)]
	case ActionRetry:
		o = []Outcome{OutcomeRetryApproved, OutcomeRetryDeclined, OutcomePaid}[r.IntN(3)]
	default:
		return
	}
	c.store.outcome(g.outcome(p.in, p.res, o, now))
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	}
	return true // anything else set counts, as the guardrails fail closed
}

// checkDecision asserts the message and retry invariants of one decision against what the
// test knows, without the guardrails' own helpers.
func checkDecision(t *testing.T, step int, g *guardrails, c *simCustomer, in *Input, res *Result) {
	t.Helper()
	ft := in.State.Features
	vulnerable := in.Customer.Vulnerable || truthy(ft["vulnerable"]) || truthy(ft["hardship"])
	hold := (truthy(ft["fraud_hold"]) || in.Event.Type == EventFraudFlagRaised) && in.Event.Type != EventFraudFlagCleared
	if in.Degraded && (res.Action == ActionMessage || res.Action == ActionRetry) {
		t.Errorf("step %d: %v with the state unknown", step, res.Action)
	}
	if vulnerable && collectionsEvent(in.Event.Type) && res.Action != ActionEscalate {
		t.Errorf("step %d: vulnerable customer, %v event: %v, want ESCALATE", step, in.Event.Type, res.Action)
	}
	switch res.Action {
	case ActionMessage:
		m := res.Message
		p := m.Purpose
		restricted := p == PurposeCollections || p == PurposeMarketing
		if p != PurposeSecurity && truthy(ft["opted_out"]) {
			t.Errorf("step %d: %s message to an opted-out customer", step, p.name())
		}
		if restricted && vulnerable {
			t.Errorf("step %d: automated %s message to a vulnerable customer", step, p.name())
		}
		if restricted && hold {
			t.Errorf("step %d: %s message under a fraud hold", step, p.name())
		}
		for _, ch := range append([]Channel{m.Channel}, m.FallbackChannels...) {
			if !simConsented(in, ch, p) {
				t.Errorf("step %d: %s %s message without consent", step, ch.name(), p.name())
			}
			for _, f := range in.State.FailingChannels {
				if f.Channel == ch && f.Until.After(in.Now) {
					t.Errorf("step %d: message on failing channel %s", step, ch.name())
				}
			}
		}
		if m.SendAt.Before(in.Now) {
			t.Errorf("step %d: send_at %s before now %s", step, m.SendAt, in.Now)
		}
		if p != PurposeSecurity {
			zone := in.Customer.Timezone
			if zone == "" {
				zone, _ = ft["timezone"].(string)
			}
			loc, err := time.LoadLocation(zone)
			if zone == "" || zone == "Local" || err != nil {
				t.Errorf("step %d: %s message with timezone %q unknown", step, p.name(), zone)
				return
			}
			if h := m.SendAt.In(loc).Hour(); h >= 21 || h < 8 {
				t.Errorf("step %d: %s message at %s local, inside quiet hours", step, p.name(), m.SendAt.In(loc))
			}
		}
	case ActionRetry:
		p := in.Event.Payment
		if vulnerable || hold {
			t.Errorf("step %d: automated retry for a vulnerable customer or under a fraud hold", step)
		}
		if cl := Classify(p.Network, p.DeclineCode, p.MerchantAdviceCode, p.Initiator); cl != ClassLater && cl != ClassGeneric {
			t.Errorf("step %d: retry of a %s decline (%s, MAC %q)", step, cl, p.DeclineCode, p.MerchantAdviceCode)
		}
		for _, s := range c.stops {
			if s.CardRef == p.CardRef && (s.MerchantID == "" || s.MerchantID == p.MerchantID) && s.Until.After(in.Now) {
				t.Errorf("step %d: retry of %s within 30 days of a hard stop (%s)", step, p.CardRef, s.ReasonCode)
			}
		}
		if p.Network == NetworkMastercard {
			if w := macWait(codeKey(p.MerchantAdviceCode), 72*time.Hour); res.Retry.NotBefore.Before(in.Now.Add(w)) {
				t.Errorf("step %d: retry at %s before the MAC %s wait %s", step, res.Retry.NotBefore, p.MerchantAdviceCode, w)
			}
		}
	}
}

// simConsented is the consent rule, restated.
func simConsented(in *Input, ch Channel, p Purpose) bool {
	yes, no := false, false
	for _, c := range in.Customer.Consents {
		if c.Channel == ch && c.Purpose == p {
			yes, no = yes || c.Granted, no || !c.Granted
		}
	}
	if v, ok := in.State.Features["consent_"+ch.name()+"_"+p.name()]; ok && v != nil {
		if v == true {
			yes = true
		} else {
			no = true
		}
	}
	return !no && (yes || p == PurposeSecurity)
}

// checkCaps asserts that no window of any configured cap holds more messages than its limit.
func checkCaps(t *testing.T, step int, g *guardrails, c *simCustomer) {
	t.Helper()
	msgs := c.store.st.Messages
	if len(g.capList) < len(defaultCaps()) {
		t.Fatalf("%d caps configured, want at least the %d defaults", len(g.capList), len(defaultCaps()))
	}
	for _, d := range g.capList {
		for _, m := range msgs {
			if !d.check.Matches(m) {
				continue
			}
			n := 0
			for _, o := range msgs {
				if d.check.Matches(o) && !o.At.Before(m.At) && !o.At.After(m.At.Add(d.window)) {
					n++
				}
			}
			if n > d.check.Limit {
				t.Errorf("step %d: %d messages within %s from %s, over cap %s (%d)", step, n, d.window, m.At, d.check.Name, d.check.Limit)
			}
		}
	}
}

// checkLedger asserts the card-network limits after a retry was committed.
func checkLedger(t *testing.T, step int, c *simCustomer, in *Input) {
	t.Helper()
	p, now, led := in.Event.Payment, in.Now, c.store.st.Ledger
	count := func(k LedgerKind, since time.Time, match func(e LedgerEntry) bool) int {
		n := 0
		for _, e := range led {
			if e.Kind == k && e.CardRef == p.CardRef && !e.At.Before(since) && !e.At.After(now) && match(e) {
				n++
			}
		}
		return n
	}
	if p.Network != NetworkMastercard {
		visa := func(e LedgerEntry) bool {
			return e.AmountMinor == p.AmountMinor && e.Currency == p.Currency && e.Initiator == p.Initiator
		}
		if n := count(LedgerRetry, now.Add(-30*day), visa); n > visaReattemptsMax {
			t.Errorf("step %d: %d Visa reattempts in 30 days, over %d", step, n, visaReattemptsMax)
		}
		if n := count(LedgerDecline, now.Add(-30*day), visa); n > visaReattemptsMax {
			t.Errorf("step %d: a retry after %d declines in 30 days: reattempt %d, over %d", step, n, n, visaReattemptsMax)
		}
	}
	if p.Network != NetworkVisa {
		any := func(LedgerEntry) bool { return true }
		if n := count(LedgerDecline, now.Add(-day), any); n+1 > mcDeclines24hMax {
			t.Errorf("step %d: a retry after %d declines in 24h: attempt %d, over %d", step, n, n+1, mcDeclines24hMax)
		}
		same := func(e LedgerEntry) bool { return e.MerchantID == p.MerchantID && e.AmountMinor == p.AmountMinor }
		if n := count(LedgerDecline, now.Add(-30*day), same); n+1 > mcAttempts30dMax {
			t.Errorf("step %d: a retry after %d attempts in 30 days, over %d", step, n, mcAttempts30dMax)
		}
	}
}

// simRecordStops remembers the hard stops a decline implies, from the reference rules.
func simRecordStops(c *simCustomer, in *Input) {
	p := in.Event.Payment
	if p == nil || in.Degraded {
		return
	}
	until := in.Now.Add(30 * day)
	mc := p.Network == NetworkMastercard
	switch {
	case mc && (p.MerchantAdviceCode == "21"):
		c.stops = append(c.stops, RetryStop{CardRef: p.CardRef, MerchantID: p.MerchantID, Until: until, ReasonCode: "MAC 21"})
	case mc && p.MerchantAdviceCode == "03":
		c.stops = append(c.stops, RetryStop{CardRef: p.CardRef, Until: until, ReasonCode: "MAC 03"})
	case slices.Contains([]string{"R0", "R1", "R3"}, p.DeclineCode):
		c.stops = append(c.stops, RetryStop{CardRef: p.CardRef, MerchantID: p.MerchantID, Until: until, ReasonCode: p.DeclineCode})
	case visaCategory(p.DeclineCode) == 1:
		c.stops = append(c.stops, RetryStop{CardRef: p.CardRef, Until: until, ReasonCode: "category 1 " + p.DeclineCode})
	}
}

package decision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// TestCase is one policy test shipped with a bundle: an event, the customer, the stored
// state and the time, and what the policy must answer. Times in the stored state are given
// relative to now with `ago` (a duration such as "3h" or "2d") or absolutely with `at`.
type TestCase struct {
	Name     string       `yaml:"name"`
	Now      time.Time    `yaml:"now"`
	Event    TestEvent    `yaml:"event"`
	Customer TestCustomer `yaml:"customer"`
	State    TestState    `yaml:"state"`
	Degraded bool         `yaml:"degraded"`
	// Explain decides with the explanation on (the answer must not change).
	Explain bool       `yaml:"explain"`
	Expect  TestExpect `yaml:"expect"`
	// File is the bundle file the case came from.
	File string `yaml:"-"`
}

// TestEvent is the event of a test case; enumerations are spelled as in rules ("PAYMENT_FAILED").
type TestEvent struct {
	ID         string            `yaml:"id"`
	Type       string            `yaml:"type"`
	Source     string            `yaml:"source"`
	Attributes map[string]string `yaml:"attributes"`
	Payment    *TestPayment      `yaml:"payment"`
}

// TestPayment is the payment failure of a test event.
type TestPayment struct {
	DeclineCode        string `yaml:"decline_code"`
	Network            string `yaml:"network"`
	MerchantAdviceCode string `yaml:"merchant_advice_code"`
	AmountMinor        int64  `yaml:"amount_minor"`
	Currency           string `yaml:"currency"`
	Acquirer           string `yaml:"acquirer"`
	CardRef            string `yaml:"card_ref"`
	Initiator          string `yaml:"initiator"`
	MerchantID         string `yaml:"merchant_id"`
}

// TestCustomer is the customer of a test case.
type TestCustomer struct {
	ID                string        `yaml:"id"`
	Timezone          string        `yaml:"timezone"`
	Consents          []TestConsent `yaml:"consents"`
	PreferredChannels []string      `yaml:"preferred_channels"`
	Vulnerable        bool          `yaml:"vulnerable"`
	Locale            string        `yaml:"locale"`
	Segment           string        `yaml:"segment"`
}

// TestConsent is one consent answer; Channel may be "ALL" for every channel.
type TestConsent struct {
	Channel string `yaml:"channel"`
	Purpose string `yaml:"purpose"`
	Granted bool   `yaml:"granted"`
}

// TestState is the stored state of a test case.
type TestState struct {
	Features        map[string]any    `yaml:"features"`
	Messages        []TestMessage     `yaml:"messages"`
	Ledger          []TestLedgerEntry `yaml:"ledger"`
	Stops           []TestStop        `yaml:"stops"`
	FailingChannels []TestFailing     `yaml:"failing_channels"`
	Recent          []TestRecent      `yaml:"recent"`
}

// TestWhen places a stored item in time: Ago before the case's now, or At.
type TestWhen struct {
	Ago bundleDuration `yaml:"ago"`
	At  time.Time      `yaml:"at"`
}

func (w TestWhen) at(now time.Time) time.Time {
	if !w.At.IsZero() {
		return w.At
	}
	return now.Add(-time.Duration(w.Ago))
}

// TestMessage is a message slot reserved before the case.
type TestMessage struct {
	Channel  string `yaml:"channel"`
	Purpose  string `yaml:"purpose"`
	TestWhen `yaml:",inline"`
}

// TestLedgerEntry is a retry-ledger entry; Kind is "decline" or "retry", and the other
// fields default to the event's payment.
type TestLedgerEntry struct {
	Kind        string `yaml:"kind"`
	CardRef     string `yaml:"card_ref"`
	MerchantID  string `yaml:"merchant_id"`
	AmountMinor int64  `yaml:"amount_minor"`
	Currency    string `yaml:"currency"`
	Initiator   string `yaml:"initiator"`
	Network     string `yaml:"network"`
	Count       int    `yaml:"count"` // this many identical entries, one minute apart; 0 means 1
	TestWhen    `yaml:",inline"`
}

// TestStop is a stored retry stop, valid for For after now.
type TestStop struct {
	CardRef    string         `yaml:"card_ref"`
	MerchantID string         `yaml:"merchant_id"`
	For        bundleDuration `yaml:"for"`
	ReasonCode string         `yaml:"reason_code"`
}

// TestFailing marks a channel as failing for For after now.
type TestFailing struct {
	Channel string         `yaml:"channel"`
	For     bundleDuration `yaml:"for"`
}

// TestRecent is a past decision.
type TestRecent struct {
	EventType string   `yaml:"event_type"`
	Action    string   `yaml:"action"`
	Reasons   []string `yaml:"reasons"`
	TestWhen  `yaml:",inline"`
}

// TestExpect is what the policy must answer. Empty fields are not checked. Reasons must all
// be present (others may be too); NotReasons must all be absent.
type TestExpect struct {
	Action     string   `yaml:"action"`
	Channel    string   `yaml:"channel"`
	Template   string   `yaml:"template"`
	Purpose    string   `yaml:"purpose"`
	Queue      string   `yaml:"queue"`
	Acquirer   string   `yaml:"acquirer"`
	Reasons    []string `yaml:"reasons"`
	NotReasons []string `yaml:"not_reasons"`
	RuleID     string   `yaml:"rule"`
	// NotBefore and SendAt are exact times; MinDelay is a lower bound on either, after now.
	NotBefore time.Time      `yaml:"not_before"`
	SendAt    time.Time      `yaml:"send_at"`
	MinDelay  bundleDuration `yaml:"min_delay"`
	// Context lists keys that escalate.context must hold, with their values ("*": any).
	Context map[string]string `yaml:"context"`
	// Experiment and Arm are the experiment and arm the decision must be made in (Arm
	// "holdout" for the holdout). A case pins an arm by its customer id: the assignment is a
	// pure function of the experiment id and the customer id (docs/experiments.md).
	Experiment string `yaml:"experiment"`
	Arm        string `yaml:"arm"`
}

// check validates the names a case uses, so a typo fails at load rather than as a wrong
// decision.
func (tc *TestCase) check() error {
	_, err := tc.Input()
	if err != nil {
		return err
	}
	e := tc.Expect
	if bundleParseAction(e.Action) == ActionUnspecified {
		return fmt.Errorf("expect.action: %q must be RETRY, MESSAGE, ESCALATE or SUPPRESS", e.Action)
	}
	if e.Channel != "" && bundleParseChannel(e.Channel) == ChannelUnspecified {
		return fmt.Errorf("expect.channel: unknown channel %q", e.Channel)
	}
	if e.Purpose != "" && bundleParsePurpose(e.Purpose) == PurposeUnspecified {
		return fmt.Errorf("expect.purpose: unknown purpose %q", e.Purpose)
	}
	return nil
}

// Input converts the case to the engine's Input.
func (tc *TestCase) Input() (*Input, error) {
	if tc.Name == "" {
		return nil, errors.New("name: required")
	}
	if tc.Now.IsZero() {
		return nil, errors.New("now: required")
	}
	now := tc.Now
	in := &Input{Now: now, Degraded: tc.Degraded, Explain: tc.Explain}
	ev := tc.Event
	in.Event = Event{ID: cmpOr(ev.ID, "evt-"+strings.ReplaceAll(tc.Name, " ", "-")), Type: bundleParseEventType(ev.Type),
		Source: ev.Source, Attributes: ev.Attributes}
	if in.Event.Type == EventUnspecified {
		return nil, fmt.Errorf("event.type: unknown event type %q", ev.Type)
	}
	if p := ev.Payment; p != nil {
		pf := &PaymentFailure{DeclineCode: p.DeclineCode, MerchantAdviceCode: p.MerchantAdviceCode, AmountMinor: p.AmountMinor,
			Currency: p.Currency, Acquirer: p.Acquirer, CardRef: p.CardRef, MerchantID: p.MerchantID,
			Network: bundleParseNetwork(p.Network), Initiator: bundleParseInitiator(p.Initiator)}
		if pf.Network == NetworkUnspecified && p.Network != "" {
			return nil, fmt.Errorf("event.payment.network: unknown network %q", p.Network)
		}
		if pf.Initiator == InitiatorUnspecified && p.Initiator != "" {
			return nil, fmt.Errorf("event.payment.initiator: unknown initiator %q", p.Initiator)
		}
		in.Event.Payment = pf
	}
	cu := tc.Customer
	in.Customer = Customer{ID: cmpOr(cu.ID, "cust-test"), Timezone: cu.Timezone, Vulnerable: cu.Vulnerable, Locale: cu.Locale, Segment: cu.Segment}
	for _, c := range cu.Consents {
		pu := bundleParsePurpose(c.Purpose)
		if pu == PurposeUnspecified {
			return nil, fmt.Errorf("customer.consents: unknown purpose %q", c.Purpose)
		}
		if strings.EqualFold(c.Channel, "ALL") {
			for ch := ChannelEmail; ch < channelCount; ch++ {
				in.Customer.Consents = append(in.Customer.Consents, Consent{Channel: ch, Purpose: pu, Granted: c.Granted})
			}
			continue
		}
		ch := bundleParseChannel(c.Channel)
		if ch == ChannelUnspecified {
			return nil, fmt.Errorf("customer.consents: unknown channel %q", c.Channel)
		}
		in.Customer.Consents = append(in.Customer.Consents, Consent{Channel: ch, Purpose: pu, Granted: c.Granted})
	}
	for _, c := range cu.PreferredChannels {
		ch := bundleParseChannel(c)
		if ch == ChannelUnspecified {
			return nil, fmt.Errorf("customer.preferred_channels: unknown channel %q", c)
		}
		in.Customer.PreferredChannels = append(in.Customer.PreferredChannels, ch)
	}
	st := tc.State
	if len(st.Features) > 0 {
		in.State.Features = make(map[string]any, len(st.Features))
		for k, v := range st.Features {
			in.State.Features[k] = jsonNumber(v)
		}
	}
	for _, m := range st.Messages {
		ch, pu := bundleParseChannel(m.Channel), bundleParsePurpose(m.Purpose)
		if ch == ChannelUnspecified || pu == PurposeUnspecified {
			return nil, fmt.Errorf("state.messages: unknown channel %q or purpose %q", m.Channel, m.Purpose)
		}
		in.State.Messages = append(in.State.Messages, SentMessage{DecisionID: "dec-test", Channel: ch, Purpose: pu, At: m.at(now)})
	}
	var pay PaymentFailure
	if in.Event.Payment != nil {
		pay = *in.Event.Payment
	}
	for _, l := range st.Ledger {
		e := LedgerEntry{Kind: LedgerDecline, CardRef: cmpOr(l.CardRef, pay.CardRef), MerchantID: cmpOr(l.MerchantID, pay.MerchantID),
			AmountMinor: l.AmountMinor, Currency: cmpOr(l.Currency, pay.Currency), Initiator: pay.Initiator, Network: pay.Network, At: l.at(now)}
		if e.AmountMinor == 0 {
			e.AmountMinor = pay.AmountMinor
		}
		switch strings.ToLower(l.Kind) {
		case "", "decline":
		case "retry":
			e.Kind = LedgerRetry
		default:
			return nil, fmt.Errorf("state.ledger: kind %q must be decline or retry", l.Kind)
		}
		if l.Initiator != "" {
			e.Initiator = bundleParseInitiator(l.Initiator)
		}
		if l.Network != "" {
			e.Network = bundleParseNetwork(l.Network)
		}
		for i := range max(l.Count, 1) {
			e.EventID = fmt.Sprintf("evt-ledger-%d-%d", len(in.State.Ledger), i)
			in.State.Ledger = append(in.State.Ledger, e)
			e.At = e.At.Add(-time.Minute)
		}
	}
	for _, s := range st.Stops {
		in.State.Stops = append(in.State.Stops, RetryStop{CardRef: cmpOr(s.CardRef, pay.CardRef), MerchantID: s.MerchantID,
			Until: now.Add(time.Duration(s.For)), ReasonCode: s.ReasonCode})
	}
	for _, f := range st.FailingChannels {
		ch := bundleParseChannel(f.Channel)
		if ch == ChannelUnspecified {
			return nil, fmt.Errorf("state.failing_channels: unknown channel %q", f.Channel)
		}
		in.State.FailingChannels = append(in.State.FailingChannels, ChannelFailure{Channel: ch, Until: now.Add(time.Duration(f.For))})
	}
	for i, r := range st.Recent {
		in.State.Recent = append(in.State.Recent, DecisionSummary{DecisionID: fmt.Sprintf("dec-recent-%d", i), EventID: fmt.Sprintf("evt-recent-%d", i),
			EventType: bundleParseEventType(r.EventType), Action: bundleParseAction(r.Action), ReasonCodes: r.Reasons, DecidedAt: r.at(now)})
	}
	return in, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// jsonNumber turns YAML integers into float64, as features read from the store are.
func jsonNumber(v any) any {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case uint64:
		return float64(n)
	}
	return v
}

// TestResult is the outcome of one test case.
type TestResult struct {
	Case     *TestCase
	Result   *Result
	Failures []string // empty when the case passed
}

// Passed reports whether the case passed.
func (r TestResult) Passed() bool { return len(r.Failures) == 0 }

// RunTest runs one case under the policy.
func (p *Policy) RunTest(ctx context.Context, tc *TestCase) TestResult {
	tr := TestResult{Case: tc}
	in, err := tc.Input()
	if err != nil {
		tr.Failures = append(tr.Failures, err.Error())
		return tr
	}
	Narrow(in) // as the server decides
	res, err := p.Decide(ctx, in)
	if err != nil {
		tr.Failures = append(tr.Failures, "Decide: "+err.Error())
		return tr
	}
	tr.Result = res
	tr.Failures = tc.Expect.compare(in, res)
	return tr
}

// RunTests runs every case the bundle ships, in order.
func (p *Policy) RunTests(ctx context.Context) []TestResult {
	out := make([]TestResult, 0, len(p.tests))
	for i := range p.tests {
		out = append(out, p.RunTest(ctx, &p.tests[i]))
	}
	return out
}

// compare returns what differs between the expectation and res.
func (e *TestExpect) compare(in *Input, res *Result) []string {
	var fails []string
	diff := func(field, got, want string) {
		if want != "" && !strings.EqualFold(got, want) {
			fails = append(fails, fmt.Sprintf("%s = %q, want %q", field, got, want))
		}
	}
	diff("action", bundleActionName(res.Action), strings.TrimPrefix(strings.ToUpper(e.Action), "ACTION_"))
	var ch, tmpl, purpose, queue, acq string
	var at time.Time
	if m := res.Message; m != nil {
		ch, tmpl, purpose, at = bundleChannelName(m.Channel), m.TemplateID, bundlePurposeName(m.Purpose), m.SendAt
	}
	if esc := res.Escalate; esc != nil {
		queue = esc.Queue
	}
	if r := res.Retry; r != nil {
		acq, at = r.Acquirer, r.NotBefore
	}
	diff("message.channel", ch, strings.TrimPrefix(strings.ToUpper(e.Channel), "CHANNEL_"))
	diff("message.template_id", tmpl, e.Template)
	diff("message.purpose", purpose, strings.TrimPrefix(strings.ToUpper(e.Purpose), "PURPOSE_"))
	diff("escalate.queue", queue, e.Queue)
	diff("retry.acquirer", acq, e.Acquirer)
	diff("experiment", res.Experiment.ID, e.Experiment)
	diff("experiment.arm", res.Experiment.Arm, e.Arm)
	codes := make([]string, 0, len(res.Reasons))
	rules := map[string]bool{}
	for _, r := range res.Reasons {
		codes = append(codes, r.Code)
		rules[r.RuleID] = true
	}
	for _, want := range e.Reasons {
		if !slices.Contains(codes, want) {
			fails = append(fails, fmt.Sprintf("reasons = %v, want %s among them", codes, want))
		}
	}
	for _, not := range e.NotReasons {
		if slices.Contains(codes, not) {
			fails = append(fails, fmt.Sprintf("reasons = %v, want no %s", codes, not))
		}
	}
	if e.RuleID != "" && !rules[e.RuleID] {
		fails = append(fails, fmt.Sprintf("reasons name rules %v, want %s", slices.Sorted(maps.Keys(rules)), e.RuleID))
	}
	if !e.NotBefore.IsZero() && (res.Retry == nil || !res.Retry.NotBefore.Equal(e.NotBefore)) {
		fails = append(fails, fmt.Sprintf("retry.not_before = %v, want %v", at, e.NotBefore))
	}
	if !e.SendAt.IsZero() && (res.Message == nil || !res.Message.SendAt.Equal(e.SendAt)) {
		fails = append(fails, fmt.Sprintf("message.send_at = %v, want %v", at, e.SendAt))
	}
	if d := time.Duration(e.MinDelay); d > 0 && at.Before(in.Now.Add(d)) {
		fails = append(fails, fmt.Sprintf("not_before/send_at = %v, want at least %v after now", at, d))
	}
	for k, want := range e.Context {
		var got string
		ok := false
		if res.Escalate != nil {
			got, ok = res.Escalate.Context[k]
		}
		if !ok || (want != "*" && got != want) {
			fails = append(fails, fmt.Sprintf("escalate.context[%s] = %q, want %q", k, got, want))
		}
	}
	return fails
}

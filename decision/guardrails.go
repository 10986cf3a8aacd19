package decision

import (
	"time"
)

// guardrails are the compliance and card-network rules that no policy can switch off. They
// interleave with arbitration: rules are evaluated in arbitration order, and each candidate
// action a rule proposes passes through apply at once (the first one left unblocked wins),
// which resolves its detail (channel, send time, retry time, acquirer) and blocks or modifies it
// with a stable reason code. A policy tunes them only within the bounds GuardrailConfig and
// PaymentConfig document. A *guardrails is immutable after newGuardrails except for its zone
// cache, and is safe for concurrent use.
type guardrails struct {
	quiet           [purposeCount]quietPeriod // SECURITY is exempt: an empty window
	capList         []compiledCap
	cooldown        time.Duration
	hardshipQueue   string
	defaultChannels []Channel
	consentKeys     [channelCount][purposeCount]string
	pay             payments
	locs            locationCache
}

// Guardrail names, used as the rule id of the reasons they add and in explanations.
const (
	grStore      = "guardrail:store"
	grOptOut     = "guardrail:opt_out"
	grConsent    = "guardrail:consent"
	grQuietHours = "guardrail:quiet_hours"
	grTimezone   = "guardrail:timezone"
	grCaps       = "guardrail:frequency_caps"
	grFraudHold  = "guardrail:fraud_hold"
	grVulnerable = "guardrail:vulnerable"
	grFailing    = "guardrail:failing_channels"
	grChannels   = "guardrail:channels"
	grPayments   = "guardrail:payments"
)

// MandatoryPriority is the priority of candidates the guardrails require (an escalation for a
// vulnerable customer). No policy rule can outrank it.
const MandatoryPriority = 1 << 30

// newGuardrails compiles the guardrail and payment sections of a policy bundle. Absent fields
// take their defaults; a value outside its documented bounds is a *ConfigError naming the YAML
// field.
func newGuardrails(gc GuardrailConfig, pc PaymentConfig) (*guardrails, error) {
	g := &guardrails{hardshipQueue: gc.HardshipQueue}
	if g.hardshipQueue == "" {
		g.hardshipQueue = hardshipQueueDef
	}
	def, err := quietWindow("guardrails.quiet_hours", QuietWindow{Start: gc.QuietHours.Start, End: gc.QuietHours.End},
		quietPeriod{start: quietStartDefault, end: quietEndDefault})
	if err != nil {
		return nil, err
	}
	for p := PurposeUnspecified; p < PurposeSecurity; p++ {
		g.quiet[p] = def
	}
	for name, w := range gc.QuietHours.Purposes {
		field := "guardrails.quiet_hours.purposes." + name
		p, ok := parsePurpose(name)
		if !ok {
			return nil, cfgErr(field, "unknown purpose")
		}
		if p == PurposeSecurity {
			return nil, cfgErr(field, "security notices are exempt from quiet hours")
		}
		if g.quiet[p], err = quietWindow(field, w, def); err != nil {
			return nil, err
		}
	}
	if g.capList, err = compileCaps(gc.Caps); err != nil {
		return nil, err
	}
	if g.cooldown, err = durationField("guardrails.failing_channel_cooldown", gc.FailingChannelCooldown,
		cooldownDefault, cooldownMin, cooldownMax); err != nil {
		return nil, err
	}
	if g.defaultChannels, err = compileChannels("guardrails.default_channels", gc.DefaultChannels); err != nil {
		return nil, err
	}
	for ch := ChannelEmail; ch < channelCount; ch++ {
		for p := PurposeService; p < purposeCount; p++ {
			g.consentKeys[ch][p] = "consent_" + ch.name() + "_" + p.name()
		}
	}
	if g.pay, err = compilePayments(pc); err != nil {
		return nil, err
	}
	return g, nil
}

// facts are what the guardrails work out once per decision. The policy engine reads class,
// ledger, counters, optedOut, fraudHold and vulnerable (as CEL inputs and in explanations).
type facts struct {
	// loc is the customer's zone; nil when unknown or invalid.
	loc *time.Location
	// class is the decline class of a payment-failed event; ClassNone otherwise.
	class DeclineClass
	// ledger is the retry ledger of the event's credential.
	ledger ledgerView
	// counters holds one value per configured cap, counted at Input.Now.
	counters []CounterValue
	// optedOut, fraudHold and vulnerable are the customer's protective flags. fraudHold
	// includes this event (raised or cleared).
	optedOut, fraudHold, vulnerable bool

	pay paymentFacts
}

// IsProtective reports whether the stored feature name is one of the protective flags the
// guardrails read: opted_out, fraud_hold, vulnerable and hardship. When set (IsSet), each stops
// or restricts contact, so an erasure keeps them.
func IsProtective(name string) bool {
	switch name {
	case "opted_out", "fraud_hold", "vulnerable", "hardship":
		return true
	}
	return false
}

// IsSet reads a protective feature. It fails closed: any value other than false, 0, "",
// "false", "0" or absent counts as set.
func IsSet(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != "" && x != "false" && x != "0"
	}
	return true
}

// timezone returns the customer's zone: the request's, else the `timezone` feature. An invalid
// request zone does not fall back to the feature: it is unknown.
func (g *guardrails) timezone(in *Input) *time.Location {
	if in.Customer.Timezone != "" {
		return g.locs.load(in.Customer.Timezone)
	}
	if s, ok := in.State.Features["timezone"].(string); ok {
		return g.locs.load(s)
	}
	return nil
}

// facts works out what the guardrails need once per decision (see fill).
func (g *guardrails) facts(in *Input) facts {
	var f facts
	g.fill(in, &f)
	return f
}

// fill works out the facts of in into f, reusing the memory of f.counters: an engine that
// keeps its facts in pooled scratch space calls fill instead of facts and saves an
// allocation per decision. Nothing else of f's previous content survives.
func (g *guardrails) fill(in *Input, f *facts) {
	ft := in.State.Features
	counters := f.counters[:0]
	// Field by field rather than *f = facts{...}: the ledger checks array is large and only
	// its first pay.nchecks entries are ever read.
	f.loc = g.timezone(in)
	f.class = ClassNone
	f.ledger = ledgerView{}
	f.optedOut = IsSet(ft["opted_out"])
	f.fraudHold = IsSet(ft["fraud_hold"])
	f.vulnerable = in.Customer.Vulnerable || IsSet(ft["vulnerable"]) || IsSet(ft["hardship"])
	f.pay.reset()
	switch in.Event.Type {
	case EventFraudFlagRaised:
		f.fraudHold = true
	case EventFraudFlagCleared:
		f.fraudHold = false
	}
	f.counters = g.countCaps(counters, in.State.Messages, in.Now)
	g.paymentFacts(in, f)
}

// countCaps returns one counter per configured cap over the reserved messages msgs at now,
// reusing dst's storage when it is large enough. A deferred message (at after now) counts in
// every window.
func (g *guardrails) countCaps(dst []CounterValue, msgs []SentMessage, now time.Time) []CounterValue {
	if cap(dst) < len(g.capList) {
		dst = make([]CounterValue, len(g.capList))
	}
	dst = dst[:len(g.capList)]
	for i := range g.capList {
		c := &g.capList[i]
		dst[i] = CounterValue{Name: c.check.Name, Channel: c.check.Channel, Purposes: c.check.Purposes,
			Window: c.window, Limit: c.check.Limit}
	}
	for j := range msgs {
		m := &msgs[j]
		age := now.Sub(m.At)
		for i := range g.capList {
			if c := &g.capList[i]; age <= c.window && c.check.Matches(*m) {
				dst[i].Count++
			}
		}
	}
	return dst
}

// collectionsEvent reports whether t is a payment or collections event: for a vulnerable
// customer these go to a human.
func collectionsEvent(t EventType) bool {
	return t == EventPaymentFailed || t == EventInvoiceOverdue || t == EventPaymentPlanMissed
}

// mandatory returns a candidate the guardrails require, or nil: for a vulnerable customer, a
// payment or collections event is escalated to the hardship queue at MandatoryPriority.
func (g *guardrails) mandatory(in *Input, f *facts) *Candidate {
	if !f.vulnerable || !collectionsEvent(in.Event.Type) {
		return nil
	}
	return &Candidate{
		RuleID:      grVulnerable,
		Priority:    MandatoryPriority,
		Order:       -1,
		Action:      ActionEscalate,
		Queue:       g.hardshipQueue,
		ReasonCodes: []string{CodeVulnerableCustomer},
	}
}

// apply resolves c's detail and blocks or modifies it, recording verdicts in tr when tr is set.
func (g *guardrails) apply(in *Input, f *facts, c *Candidate, tr *Explanation) {
	switch c.Action {
	case ActionMessage:
		g.applyMessage(in, f, c, tr)
	case ActionRetry:
		switch {
		case in.Degraded:
			g.block(c, tr, grStore, CodeStoreUnavailable, "state unknown: no automated retry")
		case f.vulnerable:
			g.block(c, tr, grVulnerable, CodeVulnerableCustomer, "vulnerable customer: no automated retry")
		case f.fraudHold:
			g.block(c, tr, grFraudHold, CodeFraudHold, "fraud hold: no automated retry")
		default:
			g.applyRetry(in, f, c, tr)
		}
	case ActionEscalate:
		c.Escalate = &Escalate{Queue: c.Queue, Priority: c.EscalatePriority, Context: c.Context}
		g.pass(tr, grChannels, c)
	case ActionSuppress:
		c.Suppress = &Suppress{}
		if c.SuppressFor > 0 {
			c.Suppress.Until = in.Now.Add(c.SuppressFor)
		}
	default:
		c.Blocked = true
		if c.Why == "" {
			c.Why = "unknown action"
		}
	}
}

// applyMessage runs the messaging guardrails in order: store, opt-out, vulnerable, fraud hold,
// timezone and quiet hours, then per channel consent, failing channels and frequency caps.
func (g *guardrails) applyMessage(in *Input, f *facts, c *Candidate, tr *Explanation) {
	p, restricted := strictPurpose(c.Purpose)
	switch {
	case in.Degraded:
		g.block(c, tr, grStore, CodeStoreUnavailable, "state unknown: no message")
		return
	case f.optedOut && p != PurposeSecurity:
		g.block(c, tr, grOptOut, CodeOptedOut, "customer opted out")
		return
	case f.vulnerable && restricted:
		g.block(c, tr, grVulnerable, CodeVulnerableCustomer, "vulnerable customer: no automated "+p.name()+" message")
		return
	case f.fraudHold && restricted:
		g.block(c, tr, grFraudHold, CodeFraudHold, "fraud hold: no "+p.name()+" message")
		return
	}

	sendAt := in.Now.Add(max(c.Delay, 0))
	deferred := false
	if p != PurposeSecurity {
		if f.loc == nil {
			g.block(c, tr, grTimezone, CodeTimezoneUnknown, "timezone unknown or invalid: no message now")
			return
		}
		sendAt, deferred = g.quiet[p].deferFrom(sendAt, f.loc)
	}

	channels := c.Channels
	if len(channels) == 0 {
		channels = in.Customer.PreferredChannels
	}
	if len(channels) == 0 {
		channels = g.defaultChannels
	}
	var (
		passing           [channelCount]Channel
		npass             int
		seen              uint16
		first             = ChannelUnspecified
		noConsent, failed int
		capped            int
		capName           string
	)
	for _, ch := range channels {
		if ch == ChannelUnspecified || ch >= channelCount || seen&(1<<ch) != 0 {
			continue
		}
		seen |= 1 << ch
		if first == ChannelUnspecified {
			first = ch
		}
		switch {
		case !g.consent(in, ch, p):
			noConsent++
		case g.failing(in, ch):
			failed++
		default:
			if name := g.capped(in, f, ch, p, sendAt); name != "" {
				capped++
				if capName == "" {
					capName = name
				}
				continue
			}
			passing[npass] = ch
			npass++
		}
	}
	if npass == 0 {
		if capped > 0 {
			g.block(c, tr, grCaps, CodeFrequencyCap, capName+" reached on every permitted channel")
		}
		if failed > 0 {
			g.block(c, tr, grFailing, CodeChannelFailing, "permitted channels are failing")
		}
		if noConsent > 0 || first == ChannelUnspecified {
			g.block(c, tr, grConsent, CodeNoConsent, "no channel with consent for "+p.name())
		}
		return
	}
	if passing[0] != first {
		g.modify(c, tr, grChannels, CodeChannelFallback, first.name()+" skipped, "+passing[0].name()+" used")
	}
	if deferred {
		g.modify(c, tr, grQuietHours, CodeQuietHours, "deferred to the end of quiet hours")
	}
	// One allocation for the message and its fallback list.
	mf := &messageWithFallback{m: Message{Channel: passing[0], TemplateID: c.TemplateID, Purpose: p, SendAt: sendAt}}
	if npass > 1 {
		n := copy(mf.fallback[:], passing[1:npass])
		mf.m.FallbackChannels = mf.fallback[:n:n]
	}
	c.Message = &mf.m
	g.pass(tr, grChannels, c)
}

// strictPurpose returns p, or MARKETING (the strictest purpose) for an unknown one, and
// whether it is restricted: COLLECTIONS and MARKETING, which a vulnerable customer or a fraud
// hold stops.
func strictPurpose(p Purpose) (Purpose, bool) {
	if p == PurposeUnspecified || p >= purposeCount {
		p = PurposeMarketing
	}
	return p, p == PurposeCollections || p == PurposeMarketing
}

// messageWithFallback holds a Message and the backing array of its fallback channels.
type messageWithFallback struct {
	m        Message
	fallback [channelCount - 1]Channel
}

// consent reports whether the customer allows messages of purpose p on ch. The request's
// consents and stored consent features (consent_<channel>_<purpose>, bool) both count; a denial
// in either wins. Without an answer, only SECURITY notices are allowed.
func (g *guardrails) consent(in *Input, ch Channel, p Purpose) bool {
	granted, denied := false, false
	for _, c := range in.Customer.Consents {
		if c.Channel == ch && c.Purpose == p {
			if c.Granted {
				granted = true
			} else {
				denied = true
			}
		}
	}
	if v, ok := in.State.Features[g.consentKeys[ch][p]]; ok && v != nil {
		if b, isBool := v.(bool); isBool && b {
			granted = true
		} else {
			denied = true // false, or malformed: fail closed
		}
	}
	switch {
	case denied:
		return false
	case granted:
		return true
	}
	return p == PurposeSecurity
}

// failing reports whether ch is cooling down after a delivery failure.
func (g *guardrails) failing(in *Input, ch Channel) bool {
	for _, fc := range in.State.FailingChannels {
		if fc.Channel == ch && fc.Until.After(in.Now) {
			return true
		}
	}
	return false
}

// capped returns the name of the first cap a message of purpose p on ch sent at sendAt would
// exceed, or "". The window ends at sendAt and counts every reserved message at or after its
// start, including deferred ones, so no window of any cap ever holds more than its limit.
func (g *guardrails) capped(in *Input, f *facts, ch Channel, p Purpose, sendAt time.Time) string {
	now := sendAt.Equal(in.Now) // the common case: the counters read at Now are the ones
	for i := range g.capList {
		c := &g.capList[i]
		if !c.applies(ch, p) {
			continue
		}
		var n int
		if now && i < len(f.counters) {
			n = f.counters[i].Count
		} else {
			chk := c.check
			chk.Since = sendAt.Add(-c.window)
			n = chk.Count(in.State.Messages)
		}
		if n >= c.check.Limit {
			return c.check.Name
		}
	}
	return ""
}

// effects fills res.Effects for the winning action: the message slot and the caps that guard
// it, the ledger entries and the limits and stop check that guard a retry, hard stops, and
// event-driven features.
func (g *guardrails) effects(in *Input, f *facts, res *Result) {
	if res.Explanation != nil && res.Explanation.DeclineClass == "" {
		res.Explanation.DeclineClass = f.class.String()
	}
	if in.Degraded {
		return // nothing is known, nothing is written
	}
	g.paymentEffects(in, f, res)
	if res.Action == ActionMessage && res.Message != nil {
		m := res.Message
		n := 0
		for i := range g.capList {
			if g.capList[i].applies(m.Channel, m.Purpose) {
				n++
			}
		}
		// One allocation for the slot and its checks in the common case.
		var checks []CapCheck
		if n <= len(slotWithChecks{}.checks) {
			sc := &slotWithChecks{slot: SentMessage{Channel: m.Channel, Purpose: m.Purpose, At: m.SendAt}}
			res.Effects.Message, checks = &sc.slot, sc.checks[:0:n]
		} else {
			res.Effects.Message = &SentMessage{Channel: m.Channel, Purpose: m.Purpose, At: m.SendAt}
			checks = make([]CapCheck, 0, n)
		}
		for i := range g.capList {
			if c := &g.capList[i]; c.applies(m.Channel, m.Purpose) {
				chk := c.check
				chk.Since = m.SendAt.Add(-c.window)
				checks = append(checks, chk)
			}
		}
		res.Effects.CapChecks = checks
	}
	switch in.Event.Type {
	case EventFraudFlagRaised:
		res.Effects.Features = append(res.Effects.Features, FeatureUpdate{Name: "fraud_hold", Value: true})
	case EventFraudFlagCleared:
		res.Effects.Features = append(res.Effects.Features, FeatureUpdate{Name: "fraud_hold", Value: nil})
	}
}

// slotWithChecks holds a reserved message slot and the backing array of its cap checks.
type slotWithChecks struct {
	slot   SentMessage
	checks [8]CapCheck
}

func (c *compiledCap) applies(ch Channel, p Purpose) bool {
	return (c.check.Channel == ChannelUnspecified || c.check.Channel == ch) && c.check.Purposes.Has(p)
}

// outcome returns the state changes of an outcome reported at now for the decision res made
// from in: a failed delivery releases the message's slot and marks its channel failing for the
// cooling period; an approved retry or a payment resets the credential's retry ledger.
func (g *guardrails) outcome(in *Input, res *Result, o Outcome, now time.Time) OutcomeEffects {
	var oe OutcomeEffects
	switch o {
	case OutcomeDeliveryFailed:
		if res.Action == ActionMessage && res.Message != nil {
			m := res.Message
			oe.ReleaseMessage = &SentMessage{Channel: m.Channel, Purpose: m.Purpose, At: m.SendAt}
			oe.FailChannel = &ChannelFailure{Channel: m.Channel, Until: now.Add(g.cooldown)}
		}
	case OutcomeRetryApproved, OutcomePaid:
		if p := in.Event.Payment; p != nil && p.CardRef != "" {
			oe.ResetLedger = &LedgerReset{CardRef: p.CardRef}
		}
	case OutcomeOptedOut:
		oe.OptOut = true
	}
	return oe
}

// caps returns the configured frequency caps as checks over the windows ending at now, for
// showing live counters.
func (g *guardrails) caps(now time.Time) []CapCheck {
	out := make([]CapCheck, len(g.capList))
	for i, c := range g.capList {
		out[i] = c.check
		out[i].Since = now.Add(-c.window)
	}
	return out
}

// block marks c blocked by a guardrail with a reason; the first block gives c.Why.
func (g *guardrails) block(c *Candidate, tr *Explanation, gr, code, why string) {
	c.Blocked = true
	if c.Why == "" {
		c.Why = why
	}
	c.Reasons = append(c.Reasons, Reason{Code: code, Message: why, RuleID: gr})
	if tr != nil {
		tr.Guardrails = append(tr.Guardrails, GuardrailCheck{Guardrail: gr, RuleID: c.RuleID, Verdict: "block", ReasonCode: code, Detail: why})
	}
}

// modify records that a guardrail changed c (another channel, a later time).
func (g *guardrails) modify(c *Candidate, tr *Explanation, gr, code, why string) {
	c.Reasons = append(c.Reasons, Reason{Code: code, Message: why, RuleID: gr})
	if tr != nil {
		tr.Guardrails = append(tr.Guardrails, GuardrailCheck{Guardrail: gr, RuleID: c.RuleID, Verdict: "modify", ReasonCode: code, Detail: why})
	}
}

// pass records that c passed the guardrails.
func (g *guardrails) pass(tr *Explanation, gr string, c *Candidate) {
	if tr != nil {
		tr.Guardrails = append(tr.Guardrails, GuardrailCheck{Guardrail: gr, RuleID: c.RuleID, Verdict: "pass"})
	}
}

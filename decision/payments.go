package decision

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// declineCodesCSV is the card-network reference table (ISO 8583 field 39 codes with their Visa
// category and default class); the project's one copy of the reference table.
//
//go:embed declinecodes.csv
var declineCodesCSV string

// codeInfo is one row of the reference table.
type codeInfo struct {
	known    bool
	category uint8 // Visa decline category 1 to 4
	class    DeclineClass
}

// codeSlots is the size of the code lookup table: two characters from [0-9A-Z].
const codeSlots = 36 * 36

// declineTable returns the parsed reference table, indexed by codeIndex. It is parsed once, on
// first use, and never changes after; TestDeclineTable checks every row.
var declineTable = sync.OnceValue(func() *[codeSlots]codeInfo {
	t, err := parseDeclineTable(declineCodesCSV)
	if err != nil {
		// The table is embedded at build time and tested; a bad row is a build defect.
		panic(err)
	}
	return t
})

// DeclineCode is one row of the card networks' decline-code reference table.
type DeclineCode struct {
	Code    string       // ISO 8583 field 39 response code, such as "51"
	Class   DeclineClass // what the engine may do next
	Meaning string
}

// DeclineCodes returns the rows of the reference table that Classify uses, in table order:
// for tools that need realistic declines, such as the load tester.
func DeclineCodes() []DeclineCode {
	rows, err := readDeclineRows(declineCodesCSV)
	if err != nil {
		// The table is embedded at build time and tested; a bad row is a build defect.
		panic(err)
	}
	out := make([]DeclineCode, len(rows))
	for i, r := range rows {
		out[i] = DeclineCode{Code: r.code, Class: r.class, Meaning: r.meaning}
	}
	return out
}

// declineRow is one row of the reference table as written.
type declineRow struct {
	code, retryAllowed, meaning string
	category                    uint8
	class                       DeclineClass
}

func readDeclineRows(src string) ([]declineRow, error) {
	recs, err := csv.NewReader(strings.NewReader(src)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read decline codes: %w", err)
	}
	if len(recs) < 2 || !slices.Equal(recs[0], []string{"code", "visa_category", "engine_class", "network_retry_allowed", "meaning"}) {
		return nil, fmt.Errorf("decline codes: unexpected header %q", recs[0])
	}
	rows := make([]declineRow, 0, len(recs)-1)
	for i, r := range recs[1:] {
		cat, err := strconv.Atoi(r[1])
		if err != nil || cat < 1 || cat > 4 {
			return nil, fmt.Errorf("decline codes line %d: bad visa_category %q", i+2, r[1])
		}
		cl, ok := parseDeclineClass(r[2])
		if !ok {
			return nil, fmt.Errorf("decline codes line %d: bad engine_class %q", i+2, r[2])
		}
		rows = append(rows, declineRow{code: r[0], category: uint8(cat), class: cl, retryAllowed: r[3], meaning: r[4]})
	}
	return rows, nil
}

func parseDeclineTable(src string) (*[codeSlots]codeInfo, error) {
	rows, err := readDeclineRows(src)
	if err != nil {
		return nil, err
	}
	var t [codeSlots]codeInfo
	for _, r := range rows {
		i, ok := codeIndex(r.code)
		if !ok {
			return nil, fmt.Errorf("decline codes: bad code %q", r.code)
		}
		t[i] = codeInfo{known: true, category: r.category, class: r.class}
	}
	return &t, nil
}

func alnum(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10, true
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10, true
	}
	return 0, false
}

// codeIndex maps a two-character code (case-insensitive, surrounding spaces ignored; a single
// character is zero-padded, so "5" is "05") to its slot in the lookup table.
func codeIndex(code string) (int, bool) {
	if len(code) > 2 || (len(code) > 0 && (code[0] == ' ' || code[len(code)-1] == ' ')) {
		code = strings.TrimSpace(code)
	}
	var a, b byte
	switch len(code) {
	case 1:
		a, b = '0', code[0]
	case 2:
		a, b = code[0], code[1]
	default:
		return 0, false
	}
	x, ok1 := alnum(a)
	y, ok2 := alnum(b)
	return x*36 + y, ok1 && ok2
}

// codeKey is codeIndex as one value: -1 for an absent or malformed code.
func codeKey(code string) int {
	if i, ok := codeIndex(code); ok {
		return i
	}
	return -1
}

// Keys of the codes the rules single out (see codeIndex: digits 0-9, then A-Z as 10-35).
const (
	key01 = 0*36 + 1
	key02 = 0*36 + 2
	key03 = 0*36 + 3
	key04 = 0*36 + 4
	key21 = 2*36 + 1
	key24 = 2*36 + 4
	key25 = 2*36 + 5
	key26 = 2*36 + 6
	key27 = 2*36 + 7
	key28 = 2*36 + 8
	key29 = 2*36 + 9
	key30 = 3*36 + 0
	key51 = 5*36 + 1
	key91 = 9*36 + 1
	key96 = 9*36 + 6
	key1A = 1*36 + 10
	keyN7 = 23*36 + 7
	keyR0 = 27*36 + 0
	keyR1 = 27*36 + 1
	keyR3 = 27*36 + 3
)

func lookupCode(code string) codeInfo {
	return lookupKey(codeKey(code))
}

func lookupKey(k int) codeInfo {
	if k >= 0 {
		return declineTable()[k]
	}
	return codeInfo{}
}

// visaCategory returns the Visa decline category of code: 1 to 4; codes not in the table are
// category 4 (generic).
func visaCategory(code string) int {
	if info := lookupCode(code); info.known {
		return int(info.category)
	}
	return 4
}

func parseDeclineClass(s string) (DeclineClass, bool) {
	for c := ClassNever; c <= ClassNoAuto; c++ {
		if c.String() == s {
			return c, true
		}
	}
	return ClassNone, false
}

// String returns the class name used in policies and explanations: "NEVER", "LATER",
// "FIX_DATA", "GENERIC", "NO_AUTO", or "" for ClassNone.
func (c DeclineClass) String() string {
	switch c {
	case ClassNever:
		return "NEVER"
	case ClassLater:
		return "LATER"
	case ClassFixData:
		return "FIX_DATA"
	case ClassGeneric:
		return "GENERIC"
	case ClassNoAuto:
		return "NO_AUTO"
	}
	return ""
}

// Classify returns the decline class of a card decline: what the engine may do next.
//
// The class comes from the reference table (declinecodes.csv); codes not in the table are Visa
// category 4, GENERIC. Then, in this order:
//   - Mastercard Merchant Advice Codes 03 (do not try again) and 21 (payment cancelled)
//     override any code: NEVER.
//   - A NEVER code stays NEVER whatever the advice code says.
//   - 1A (strong customer authentication required) and N7 (CVV2 failure) can be fixed only in a
//     customer-initiated session: FIX_DATA for a CIT, NO_AUTO otherwise (nothing the merchant
//     can fix by itself).
//   - Mastercard MAC 01 (new account information) and 04 (token requirements) make a LATER or
//     GENERIC decline FIX_DATA: retry only with updated credentials.
//
// MAC 02 and 24 to 30 do not change the class; they set the earliest retry time. Advice codes
// are ignored on other networks. Classify never fails: any input has a class.
func Classify(n Network, declineCode, mac string, ini Initiator) DeclineClass {
	return classify(n, codeKey(declineCode), codeKey(mac), ini)
}

// classify is Classify over code keys.
func classify(n Network, code, mac int, ini Initiator) DeclineClass {
	mc := n == NetworkMastercard
	if mc && (mac == key03 || mac == key21) {
		return ClassNever
	}
	class := ClassGeneric
	if info := lookupKey(code); info.known {
		class = info.class
	}
	if class == ClassNever {
		return class
	}
	if code == key1A || code == keyN7 {
		if ini == InitiatorCustomer {
			return ClassFixData
		}
		return ClassNoAuto
	}
	if mc && (mac == key01 || mac == key04) && (class == ClassLater || class == ClassGeneric) {
		return ClassFixData
	}
	return class
}

// macWait returns the earliest-retry delay a Mastercard Merchant Advice Code sets: 24 to 30
// mean 1 h, 24 h, 2, 4, 6, 8 and 10 days; 02 (try again later) means mac02.
func macWait(mac int, mac02 time.Duration) time.Duration {
	switch mac {
	case key02:
		return mac02
	case key24:
		return time.Hour
	case key25:
		return day
	case key26:
		return 2 * day
	case key27:
		return 4 * day
	case key28:
		return 6 * day
	case key29:
		return 8 * day
	case key30:
		return 10 * day
	}
	return 0
}

// PaymentConfig is the `payments:` section of a policy bundle: business retry limits,
// back-off, acquirer routing and payday targeting (docs/payments.md). Every field is optional.
// Card-network limits can be lowered here, never raised.
type PaymentConfig struct {
	// RetryLimits are the most automatic retries per credential (card, merchant, amount,
	// currency, initiator) in a rolling 30 days, per class: keys "later" (default 4) and
	// "generic" (default 2); bounds 0 to 20. Other classes are never retried automatically.
	RetryLimits map[string]int `yaml:"retry_limits"`
	// Backoff is the least delay before the n-th retry; the last entry repeats. Default
	// ["4h", "24h", "72h"]; each 5m to 30d.
	Backoff []string `yaml:"backoff"`
	// Acquirers lists, per network (visa, mastercard, amex, other), the acquirers a retry may
	// go through, in order of preference. After an issuer or switch failure (91, 96) the retry
	// prefers the first listed acquirer other than the one that declined.
	Acquirers map[string][]string `yaml:"acquirers"`
	// Payday aims insufficient-funds (51) retries just after the `next_payday` feature.
	Payday PaydayConfig `yaml:"payday"`
	// RetryQuietHours, when set, is a daily local-time window in which no retry is scheduled
	// (for example 00:00 to 06:00). Default none.
	RetryQuietHours *QuietWindow `yaml:"retry_quiet_hours"`
	// NetworkLimits lowers the card networks' retry limits; it cannot raise them.
	NetworkLimits NetworkLimits `yaml:"network_limits"`
	// Mac02Wait is the least delay after a Mastercard MAC 02 (try again later). Default "72h";
	// bounds 1h to 30d.
	Mac02Wait string `yaml:"mac02_wait"`
	// StopFor is how long a hard stop (a NEVER decline, MAC 03 or 21, a stop-payment code)
	// blocks retries of the credential. Default "30d"; bounds 30d to 400d.
	StopFor string `yaml:"stop_for"`
}

// PaydayConfig sets payday targeting.
type PaydayConfig struct {
	// At is the local time of day on payday at which to aim the retry. Default "06:00".
	At string `yaml:"at"`
	// MaxWait is the longest a retry is held back for payday; "0" disables targeting.
	// Default "10d"; bounds 0 to 31d.
	MaxWait string `yaml:"max_wait"`
}

// NetworkLimits are the card networks' retry limits; each defaults to the network's value,
// which is also its upper bound.
type NetworkLimits struct {
	// VisaReattempts30d: reattempts per card, amount and currency in a rolling 30 days,
	// CIT and MIT apart. At most 20.
	VisaReattempts30d *int `yaml:"visa_reattempts_30d"`
	// MastercardDeclines24h: declined attempts per card in 24 hours, rolling and per
	// calendar day (UTC). At most 10.
	MastercardDeclines24h *int `yaml:"mastercard_declines_24h"`
	// MastercardAttempts30d: attempts per card, merchant and amount in 30 days. At most 35.
	MastercardAttempts30d *int `yaml:"mastercard_attempts_30d"`
}

// Network limits from the schemes' rules (docs/payments.md, "The retry ledger").
const (
	visaReattemptsMax = 20
	mcDeclines24hMax  = 10
	mcAttempts30dMax  = 35
)

// payments is a compiled PaymentConfig.
type payments struct {
	retryLimit    [ClassNoAuto + 1]int
	backoff       []time.Duration
	acquirers     [NetworkOther + 1][]string
	paydayAt      int // minutes after local midnight
	paydayMaxWait time.Duration
	retryQuiet    quietPeriod
	visaMax       int
	mc24Max       int
	mc30Max       int
	mac02Wait     time.Duration
	stopFor       time.Duration
}

func compilePayments(c PaymentConfig) (payments, error) {
	p := payments{visaMax: visaReattemptsMax, mc24Max: mcDeclines24hMax, mc30Max: mcAttempts30dMax}
	p.retryLimit[ClassLater], p.retryLimit[ClassGeneric] = 4, 2
	keys := make([]string, 0, len(c.RetryLimits))
	for k := range c.RetryLimits {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, field := c.RetryLimits[k], "payments.retry_limits."+k
		var cl DeclineClass
		switch k {
		case "later":
			cl = ClassLater
		case "generic":
			cl = ClassGeneric
		default:
			return p, cfgErr(field, "only later and generic declines are retried automatically")
		}
		if v < 0 || v > visaReattemptsMax {
			return p, cfgErr(field, "%d is outside the bounds 0 to %d", v, visaReattemptsMax)
		}
		p.retryLimit[cl] = v
	}

	backoff := c.Backoff
	if len(backoff) == 0 {
		backoff = []string{"4h", "24h", "72h"}
	}
	for i, s := range backoff {
		d, err := durationField(fmt.Sprintf("payments.backoff[%d]", i), s, 0, 5*time.Minute, 30*day)
		if err != nil {
			return p, err
		}
		if s == "" {
			return p, cfgErr(fmt.Sprintf("payments.backoff[%d]", i), "is empty")
		}
		p.backoff = append(p.backoff, d)
	}

	keys = keys[:0]
	for k := range c.Acquirers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n := slices.Index(bundleNetworkNames[:], strings.ToUpper(k))
		if n <= 0 || k != strings.ToLower(k) {
			return p, cfgErr("payments.acquirers."+k, "unknown network (use visa, mastercard, amex or other)")
		}
		list := c.Acquirers[k]
		for i, a := range list {
			if a == "" || slices.Contains(list[:i], a) {
				return p, cfgErr(fmt.Sprintf("payments.acquirers.%s[%d]", k, i), "empty or duplicate acquirer %q", a)
			}
		}
		p.acquirers[n] = slices.Clone(list)
	}

	p.paydayAt = 6 * 60
	if c.Payday.At != "" {
		m, ok := parseClock(c.Payday.At)
		if !ok {
			return p, cfgErr("payments.payday.at", "%q is not a time of day HH:MM", c.Payday.At)
		}
		p.paydayAt = m
	}
	var err error
	if p.paydayMaxWait, err = durationField("payments.payday.max_wait", c.Payday.MaxWait, 10*day, 0, 31*day); err != nil {
		return p, err
	}
	if w := c.RetryQuietHours; w != nil {
		s, ok1 := parseClock(w.Start)
		e, ok2 := parseClock(w.End)
		if !ok1 {
			return p, cfgErr("payments.retry_quiet_hours.start", "%q is not a time of day HH:MM", w.Start)
		}
		if !ok2 {
			return p, cfgErr("payments.retry_quiet_hours.end", "%q is not a time of day HH:MM", w.End)
		}
		p.retryQuiet = quietPeriod{start: s, end: e}
	}
	limit := func(field string, v *int, max int, dst *int) error {
		if v == nil {
			return nil
		}
		if *v < 0 || *v > max {
			return cfgErr("payments.network_limits."+field, "%d is outside the bounds 0 to %d: a policy cannot raise a network limit", *v, max)
		}
		*dst = *v
		return nil
	}
	if err := limit("visa_reattempts_30d", c.NetworkLimits.VisaReattempts30d, visaReattemptsMax, &p.visaMax); err != nil {
		return p, err
	}
	if err := limit("mastercard_declines_24h", c.NetworkLimits.MastercardDeclines24h, mcDeclines24hMax, &p.mc24Max); err != nil {
		return p, err
	}
	if err := limit("mastercard_attempts_30d", c.NetworkLimits.MastercardAttempts30d, mcAttempts30dMax, &p.mc30Max); err != nil {
		return p, err
	}
	if p.mac02Wait, err = durationField("payments.mac02_wait", c.Mac02Wait, 72*time.Hour, time.Hour, 30*day); err != nil {
		return p, err
	}
	if p.stopFor, err = durationField("payments.stop_for", c.StopFor, 30*day, 30*day, 400*day); err != nil {
		return p, err
	}
	return p, nil
}

// ledgerView is the retry ledger of the event's credential as read at decision time.
type ledgerView struct {
	// declines24h: declined attempts of the card in the last 24 hours (any merchant, amount).
	declines24h int
	// declines30d: declined attempts of the card, merchant and amount in the last 30 days.
	declines30d int
	// retries30d: RETRY answers for the credential (card, merchant, amount, currency,
	// initiator) in the last 30 days.
	retries30d int
	// stopped: a hard stop blocks retries of the credential.
	stopped bool
}

// maxLedgerChecks is the number of ledger limits one retry can be subject to.
const maxLedgerChecks = 6

// paymentFacts is what the payment guardrails work out once per decision.
type paymentFacts struct {
	ok       bool // a payment event with a payment failure
	code     int  // codeKey of the decline code
	mac      int  // codeKey of the Mastercard advice code; -1 elsewhere
	checks   [maxLedgerChecks]LedgerCheck
	nchecks  int
	atLimit  int // index+1 of the first check at its limit; 0: none
	stopCode string
	attempt  int
	macWait  time.Duration
}

// reset clears pf for a new decision. Every field but checks is reset; checks beyond nchecks
// are never read.
func (pf *paymentFacts) reset() {
	pf.ok, pf.code, pf.mac = false, -1, -1
	pf.nchecks, pf.atLimit = 0, 0
	pf.stopCode, pf.attempt, pf.macWait = "", 0, 0
}

// Ledger check names, reported by the store when a concurrent decision used the last slot.
const (
	checkVisaReattempts = "visa_reattempts_30d"
	checkVisaDeclines   = "visa_declines_30d"
	checkMCRolling      = "mastercard_declines_24h"
	checkMCDay          = "mastercard_declines_day"
	checkMC30d          = "mastercard_attempts_30d"
	checkBusiness       = "business_retries_30d"
)

// paymentFacts fills f.pay, f.class and f.ledger for a payment-failed event.
func (g *guardrails) paymentFacts(in *Input, f *facts) {
	p := in.Event.Payment
	if p == nil || in.Event.Type != EventPaymentFailed {
		return
	}
	pf := &f.pay
	pf.ok = true
	pf.code, pf.mac = codeKey(p.DeclineCode), -1
	if p.Network == NetworkMastercard {
		pf.mac = codeKey(p.MerchantAdviceCode)
		pf.macWait = macWait(pf.mac, g.pay.mac02Wait)
	}
	f.class = classify(p.Network, pf.code, pf.mac, p.Initiator)
	now := in.Now
	month := now.Add(-30 * day)
	add := func(c LedgerCheck) { pf.checks[pf.nchecks] = c; pf.nchecks++ }
	full := LedgerCheck{Kind: LedgerRetry, CardRef: p.CardRef, MerchantID: p.MerchantID, AmountMinor: p.AmountMinor,
		Currency: p.Currency, Initiator: p.Initiator, Since: month}
	// Visa rules apply to Visa and, conservatively, to every network that is not Mastercard;
	// Mastercard rules apply to Mastercard and every network that is not Visa.
	if p.Network != NetworkMastercard {
		v := LedgerCheck{Name: checkVisaReattempts, Kind: LedgerRetry, CardRef: p.CardRef, AmountMinor: p.AmountMinor,
			Currency: p.Currency, Initiator: p.Initiator, Since: month, Limit: g.pay.visaMax}
		add(v)
		// Every declined attempt after the first was a reattempt, whoever made it.
		v.Name, v.Kind = checkVisaDeclines, LedgerDecline
		add(v)
	}
	if p.Network != NetworkVisa {
		// The retry is one more attempt after the decline being reported: both must fit.
		m := LedgerCheck{Name: checkMCRolling, Kind: LedgerDecline, CardRef: p.CardRef, AnyAmount: true,
			Since: now.Add(-day), Limit: g.pay.mc24Max - 1}
		add(m)
		y, mo, d := now.UTC().Date()
		m.Name, m.Since = checkMCDay, time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
		add(m)
		add(LedgerCheck{Name: checkMC30d, Kind: LedgerDecline, CardRef: p.CardRef, MerchantID: p.MerchantID,
			AmountMinor: p.AmountMinor, Since: month, Limit: g.pay.mc30Max - 1})
	}
	if f.class == ClassLater || f.class == ClassGeneric {
		b := full
		b.Name, b.Limit = checkBusiness, g.pay.retryLimit[f.class]
		add(b)
	}
	for i := 0; i < pf.nchecks; i++ {
		if c := &pf.checks[i]; pf.atLimit == 0 && c.Count(in.State.Ledger) >= c.Limit {
			pf.atLimit = i + 1
		}
	}

	retryKey := full
	dec24 := LedgerCheck{Kind: LedgerDecline, CardRef: p.CardRef, AnyAmount: true, Since: now.Add(-day)}
	dec30 := LedgerCheck{Kind: LedgerDecline, CardRef: p.CardRef, MerchantID: p.MerchantID, AmountMinor: p.AmountMinor, Since: month}
	f.ledger.retries30d = retryKey.Count(in.State.Ledger)
	f.ledger.declines24h = dec24.Count(in.State.Ledger)
	f.ledger.declines30d = dec30.Count(in.State.Ledger)
	pf.attempt = f.ledger.retries30d + 1
	// The same rule the store re-checks at commit (paymentEffects).
	if i := retryStopCheck(p, now).index(in.State.Stops); i >= 0 {
		f.ledger.stopped = true
		pf.stopCode = in.State.Stops[i].ReasonCode
		if pf.stopCode == "" {
			pf.stopCode = CodeMACDoNotRetry
		}
	}
}

// checkRetryStop is the name of the stop check, reported by the store when a concurrent
// decision set a hard stop on the credential.
const checkRetryStop = "retry_stop"

// retryStopCheck is the condition that no hard stop blocks retries of p's credential at at.
func retryStopCheck(p *PaymentFailure, at time.Time) StopCheck {
	return StopCheck{Name: checkRetryStop, CardRef: p.CardRef, MerchantID: p.MerchantID, At: at}
}

// applyRetry checks a RETRY candidate against the payment guardrails and resolves its detail.
func (g *guardrails) applyRetry(in *Input, f *facts, c *Candidate, tr *Explanation) {
	p, pf := in.Event.Payment, &f.pay
	switch {
	case !pf.ok:
		g.block(c, tr, grPayments, CodeRetryNotApplicable, "a retry needs a payment-failed event with its payment")
		return
	case p.CardRef == "":
		g.block(c, tr, grPayments, CodeNetworkRetryLimit, "no card_ref: the retry ledger cannot be kept")
		return
	}
	if code, why := retryBlock(p, f); code != "" {
		g.block(c, tr, grPayments, code, why)
		return
	}

	now := in.Now
	nb := now.Add(max(c.Delay, 0))
	if b := g.pay.backoff; len(b) > 0 {
		nb = later(nb, now.Add(b[min(pf.attempt, len(b))-1]))
	}
	if pf.macWait > 0 {
		// From the decline: its reported time when that is later than ours (clock skew).
		nb = later(nb, later(now, in.Event.OccurredAt).Add(pf.macWait))
		g.modify(c, tr, grPayments, CodeMACRetryAfter, "Mastercard advice sets the earliest retry")
	}
	if f.class == ClassLater && pf.code == key51 && g.pay.paydayMaxWait > 0 {
		if t, ok := g.payday(in, f); ok && t.After(nb) && t.Sub(now) <= g.pay.paydayMaxWait {
			nb = t
			g.modify(c, tr, grPayments, CodePaydayTargeted, "retry aimed just after the next payday")
		}
	}
	if g.pay.retryQuiet.start != g.pay.retryQuiet.end {
		loc := f.loc
		if loc == nil {
			loc = time.UTC
		}
		nb, _ = g.pay.retryQuiet.deferFrom(nb, loc)
	}

	acq := p.Acquirer
	if list := g.pay.acquirers[min(p.Network, NetworkOther)]; len(list) > 0 {
		switch {
		case pf.code == key91 || pf.code == key96:
			for _, a := range list {
				if a != p.Acquirer {
					acq = a
					g.modify(c, tr, grPayments, CodeAcquirerSwitch, "issuer or switch failure: another acquirer")
					break
				}
			}
		case acq == "":
			acq = list[0]
		}
	}
	c.Retry = &Retry{NotBefore: nb, Acquirer: acq, Attempt: pf.attempt}
	g.pass(tr, grPayments, c)
}

// retryBlock returns the reason code that forbids retrying the declined payment p, and why,
// or "" when the decline class, the stops and the ledger limits allow a retry.
func retryBlock(p *PaymentFailure, f *facts) (code, why string) {
	pf := &f.pay
	switch {
	case f.class == ClassNever:
		if pf.mac == key03 || pf.mac == key21 {
			return CodeMACDoNotRetry, "Mastercard advice: do not try again"
		}
		return CodeHardDecline, "the issuer will never approve this credential"
	case f.class == ClassFixData:
		return CodeFixDataDecline, "retry only after the card data changes"
	case f.class == ClassNoAuto:
		return CodeNoAutoRetry, "this decline is not retried automatically"
	case f.ledger.stopped && pf.stopCode == CodeLedgerFull:
		return pf.stopCode, "this card's retry ledger overflowed: its counts are incomplete, so it is not retried"
	case f.ledger.stopped:
		return pf.stopCode, "a hard stop on this credential is in force"
	case pf.atLimit > 0:
		switch pf.checks[pf.atLimit-1].Name {
		case checkBusiness:
			return CodeRetryLimit, "the policy's retry limit for this decline class is reached"
		case checkVisaReattempts, checkVisaDeclines:
			return CodeNetworkRetryLimit, "the Visa limit of reattempts in 30 days is reached"
		case checkMCRolling, checkMCDay:
			return CodeNetworkRetryLimit, "the Mastercard limit of declined attempts in 24 hours is reached"
		}
		return CodeNetworkRetryLimit, "the Mastercard limit of attempts in 30 days is reached"
	}
	return "", ""
}

// payday returns the instant to aim an insufficient-funds retry at, from the next_payday
// feature: an RFC 3339 time, or a date "2006-01-02" taken at the configured time of day in
// the customer's zone (UTC when unknown).
func (g *guardrails) payday(in *Input, f *facts) (time.Time, bool) {
	s, ok := in.State.Features["next_payday"].(string)
	if !ok || s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	loc := f.loc
	if loc == nil {
		loc = time.UTC
	}
	d, err := time.ParseInLocation(time.DateOnly, s, loc)
	if err != nil {
		return time.Time{}, false
	}
	return time.Date(d.Year(), d.Month(), d.Day(), g.pay.paydayAt/60, g.pay.paydayAt%60, 0, 0, loc), true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// paymentEffects adds the ledger entries, checks and stops of a payment-failed event to res.
func (g *guardrails) paymentEffects(in *Input, f *facts, res *Result) {
	p, pf := in.Event.Payment, &f.pay
	if !pf.ok {
		return
	}
	e := LedgerEntry{Kind: LedgerDecline, EventID: in.Event.ID, CardRef: p.CardRef, MerchantID: p.MerchantID,
		AmountMinor: p.AmountMinor, Currency: p.Currency, Initiator: p.Initiator, Network: p.Network, At: in.Now}
	if res.Action == ActionRetry {
		// One allocation for the decline, the retry and the checks that guard it.
		lr := &ledgerWithChecks{entries: [2]LedgerEntry{e, e}, stop: [1]StopCheck{retryStopCheck(p, in.Now)}}
		lr.entries[1].Kind = LedgerRetry
		n := copy(lr.checks[:], pf.checks[:pf.nchecks])
		res.Effects.Ledger, res.Effects.LedgerChecks = lr.entries[:2:2], lr.checks[:n:n]
		res.Effects.StopChecks = lr.stop[:]
	} else {
		res.Effects.Ledger = append(make([]LedgerEntry, 0, 1), e)
	}
	if stop := g.stopFor(in, f); stop.CardRef != "" {
		res.Effects.Stops = append(res.Effects.Stops, stop)
	}
	if code, msg := classCode(f.class); code != "" && !hasReason(res.Reasons, code) {
		res.Reasons = append(res.Reasons, Reason{Code: code, Message: msg, RuleID: grPayments})
	}
	// Whatever the policy answered instead, say why there is no retry.
	if res.Action != ActionRetry && p.CardRef != "" {
		if code, why := retryBlock(p, f); code != "" && !hasReason(res.Reasons, code) {
			res.Reasons = append(res.Reasons, Reason{Code: code, Message: why, RuleID: grPayments})
		}
	}
}

// ledgerWithChecks holds a retry's ledger entries and the backing arrays of its checks.
type ledgerWithChecks struct {
	entries [2]LedgerEntry
	checks  [maxLedgerChecks]LedgerCheck
	stop    [1]StopCheck
}

// stopFor returns the hard stop a decline sets, or a zero RetryStop.
func (g *guardrails) stopFor(in *Input, f *facts) RetryStop {
	p := in.Event.Payment
	if p.CardRef == "" {
		return RetryStop{}
	}
	until := in.Now.Add(g.pay.stopFor)
	switch pf := &f.pay; {
	case pf.mac == key21:
		return RetryStop{CardRef: p.CardRef, MerchantID: p.MerchantID, Until: until, ReasonCode: CodeMACDoNotRetry}
	case pf.mac == key03:
		return RetryStop{CardRef: p.CardRef, Until: until, ReasonCode: CodeMACDoNotRetry}
	case pf.code == keyR0 || pf.code == keyR1 || pf.code == keyR3:
		return RetryStop{CardRef: p.CardRef, MerchantID: p.MerchantID, Until: until, ReasonCode: CodeRecurringEnded}
	case f.class == ClassNever:
		return RetryStop{CardRef: p.CardRef, Until: until, ReasonCode: CodeHardDecline}
	}
	return RetryStop{}
}

// classCode is the reason code every decision about a decline of class c carries, and its
// message.
func classCode(c DeclineClass) (code, msg string) {
	switch c {
	case ClassLater:
		return CodeSoftDecline, "soft decline (LATER): retryable within the network budget"
	case ClassGeneric:
		return CodeSoftDecline, "soft decline (GENERIC): retryable with a small cap"
	case ClassNever:
		return CodeHardDecline, "hard decline (NEVER): the credential is never retried"
	case ClassFixData:
		return CodeFixDataDecline, "data decline (FIX_DATA): retry only after the data changes"
	case ClassNoAuto:
		return CodeNoAutoDecline, "decline (NO_AUTO): no automatic retry"
	}
	return "", ""
}

func hasReason(rs []Reason, code string) bool {
	for _, r := range rs {
		if r.Code == code {
			return true
		}
	}
	return false
}

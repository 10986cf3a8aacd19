package loadtest

import (
	_ "embed"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// declineWeight is how often a code is drawn relative to others: do-not-honor and
// insufficient funds dominate real decline traffic; a few others are common; the rest rare.
func declineWeight(code string) int {
	switch code {
	case "05":
		return 30
	case "51":
		return 25
	case "54", "14", "61", "91", "N7":
		return 5
	case "01", "57", "59", "62", "65", "96", "1A", "41", "43":
		return 2
	default:
		return 1
	}
}

// eventWeights weight event types like a bank's decisioning traffic: payment failures
// dominate. The weights add up to 100.
var eventWeights = []struct {
	t arbiterv1.EventType
	w int
}{
	{arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED, 55},
	{arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, 10},
	{arbiterv1.EventType_EVENT_TYPE_CARD_EXPIRING, 6},
	{arbiterv1.EventType_EVENT_TYPE_CHECKOUT_ABANDONED, 6},
	{arbiterv1.EventType_EVENT_TYPE_MESSAGE_UNOPENED, 6},
	{arbiterv1.EventType_EVENT_TYPE_RISKY_LOGIN, 6},
	{arbiterv1.EventType_EVENT_TYPE_PAYMENT_PLAN_MISSED, 4},
	{arbiterv1.EventType_EVENT_TYPE_INBOUND_CONTACT, 4},
	{arbiterv1.EventType_EVENT_TYPE_FRAUD_FLAG_RAISED, 2},
	{arbiterv1.EventType_EVENT_TYPE_FRAUD_FLAG_CLEARED, 1},
}

var timezones = []string{
	"Europe/London", "Europe/London", "Europe/London", "Europe/Paris", "Europe/Berlin",
	"Europe/Madrid", "America/New_York", "America/Chicago", "America/Los_Angeles",
	"Asia/Singapore", "Australia/Sydney", "Asia/Kolkata",
}

var locales = []string{"en-GB", "en-GB", "en-GB", "fr-FR", "de-DE", "es-ES", "en-US"}

var segments = []string{"retail", "retail", "retail", "premier", "small_business", "student"}

var channels = []arbiterv1.Channel{
	arbiterv1.Channel_CHANNEL_EMAIL, arbiterv1.Channel_CHANNEL_SMS, arbiterv1.Channel_CHANNEL_PUSH,
	arbiterv1.Channel_CHANNEL_CHAT, arbiterv1.Channel_CHANNEL_WHATSAPP, arbiterv1.Channel_CHANNEL_IVR,
}

var purposes = []arbiterv1.Purpose{
	arbiterv1.Purpose_PURPOSE_SERVICE, arbiterv1.Purpose_PURPOSE_COLLECTIONS,
	arbiterv1.Purpose_PURPOSE_MARKETING, arbiterv1.Purpose_PURPOSE_SECURITY,
}

var currencies = []string{"GBP", "GBP", "GBP", "EUR", "EUR", "USD"}

// Profile is one synthetic customer: what a caller sends in DecideRequest.customer and what
// the store holds as features. Profile i of a seed is always the same.
type Profile struct {
	Index       int
	ID          string
	Timezone    string
	Locale      string
	Segment     string
	Vulnerable  bool
	Hardship    bool
	OptedOut    bool
	DaysPastDue int
	RiskScore   float64
	Preferred   []arbiterv1.Channel
	Consents    []*arbiterv1.Consent
}

// CustomerID returns the id of synthetic customer i.
func CustomerID(i int) string { return fmt.Sprintf("lt-cust-%07d", i) }

// NewProfile returns synthetic customer i for a seed: about 3% vulnerable, 4% in hardship,
// 5% opted out, a fifth in arrears, consents granted for most channel and purpose pairs.
func NewProfile(seed uint64, i int) Profile {
	r := rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, uint64(i)))
	p := Profile{
		Index:      i,
		ID:         CustomerID(i),
		Timezone:   timezones[r.IntN(len(timezones))],
		Locale:     locales[r.IntN(len(locales))],
		Segment:    segments[r.IntN(len(segments))],
		Vulnerable: r.IntN(100) < 3,
		Hardship:   r.IntN(100) < 4,
		OptedOut:   r.IntN(100) < 5,
		RiskScore:  float64(r.IntN(1000)) / 1000,
	}
	if r.IntN(5) == 0 {
		p.DaysPastDue = 1 + r.IntN(90)
	}
	// Two or three preferred channels, in a random order.
	perm := r.Perm(len(channels) - 1) // IVR is never preferred
	for _, k := range perm[:2+r.IntN(2)] {
		p.Preferred = append(p.Preferred, channels[k])
	}
	for _, ch := range channels[:5] {
		for _, pu := range purposes {
			granted := r.IntN(100) < 85
			if pu == arbiterv1.Purpose_PURPOSE_MARKETING {
				granted = r.IntN(100) < 40
			}
			p.Consents = append(p.Consents, &arbiterv1.Consent{Channel: ch, Purpose: pu, Granted: granted})
		}
	}
	return p
}

// Features returns the profile's stored features, as the store and PutFeatures take them.
func (p Profile) Features() map[string]any {
	return map[string]any{
		"days_past_due": float64(p.DaysPastDue),
		"risk_score":    p.RiskScore,
		"timezone":      p.Timezone,
		"vulnerable":    p.Vulnerable,
		"hardship":      p.Hardship,
		"opted_out":     p.OptedOut,
		"segment":       p.Segment,
	}
}

// Customer returns the profile as a request's customer.
func (p Profile) Customer() *arbiterv1.Customer {
	return &arbiterv1.Customer{
		Id:                p.ID,
		Timezone:          p.Timezone,
		Consents:          p.Consents,
		PreferredChannels: p.Preferred,
		Vulnerable:        p.Vulnerable,
		Locale:            p.Locale,
		Segment:           p.Segment,
	}
}

// Mix makes the requests of a run. Request i is a pure function of the seed, the run id and
// i, so runs are reproducible and workers can build requests in parallel, in any order.
type Mix struct {
	seed       uint64
	runID      string
	customers  int
	duplicates float64
	zipfS      float64
	zipfV      float64
	now        func() *timestamppb.Timestamp
	// cache holds each customer's request message, built once and shared by the requests
	// (read-only), when there are at most maxCachedCustomers.
	cache      []atomic.Pointer[arbiterv1.Customer]
	declines   []decision.DeclineCode
	declineCum []int // cumulative weights of declines
	eventCum   []int // cumulative weights of eventWeights
}

// MixOption changes a default of NewMix.
type MixOption func(*Mix)

// WithDuplicates sets the share of requests, in [0, 1), that repeat the event id and content
// of an earlier request, as a gateway's retries do. Default 0.02.
func WithDuplicates(share float64) MixOption { return func(m *Mix) { m.duplicates = share } }

// WithZipf sets the Zipf parameters s > 1 and v ≥ 1 of the customer distribution: rank k
// is drawn with a weight of (v + k)^−s, so a larger s or a smaller v makes hot customers
// hotter. Default s = 1.1, v = 100: over 10,000 customers the hottest gets about 0.3% of the
// traffic (30 times the mean), where v = 4 would give it 4.6% (a customer with a hundred
// payment failures a second at 2,000/s, whose 30-day history then dominates the test).
func WithZipf(s, v float64) MixOption { return func(m *Mix) { m.zipfS, m.zipfV = s, v } }

// WithOccurredAt sets the clock that stamps event.occurred_at. Default: no timestamp, which
// keeps requests deterministic; the server then uses its own clock.
func WithOccurredAt(now func() *timestamppb.Timestamp) MixOption {
	return func(m *Mix) { m.now = now }
}

// NewMix returns the traffic of a run over customers synthetic customers. runID makes the
// event ids of this run distinct from those of an earlier run against the same store (an
// event id seen before is a replay, which is a different workload).
func NewMix(seed uint64, runID string, customers int, opts ...MixOption) (*Mix, error) {
	if customers < 1 {
		return nil, fmt.Errorf("customers = %d, want ≥ 1", customers)
	}
	m := &Mix{seed: seed, runID: runID, customers: customers, duplicates: 0.02, zipfS: 1.1, zipfV: 100}
	for _, o := range opts {
		o(m)
	}
	if m.duplicates < 0 || m.duplicates >= 1 {
		return nil, fmt.Errorf("duplicates = %v, want a share in [0, 1)", m.duplicates)
	}
	if m.zipfS <= 1 || m.zipfV < 1 {
		return nil, fmt.Errorf("zipf s = %v, v = %v, want s > 1 and v ≥ 1", m.zipfS, m.zipfV)
	}
	m.declines = decision.DeclineCodes()
	if customers <= maxCachedCustomers {
		m.cache = make([]atomic.Pointer[arbiterv1.Customer], customers)
	}
	sum := 0
	for _, c := range m.declines {
		sum += declineWeight(c.Code)
		m.declineCum = append(m.declineCum, sum)
	}
	sum = 0
	for _, e := range eventWeights {
		sum += e.w
		m.eventCum = append(m.eventCum, sum)
	}
	return m, nil
}

// maxCachedCustomers bounds the customers whose request message a Mix keeps (about 1.5 KiB
// each).
const maxCachedCustomers = 200_000

// customer returns customer c's request message, from the cache when there is one.
func (m *Mix) customer(c int) *arbiterv1.Customer {
	if m.cache == nil {
		return NewProfile(m.seed, c).Customer()
	}
	if cu := m.cache[c].Load(); cu != nil {
		return cu
	}
	cu := NewProfile(m.seed, c).Customer()
	m.cache[c].Store(cu)
	return cu
}

// Customers returns the number of synthetic customers the mix draws from.
func (m *Mix) Customers() int { return m.customers }

// pick returns the index of the weight bucket that x (in [0, total)) falls in.
func pick(cum []int, x int) int {
	for i, c := range cum {
		if x < c {
			return i
		}
	}
	return len(cum) - 1
}

// source returns the randomness of request i.
func (m *Mix) source(i uint64) *rand.Rand {
	return rand.New(rand.NewPCG(m.seed, i*0x9e3779b97f4a7c15+1))
}

// Original returns the request number whose event request i carries: i itself, or, for a
// duplicate, an earlier request within the last 64 (a gateway retry comes soon after).
func (m *Mix) Original(i uint64) uint64 {
	if i == 0 || m.duplicates == 0 {
		return i
	}
	r := m.source(i)
	if r.Float64() >= m.duplicates {
		return i
	}
	back := 1 + r.Uint64N(min(i, 64))
	return m.Original(i - back)
}

// CustomerIndex returns the customer of request i: Zipf-distributed ranks, scattered over
// the customer ids so that the hot customers are not simply the first ones.
func (m *Mix) CustomerIndex(i uint64) int {
	r := m.source(i)
	r.Uint64() // the duplicate draw of Original
	z := rand.NewZipf(r, m.zipfS, m.zipfV, uint64(m.customers-1))
	rank := z.Uint64()
	return int((rank*2654435761 + m.seed) % uint64(m.customers))
}

// Request returns request i of the run.
func (m *Mix) Request(i uint64) *arbiterv1.DecideRequest {
	i = m.Original(i)
	c := m.CustomerIndex(i)
	r := m.source(i ^ 0x5bd1e995)
	t := eventWeights[pick(m.eventCum, r.IntN(m.eventCum[len(m.eventCum)-1]))].t
	ev := &arbiterv1.Event{
		// "-e" keeps the request number's digits apart from any digits at the end of the run
		// id: joined only by a dash they could form a 13-19 digit run that passes the Luhn
		// check, which the server's card-number guard rightly refuses.
		Id:     m.runID + "-e" + strconv.FormatUint(i, 10),
		Type:   t,
		Source: "loadtest",
	}
	if m.now != nil {
		ev.OccurredAt = m.now()
	}
	switch t {
	case arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED, arbiterv1.EventType_EVENT_TYPE_PAYMENT_PLAN_MISSED:
		ev.Payment = m.payment(r, c)
	case arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE:
		ev.Attributes = map[string]string{"invoice_days_overdue": strconv.Itoa(1 + r.IntN(60))}
	}
	// The customer message is shared between requests: nothing may modify it.
	return &arbiterv1.DecideRequest{Event: ev, Customer: m.customer(c)}
}

func (m *Mix) payment(r *rand.Rand, customer int) *arbiterv1.PaymentFailure {
	code := m.declines[pick(m.declineCum, r.IntN(m.declineCum[len(m.declineCum)-1]))]
	var network arbiterv1.CardNetwork
	switch x := r.IntN(100); {
	case x < 55:
		network = arbiterv1.CardNetwork_CARD_NETWORK_VISA
	case x < 90:
		network = arbiterv1.CardNetwork_CARD_NETWORK_MASTERCARD
	case x < 97:
		network = arbiterv1.CardNetwork_CARD_NETWORK_AMEX
	default:
		network = arbiterv1.CardNetwork_CARD_NETWORK_OTHER
	}
	pf := &arbiterv1.PaymentFailure{
		DeclineCode: code.Code,
		Network:     network,
		AmountMinor: int64(500 + r.IntN(50000)),
		Currency:    currencies[r.IntN(len(currencies))],
		Acquirer:    []string{"acq-a", "acq-b"}[r.IntN(2)],
		CardRef:     fmt.Sprintf("tok-%07d-%d", customer, r.IntN(2)),
		Initiator:   arbiterv1.Initiator_INITIATOR_MERCHANT,
		MerchantId:  fmt.Sprintf("merch-%03d", r.IntN(200)),
	}
	if r.IntN(100) < 40 {
		pf.Initiator = arbiterv1.Initiator_INITIATOR_CUSTOMER
	}
	if network == arbiterv1.CardNetwork_CARD_NETWORK_MASTERCARD && r.IntN(100) < 15 {
		pf.MerchantAdviceCode = []string{"01", "02", "03", "04", "21", "24"}[r.IntN(6)]
	}
	return pf
}

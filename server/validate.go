package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// Input limits. A request over a limit gets INVALID_ARGUMENT naming the field.
const (
	// MaxIDLen is the longest id (event, customer, decision, card_ref), in bytes.
	MaxIDLen = 128
	// MaxTextLen is the longest free-text field (source, acquirer, locale...), in bytes.
	MaxTextLen = 256
	// MaxAttributes is the most event attributes one request may carry.
	MaxAttributes = 64
	// MaxAttributeLen is the longest attribute value, in bytes.
	MaxAttributeLen = 1024
	// MaxConsents is the most consents one request may carry.
	MaxConsents = 64
	// MaxPreferredChannels is the most preferred channels one request may carry.
	MaxPreferredChannels = 16
	// MaxFeatures is the most features one PutFeatures request may set.
	MaxFeatures = 256
	// MaxFeatureValueLen is the largest feature value, JSON-encoded, in bytes.
	MaxFeatureValueLen = 8 << 10
	// MaxFeaturesLen is the largest total of one PutFeatures request's values, JSON-encoded.
	MaxFeaturesLen = 64 << 10
	// MaxFeatureTTL is the longest feature time to live.
	MaxFeatureTTL = 10 * 365 * 24 * time.Hour
	// MaxAmountMajor is the largest payment amount in major units of any currency: ten
	// billion (dollars, euros, yen...). No card payment comes near it.
	MaxAmountMajor = 10_000_000_000
	// MaxAmountMinor is the largest amount_minor of any currency: 12 digits, so that no card
	// number (13 to 19 digits) fits in an amount. It is the binding limit for currencies with
	// two or more minor-unit digits (ten billion dollars is 10^12 cents).
	MaxAmountMinor = 999_999_999_999
)

// minorUnitDigits holds the ISO 4217 minor-unit exponents that are not 2, the exponent of
// every other currency (an unknown code included).
var minorUnitDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

// maxAmountMinor returns the largest plausible amount_minor in currency: MaxAmountMajor major
// units in its minor units, and never more than MaxAmountMinor. For JPY (no minor units) that
// is 9,999,999,999; for EUR, USD and KWD 999,999,999,999.
func maxAmountMinor(currency string) int64 {
	digits, ok := minorUnitDigits[currency]
	if !ok {
		digits = 2
	}
	unit := int64(1) // minor units in a major unit
	for range digits {
		unit *= 10
	}
	if MaxAmountMajor > MaxAmountMinor/unit {
		return MaxAmountMinor
	}
	return MaxAmountMajor*unit - 1
}

// invalid returns the *rpcstatus.FieldError for field.
func invalid(field, problem string) error { return rpcstatus.Invalid(field, problem) }

// checkID checks a required or optional identifier: at most MaxIDLen bytes of valid UTF-8
// without control characters.
func checkID(field, s string, required bool) error {
	if s == "" {
		if required {
			return invalid(field, "required")
		}
		return nil
	}
	if len(s) > MaxIDLen {
		return invalid(field, "longer than "+strconv.Itoa(MaxIDLen)+" bytes")
	}
	return checkText(field, s, MaxIDLen)
}

// checkText checks an optional string: at most max bytes of valid UTF-8 without control
// characters.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return invalid(field, "longer than "+strconv.Itoa(max)+" bytes")
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return invalid(field, "contains a control character")
		}
	}
	return nil
}

func checkTimestamp(field string, err error) error {
	if err != nil {
		return invalid(field, "not a valid timestamp")
	}
	return nil
}

func knownEnum[E ~int32](v E, names map[int32]string) bool {
	_, ok := names[int32(v)]
	return ok
}

// validateDecide checks a DecideRequest. An invalid customer timezone is not an input error:
// the guardrails fail closed on it with TIMEZONE_UNKNOWN.
func validateDecide(req *arbiterv1.DecideRequest) error {
	ev := req.GetEvent()
	if ev == nil {
		return invalid("event", "required")
	}
	if err := checkID("event.id", ev.GetId(), true); err != nil {
		return err
	}
	switch t := ev.GetType(); {
	case t == arbiterv1.EventType_EVENT_TYPE_UNSPECIFIED:
		return invalid("event.type", "required")
	case !knownEnum(t, arbiterv1.EventType_name):
		return invalid("event.type", "unknown value")
	}
	if ev.OccurredAt != nil {
		if err := checkTimestamp("event.occurred_at", ev.GetOccurredAt().CheckValid()); err != nil {
			return err
		}
	}
	if err := checkText("event.source", ev.GetSource(), MaxTextLen); err != nil {
		return err
	}
	if len(ev.GetAttributes()) > MaxAttributes {
		return invalid("event.attributes", "more than "+strconv.Itoa(MaxAttributes)+" entries")
	}
	for k, v := range ev.GetAttributes() {
		if err := checkID("event.attributes key", k, true); err != nil {
			return err
		}
		if err := checkText("", v, MaxAttributeLen); err != nil {
			// The field name is built only for an error: a valid request allocates none.
			return checkText("event.attributes["+strconv.Quote(k)+"]", v, MaxAttributeLen)
		}
	}
	if p := ev.GetPayment(); p != nil {
		if err := validatePayment(p); err != nil {
			return err
		}
	} else if ev.GetType() == arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED {
		return invalid("event.payment", "required for payment events")
	}

	cu := req.GetCustomer()
	if cu == nil {
		return invalid("customer", "required")
	}
	if err := checkID("customer.id", cu.GetId(), true); err != nil {
		return err
	}
	for _, f := range [...]struct{ name, v string }{
		{"customer.timezone", cu.GetTimezone()}, {"customer.locale", cu.GetLocale()}, {"customer.segment", cu.GetSegment()},
	} {
		if err := checkText(f.name, f.v, MaxTextLen); err != nil {
			return err
		}
	}
	if len(cu.GetConsents()) > MaxConsents {
		return invalid("customer.consents", "more than "+strconv.Itoa(MaxConsents)+" entries")
	}
	for i, c := range cu.GetConsents() {
		if c == nil {
			continue
		}
		// Field names are built only for an error: most requests carry valid consents.
		if p := channelProblem(c.GetChannel()); p != "" {
			return invalid(fmt.Sprintf("customer.consents[%d].channel", i), p)
		}
		if p := purposeProblem(c.GetPurpose()); p != "" {
			return invalid(fmt.Sprintf("customer.consents[%d].purpose", i), p)
		}
	}
	if len(cu.GetPreferredChannels()) > MaxPreferredChannels {
		return invalid("customer.preferred_channels", "more than "+strconv.Itoa(MaxPreferredChannels)+" entries")
	}
	for i, c := range cu.GetPreferredChannels() {
		if p := channelProblem(c); p != "" {
			return invalid(fmt.Sprintf("customer.preferred_channels[%d]", i), p)
		}
	}
	return nil
}

// channelProblem says what is wrong with a channel, "" when nothing.
func channelProblem(c arbiterv1.Channel) string {
	switch {
	case c == arbiterv1.Channel_CHANNEL_UNSPECIFIED:
		return "required"
	case !knownEnum(c, arbiterv1.Channel_name):
		return "unknown value"
	}
	return ""
}

// purposeProblem says what is wrong with a purpose, "" when nothing.
func purposeProblem(p arbiterv1.Purpose) string {
	switch {
	case p == arbiterv1.Purpose_PURPOSE_UNSPECIFIED:
		return "required"
	case !knownEnum(p, arbiterv1.Purpose_name):
		return "unknown value"
	}
	return ""
}

func validatePayment(p *arbiterv1.PaymentFailure) error {
	if p.GetDeclineCode() == "" {
		return invalid("event.payment.decline_code", "required")
	}
	if !shortCode(p.GetDeclineCode()) {
		return invalid("event.payment.decline_code", "must be 1 to 4 letters or digits (ISO 8583 field 39)")
	}
	if mac := p.GetMerchantAdviceCode(); mac != "" && !shortCode(mac) {
		return invalid("event.payment.merchant_advice_code", "must be 1 to 4 letters or digits")
	}
	switch n := p.GetNetwork(); {
	case n == arbiterv1.CardNetwork_CARD_NETWORK_UNSPECIFIED:
		return invalid("event.payment.network", "required")
	case !knownEnum(n, arbiterv1.CardNetwork_name):
		return invalid("event.payment.network", "unknown value")
	}
	if !knownEnum(p.GetInitiator(), arbiterv1.Initiator_name) {
		return invalid("event.payment.initiator", "unknown value")
	}
	if p.GetAmountMinor() < 0 {
		return invalid("event.payment.amount_minor", "must not be negative")
	}
	c := p.GetCurrency()
	if c == "" {
		return invalid("event.payment.currency", "required")
	} else if !currencyCode(c) {
		return invalid("event.payment.currency", "must be 3 upper-case letters (ISO 4217)")
	}
	if limit := maxAmountMinor(c); p.GetAmountMinor() > limit {
		return invalid("event.payment.amount_minor", "must be at most "+strconv.FormatInt(limit, 10)+" minor units of the currency (ten billion major units, at most 12 digits)")
	}
	if err := checkID("event.payment.card_ref", p.GetCardRef(), true); err != nil {
		return err
	}
	if err := checkID("event.payment.acquirer", p.GetAcquirer(), false); err != nil {
		return err
	}
	return checkID("event.payment.merchant_id", p.GetMerchantId(), false)
}

func shortCode(s string) bool {
	if len(s) == 0 || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func currencyCode(s string) bool {
	return len(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z'
}

func validateRecordOutcome(req *arbiterv1.RecordOutcomeRequest) error {
	if err := checkID("decision_id", req.GetDecisionId(), true); err != nil {
		return err
	}
	switch o := req.GetOutcome(); {
	case o == arbiterv1.Outcome_OUTCOME_UNSPECIFIED:
		return invalid("outcome", "required")
	case !knownEnum(o, arbiterv1.Outcome_name):
		return invalid("outcome", "unknown value")
	}
	if req.OccurredAt != nil {
		return checkTimestamp("occurred_at", req.GetOccurredAt().CheckValid())
	}
	return nil
}

// validatePutFeatures checks a PutFeaturesRequest and returns its features as JSON-compatible
// Go values (a null value is nil: delete) and its ttl (zero: none).
//
// JSON null arrives in two wire forms, and both delete: protojson (and so `arbiter features`)
// sends a Value whose kind is null_value; grpcurl and other clients built on dynamic messages
// send a map entry with no value, which decodes as a Value with no kind.
func validatePutFeatures(req *arbiterv1.PutFeaturesRequest) (map[string]any, time.Duration, error) {
	if err := checkID("customer_id", req.GetCustomerId(), true); err != nil {
		return nil, 0, err
	}
	fs := req.GetFeatures()
	if len(fs) == 0 {
		return nil, 0, invalid("features", "required")
	}
	if len(fs) > MaxFeatures {
		return nil, 0, invalid("features", "more than "+strconv.Itoa(MaxFeatures)+" entries")
	}
	out := make(map[string]any, len(fs))
	total := 0
	for name, v := range fs {
		if err := checkID("features key", name, true); err != nil {
			return nil, 0, err
		}
		field := "features[" + strconv.Quote(name) + "]"
		switch v.GetKind().(type) {
		case nil, *structpb.Value_NullValue:
			out[name] = nil
			continue
		}
		// AsInterface turns NaN and infinities into the strings "NaN" and "Infinity", which
		// would then be stored as strings: refuse them first.
		if path, ok := nonFinite(v); ok {
			return nil, 0, invalid(field+path, "not a finite number (NaN or infinity)")
		}
		val := v.AsInterface()
		b, err := json.Marshal(val)
		if err != nil {
			return nil, 0, invalid(field, "not representable as JSON")
		}
		if len(b) > MaxFeatureValueLen {
			return nil, 0, invalid(field, "larger than "+strconv.Itoa(MaxFeatureValueLen)+" bytes as JSON")
		}
		total += len(b)
		out[name] = val
	}
	if total > MaxFeaturesLen {
		return nil, 0, invalid("features", "larger than "+strconv.Itoa(MaxFeaturesLen)+" bytes as JSON in total")
	}
	var ttl time.Duration
	if t := req.GetTtl(); t != nil {
		if t.CheckValid() != nil {
			return nil, 0, invalid("ttl", "not a valid duration")
		}
		ttl = t.AsDuration()
		if ttl <= 0 || ttl > MaxFeatureTTL {
			return nil, 0, invalid("ttl", "must be positive and at most 10 years")
		}
	}
	return out, ttl, nil
}

// nonFinite reports whether v holds NaN or an infinity at any depth, with the path to it below
// v ("" for v itself, `["key"]` or "[2]" inside a struct or list).
func nonFinite(v *structpb.Value) (path string, found bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return "", math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0)
	case *structpb.Value_StructValue:
		for name, fv := range k.StructValue.GetFields() {
			if p, ok := nonFinite(fv); ok {
				return "[" + strconv.Quote(name) + "]" + p, true
			}
		}
	case *structpb.Value_ListValue:
		for i, e := range k.ListValue.GetValues() {
			if p, ok := nonFinite(e); ok {
				return "[" + strconv.Itoa(i) + "]" + p, true
			}
		}
	}
	return "", false
}

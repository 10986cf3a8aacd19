package featurestore

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
)

// Stored values, shared by both stores so they parse untrusted data the same way. Fields are
// joined with sep; ids and codes cannot hold control characters (ErrInvalid on write).
const sep = "\x1f"

// Windows, TTLs and limits.
const (
	// loadWindow is how far back Load returns messages and ledger entries.
	loadWindow = 30 * 24 * time.Hour
	// keepWindow is how far back the zsets keep members; they expire keepWindow after the
	// last write.
	keepWindow = 31 * 24 * time.Hour
	// recentTTL expires the recent-decisions list after the customer's last decision.
	recentTTL = 90 * 24 * time.Hour
	// recentLen is how many recent decisions are kept.
	recentLen = 20

	// ledgerStopAfter is how long after a dropped ledger entry (LedgerCap) its card stays
	// stopped: then no ledger check's window (30 days at most, from the check's since, which
	// counts entries at or after it) reaches the entry.
	ledgerStopAfter = loadWindow + time.Millisecond

	// Limits on what a read accepts; beyond them the stored data is corrupt.
	maxFeatures      = 1000
	maxFeatureBytes  = 64 << 10
	maxMembers       = 10000
	maxRecordBytes   = 1 << 20
	maxIDBytes       = 256
	defaultRetention = DefaultRetention
)

// corrupt returns an error about malformed stored data at key.
func corrupt(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, key, fmt.Sprintf(format, args...))
}

// checkID validates an id or code that goes into a key or a joined member.
func checkID(field, s string, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%w: %s is empty", ErrInvalid, field)
		}
		return nil
	}
	if len(s) > maxIDBytes {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, field, maxIDBytes)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s holds a control character", ErrInvalid, field)
		}
	}
	return nil
}

func ms(t time.Time) int64        { return t.UnixMilli() }
func msString(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
func fromMS(v int64) time.Time    { return time.UnixMilli(v).UTC() }
func itoa(v int64) string         { return strconv.FormatInt(v, 10) }
func utoa[T ~uint8](v T) string   { return strconv.FormatUint(uint64(v), 10) }
func durMS(d time.Duration) int64 { return d.Milliseconds() }

// messageMember is the zset member of a reserved message.
func messageMember(m *decision.SentMessage) string {
	return m.DecisionID + sep + utoa(m.Channel) + sep + utoa(m.Purpose)
}

func checkMessage(m *decision.SentMessage) error {
	return checkID("message decision id", m.DecisionID, true)
}

// ledgerMember is the zset member of a ledger entry.
func ledgerMember(e *decision.LedgerEntry) string {
	return strings.Join([]string{
		utoa(e.Kind), e.EventID, e.CardRef, e.MerchantID, itoa(e.AmountMinor), e.Currency,
		utoa(e.Initiator), utoa(e.Network),
	}, sep)
}

func checkLedger(e *decision.LedgerEntry) error {
	for _, f := range []struct{ name, v string }{
		{"ledger event id", e.EventID}, {"ledger card_ref", e.CardRef},
		{"ledger merchant_id", e.MerchantID}, {"ledger currency", e.Currency},
	} {
		if err := checkID(f.name, f.v, false); err != nil {
			return err
		}
	}
	return nil
}

// stopField and stopValue are a retry stop's hash field and value.
func stopField(s *decision.RetryStop) string { return stopKey(s.CardRef, s.MerchantID) }
func stopValue(s *decision.RetryStop) string { return msString(s.Until) + sep + s.ReasonCode }

// ledgerStop is the stops-hash value that a ledger entry at atMS, dropped by LedgerCap, sets
// on its card.
func ledgerStop(atMS int64) string {
	return itoa(atMS+ledgerStopAfter.Milliseconds()) + sep + decision.CodeLedgerFull
}

// stopKey is the stops-hash field of a stop on cardRef for merchantID ("": card-wide).
func stopKey(cardRef, merchantID string) string { return cardRef + sep + merchantID }

func checkStop(s *decision.RetryStop) error {
	if err := checkID("stop card_ref", s.CardRef, false); err != nil {
		return err
	}
	if err := checkID("stop merchant_id", s.MerchantID, false); err != nil {
		return err
	}
	return checkID("stop reason code", s.ReasonCode, false)
}

// summaryValue is a recent-list entry.
func summaryValue(s *decision.DecisionSummary) string {
	var b strings.Builder
	b.Grow(len(s.DecisionID) + len(s.EventID) + 32 + 16*len(s.ReasonCodes))
	b.WriteString(s.DecisionID)
	b.WriteString(sep)
	b.WriteString(s.EventID)
	b.WriteString(sep)
	b.WriteString(utoa(s.EventType))
	b.WriteString(sep)
	b.WriteString(utoa(s.Action))
	b.WriteString(sep)
	b.WriteString(msString(s.DecidedAt))
	for _, r := range s.ReasonCodes {
		b.WriteString(sep)
		b.WriteString(r)
	}
	return b.String()
}

func checkSummary(s *decision.DecisionSummary) error {
	if err := checkID("summary decision id", s.DecisionID, false); err != nil {
		return err
	}
	if err := checkID("summary event id", s.EventID, false); err != nil {
		return err
	}
	for _, r := range s.ReasonCodes {
		if err := checkID("summary reason code", r, true); err != nil {
			return err
		}
	}
	return nil
}

// outcomeValue is an outcomes-hash value: occurred and recorded times.
func outcomeValue(occurred, recorded time.Time) string {
	return msString(occurred) + sep + msString(recorded)
}

// featureValue encodes one feature value as JSON.
func featureValue(name string, v any) (string, error) {
	if err := checkID("feature name", name, true); err != nil {
		return "", err
	}
	s, ok := fastJSON(v)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("%w: feature %q: %v", ErrInvalid, name, err)
		}
		s = string(b)
	}
	if len(s) > maxFeatureBytes {
		return "", fmt.Errorf("%w: feature %q is larger than %d bytes", ErrInvalid, name, maxFeatureBytes)
	}
	return s, nil
}

// fastJSON encodes the common feature values without encoding/json: booleans, finite
// numbers and strings of printable ASCII that need no escaping. ok is false for anything else.
func fastJSON(v any) (string, bool) {
	switch v := v.(type) {
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", false
		}
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case string:
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return "", false
			}
		}
		return `"` + v + `"`, true
	}
	return "", false
}

// fastDecodeJSON decodes what fastJSON encodes (booleans, null, numbers, strings of printable
// ASCII without escapes) as encoding/json would into an any, without its reflection; ok is
// false for anything else, which encoding/json then decodes.
func fastDecodeJSON(s string) (v any, ok bool) {
	switch s {
	case "true":
		return true, true
	case "false":
		return false, true
	case "null":
		return nil, true
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		body := s[1 : len(s)-1]
		for i := 0; i < len(body); i++ {
			if c := body[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				return nil, false
			}
		}
		return body, true
	}
	if !isJSONNumber(s) {
		return nil, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, false
	}
	return f, true
}

// isJSONNumber reports whether s is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// rawState is a customer's state as stored: flat field/value and member/score pairs, as both
// stores read it. decode turns it into a decision.State.
type rawState struct {
	features []string // field, JSON value, ...
	messages []string // member, score, ... (score order)
	ledger   []string // member, score, ... (score order)
	stops    []string // field, value, ...
	failing  []string // field, value, ...
	recent   []string // newest first
}

// lists returns where each of r's lists goes, with the key it is read from, in the order a
// Load reads them: features, messages, ledger, stops, failing, recent.
func (r *rawState) lists(k *customerKeys) [6]struct {
	p   *[]string
	key string
} {
	return [6]struct {
		p   *[]string
		key string
	}{{&r.features, k.features}, {&r.messages, k.messages}, {&r.ledger, k.ledger}, {&r.stops, k.stops}, {&r.failing, k.failing}, {&r.recent, k.recent}}
}

func (r *rawState) decode(k *customerKeys, now time.Time) (decision.State, error) {
	st, err := r.decodeRest(k, now)
	if err != nil {
		return decision.State{}, err
	}
	if st.Ledger, err = decodeLedger(k.ledger, r.ledger); err != nil {
		return decision.State{}, err
	}
	if st.Recent, err = decodeRecent(k.recent, r.recent); err != nil {
		return decision.State{}, err
	}
	return st, nil
}

// decodeRest decodes what decode and decodeNarrow decode alike: all but the ledger and the
// recent decisions.
func (r *rawState) decodeRest(k *customerKeys, now time.Time) (decision.State, error) {
	var st decision.State
	var err error
	if st.Features, err = decodeFeatures(k.features, r.features); err != nil {
		return decision.State{}, err
	}
	if st.Messages, err = decodeMessages(k.messages, r.messages); err != nil {
		return decision.State{}, err
	}
	if st.Stops, err = decodeStops(k.stops, r.stops, now); err != nil {
		return decision.State{}, err
	}
	if st.FailingChannels, err = decodeFailing(k.failing, r.failing, now); err != nil {
		return decision.State{}, err
	}
	return st, nil
}

func decodeFeatures(key string, flat []string) (map[string]any, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	if len(flat)%2 != 0 || len(flat)/2 > maxFeatures {
		return nil, corrupt(key, "%d fields", len(flat)/2)
	}
	out := make(map[string]any, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		name, raw := flat[i], flat[i+1]
		if len(raw) > maxFeatureBytes {
			return nil, corrupt(key, "feature %q is %d bytes", name, len(raw))
		}
		v, ok := fastDecodeJSON(raw)
		if !ok {
			if err := json.Unmarshal([]byte(raw), &v); err != nil {
				return nil, corrupt(key, "feature %q: %v", name, err)
			}
		}
		out[name] = v
	}
	return out, nil
}

func parseScore(key, s string) (int64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != f || f > 1<<53 || f < -(1<<53) {
		return 0, corrupt(key, "score %q", s)
	}
	return int64(f), nil
}

func parseUint8(key, what, s string) (uint8, error) {
	v, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, corrupt(key, "%s %q", what, s)
	}
	return uint8(v), nil
}

func parseMS(key, what, s string) (time.Time, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, corrupt(key, "%s %q", what, s)
	}
	return fromMS(v), nil
}

// splitFields splits s at sep into f without allocating and returns how many fields s has
// (more than len(f) when s has too many: the extra ones are not stored).
func splitFields(s string, f []string) int {
	n := 0
	for {
		field, rest, more := strings.Cut(s, sep)
		if n < len(f) {
			f[n] = field
		}
		n++
		if !more {
			return n
		}
		s = rest
	}
}

func decodeMessage(key, member string, score int64) (decision.SentMessage, error) {
	var f [3]string
	if n := splitFields(member, f[:]); n != len(f) {
		return decision.SentMessage{}, corrupt(key, "message member has %d fields, want 3", n)
	}
	ch, err := parseUint8(key, "message channel", f[1])
	if err != nil {
		return decision.SentMessage{}, err
	}
	pu, err := parseUint8(key, "message purpose", f[2])
	if err != nil {
		return decision.SentMessage{}, err
	}
	return decision.SentMessage{DecisionID: f[0], Channel: decision.Channel(ch), Purpose: decision.Purpose(pu), At: fromMS(score)}, nil
}

func decodeMessages(key string, flat []string) ([]decision.SentMessage, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	if len(flat)%2 != 0 || len(flat)/2 > maxMembers {
		return nil, corrupt(key, "%d members", len(flat)/2)
	}
	out := make([]decision.SentMessage, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		score, err := parseScore(key, flat[i+1])
		if err != nil {
			return nil, err
		}
		m, err := decodeMessage(key, flat[i], score)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func decodeLedgerEntry(key, member string, score int64) (decision.LedgerEntry, error) {
	var f [8]string
	if n := splitFields(member, f[:]); n != len(f) {
		return decision.LedgerEntry{}, corrupt(key, "ledger member has %d fields, want 8", n)
	}
	kind, err := parseUint8(key, "ledger kind", f[0])
	if err != nil {
		return decision.LedgerEntry{}, err
	}
	amount, err := strconv.ParseInt(f[4], 10, 64)
	if err != nil {
		return decision.LedgerEntry{}, corrupt(key, "ledger amount %q", f[4])
	}
	ini, err := parseUint8(key, "ledger initiator", f[6])
	if err != nil {
		return decision.LedgerEntry{}, err
	}
	nw, err := parseUint8(key, "ledger network", f[7])
	if err != nil {
		return decision.LedgerEntry{}, err
	}
	return decision.LedgerEntry{
		Kind: decision.LedgerKind(kind), EventID: f[1], CardRef: f[2], MerchantID: f[3],
		AmountMinor: amount, Currency: f[5], Initiator: decision.Initiator(ini),
		Network: decision.Network(nw), At: fromMS(score),
	}, nil
}

func decodeLedger(key string, flat []string) ([]decision.LedgerEntry, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	if len(flat)%2 != 0 || len(flat)/2 > maxMembers {
		return nil, corrupt(key, "%d members", len(flat)/2)
	}
	out := make([]decision.LedgerEntry, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		score, err := parseScore(key, flat[i+1])
		if err != nil {
			return nil, err
		}
		e, err := decodeLedgerEntry(key, flat[i], score)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// stopUntil parses the until of a stops-hash value.
func stopUntil(key, value string) (time.Time, string, error) {
	until, reason, ok := strings.Cut(value, sep)
	if !ok {
		return time.Time{}, "", corrupt(key, "stop value has no separator")
	}
	t, err := parseMS(key, "stop until", until)
	return t, reason, err
}

func decodeStops(key string, flat []string, now time.Time) ([]decision.RetryStop, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	if len(flat)%2 != 0 || len(flat)/2 > maxMembers {
		return nil, corrupt(key, "%d fields", len(flat)/2)
	}
	var out []decision.RetryStop
	for i := 0; i < len(flat); i += 2 {
		card, merchant, ok := strings.Cut(flat[i], sep)
		if !ok {
			return nil, corrupt(key, "stop field has no separator")
		}
		until, reason, err := stopUntil(key, flat[i+1])
		if err != nil {
			return nil, err
		}
		if !until.After(now) {
			continue
		}
		out = append(out, decision.RetryStop{CardRef: card, MerchantID: merchant, Until: until, ReasonCode: reason})
	}
	// Hash order is arbitrary: sort so both stores return the same.
	slices.SortFunc(out, func(a, b decision.RetryStop) int {
		if c := strings.Compare(a.CardRef, b.CardRef); c != 0 {
			return c
		}
		return strings.Compare(a.MerchantID, b.MerchantID)
	})
	return out, nil
}

func decodeFailing(key string, flat []string, now time.Time) ([]decision.ChannelFailure, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	if len(flat)%2 != 0 || len(flat)/2 > 256 {
		return nil, corrupt(key, "%d fields", len(flat)/2)
	}
	var out []decision.ChannelFailure
	for i := 0; i < len(flat); i += 2 {
		ch, err := parseUint8(key, "failing channel", flat[i])
		if err != nil {
			return nil, err
		}
		until, err := parseMS(key, "failing until", flat[i+1])
		if err != nil {
			return nil, err
		}
		if !until.After(now) {
			continue
		}
		out = append(out, decision.ChannelFailure{Channel: decision.Channel(ch), Until: until})
	}
	slices.SortFunc(out, func(a, b decision.ChannelFailure) int { return int(a.Channel) - int(b.Channel) })
	return out, nil
}

func decodeRecent(key string, list []string) ([]decision.DecisionSummary, error) {
	if len(list) == 0 {
		return nil, nil
	}
	if len(list) > recentLen {
		return nil, corrupt(key, "%d entries", len(list))
	}
	out := make([]decision.DecisionSummary, 0, len(list))
	// The fields of every entry share one array (the reason codes are slices of it).
	n := 0
	for _, v := range list {
		n += strings.Count(v, sep) + 1
	}
	all := make([]string, 0, n)
	for _, v := range list {
		start := len(all)
		for {
			field, rest, more := strings.Cut(v, sep)
			all = append(all, field)
			if !more {
				break
			}
			v = rest
		}
		f := all[start:len(all):len(all)]
		if len(f) < 5 {
			return nil, corrupt(key, "summary has %d fields, want at least 5", len(f))
		}
		et, err := parseUint8(key, "summary event type", f[2])
		if err != nil {
			return nil, err
		}
		act, err := parseUint8(key, "summary action", f[3])
		if err != nil {
			return nil, err
		}
		at, err := parseMS(key, "summary time", f[4])
		if err != nil {
			return nil, err
		}
		s := decision.DecisionSummary{
			DecisionID: f[0], EventID: f[1], EventType: decision.EventType(et),
			Action: decision.Action(act), DecidedAt: at,
		}
		if len(f) > 5 {
			s.ReasonCodes = f[5:]
		}
		out = append(out, s)
	}
	return out, nil
}

func decodeOutcomes(key string, flat []string) ([]StoredOutcome, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	if len(flat)%2 != 0 || len(flat)/2 > 256 {
		return nil, corrupt(key, "%d fields", len(flat)/2)
	}
	out := make([]StoredOutcome, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		o, err := parseUint8(key, "outcome", flat[i])
		if err != nil {
			return nil, err
		}
		occ, rec, ok := strings.Cut(flat[i+1], sep)
		if !ok {
			return nil, corrupt(key, "outcome value has no separator")
		}
		occurred, err := parseMS(key, "outcome time", occ)
		if err != nil {
			return nil, err
		}
		recorded, err := parseMS(key, "outcome time", rec)
		if err != nil {
			return nil, err
		}
		out = append(out, StoredOutcome{Outcome: decision.Outcome(o), OccurredAt: occurred, RecordedAt: recorded})
	}
	slices.SortFunc(out, func(a, b StoredOutcome) int {
		if c := a.RecordedAt.Compare(b.RecordedAt); c != 0 {
			return c
		}
		return int(a.Outcome) - int(b.Outcome)
	})
	return out, nil
}

// commitArgs validates c and encodes what both stores write.
type commitArgs struct {
	keys     customerKeys
	event    string // event key
	record   string // decision key
	summary  string
	message  string // member, "" for none
	ledger   []string
	stops    [][2]string // field, value
	features [][2]string // name, JSON value; "" value deletes
	delete   []bool
}

func prepareCommit(c *Commit) (commitArgs, error) {
	var a commitArgs
	if err := checkID("customer id", c.CustomerID, true); err != nil {
		return a, err
	}
	if err := checkID("event id", c.EventID, true); err != nil {
		return a, err
	}
	b, err := bucketOfDecisionID(c.DecisionID)
	if err != nil {
		return a, fmt.Errorf("%w: decision id %q is not one NewDecisionID makes", ErrInvalid, c.DecisionID)
	}
	a.keys = keysOf(c.CustomerID)
	if b != a.keys.bucket {
		return a, fmt.Errorf("%w: decision id %q is not of the customer's bucket", ErrInvalid, c.DecisionID)
	}
	if len(c.Record) == 0 || len(c.Record) > maxRecordBytes {
		return a, fmt.Errorf("%w: record is %d bytes, want 1 to %d", ErrInvalid, len(c.Record), maxRecordBytes)
	}
	if err := checkSummary(&c.Summary); err != nil {
		return a, err
	}
	a.event = key(keyEvent, b, c.CustomerID, c.EventID)
	a.record = key(keyDecision, b, "", c.DecisionID)
	a.summary = summaryValue(&c.Summary)
	e := &c.Effects
	if e.Message != nil {
		if err := checkMessage(e.Message); err != nil {
			return a, err
		}
		a.message = messageMember(e.Message)
	}
	for i := range e.CapChecks {
		if err := checkID("cap check name", e.CapChecks[i].Name, true); err != nil {
			return a, err
		}
	}
	for i := range e.LedgerChecks {
		lc := &e.LedgerChecks[i]
		if err := checkID("ledger check name", lc.Name, true); err != nil {
			return a, err
		}
		if err := checkLedger(&decision.LedgerEntry{CardRef: lc.CardRef, MerchantID: lc.MerchantID, Currency: lc.Currency}); err != nil {
			return a, err
		}
	}
	for i := range e.StopChecks {
		sc := &e.StopChecks[i]
		if err := checkID("stop check name", sc.Name, true); err != nil {
			return a, err
		}
		if err := checkStop(&decision.RetryStop{CardRef: sc.CardRef, MerchantID: sc.MerchantID}); err != nil {
			return a, err
		}
	}
	a.ledger = make([]string, 0, len(e.Ledger))
	for i := range e.Ledger {
		if err := checkLedger(&e.Ledger[i]); err != nil {
			return a, err
		}
		a.ledger = append(a.ledger, ledgerMember(&e.Ledger[i]))
	}
	for i := range e.Stops {
		if err := checkStop(&e.Stops[i]); err != nil {
			return a, err
		}
		a.stops = append(a.stops, [2]string{stopField(&e.Stops[i]), stopValue(&e.Stops[i])})
	}
	for _, f := range e.Features {
		if f.Value == nil {
			if err := checkID("feature name", f.Name, true); err != nil {
				return a, err
			}
			a.features = append(a.features, [2]string{f.Name, ""})
			a.delete = append(a.delete, true)
			continue
		}
		v, err := featureValue(f.Name, f.Value)
		if err != nil {
			return a, err
		}
		a.features = append(a.features, [2]string{f.Name, v})
		a.delete = append(a.delete, false)
	}
	return a, nil
}

// outcomeArgs validates o and encodes what both stores write.
type outcomeArgs struct {
	keys     customerKeys
	record   string
	outcomes string
	field    string
	value    string
	release  string // message member, "" for none
	failCh   string // channel, "" for none
	failTill int64
	resetRef string // card_ref, "" for none
}

func prepareOutcome(o *OutcomeCommit) (outcomeArgs, error) {
	var a outcomeArgs
	if err := checkID("customer id", o.CustomerID, true); err != nil {
		return a, err
	}
	b, err := bucketOfDecisionID(o.DecisionID)
	if err != nil {
		return a, fmt.Errorf("outcome of decision %q: %w", o.DecisionID, ErrNotFound)
	}
	a.keys = keysOf(o.CustomerID)
	if b != a.keys.bucket {
		return a, fmt.Errorf("%w: decision id %q is not of the customer's bucket", ErrInvalid, o.DecisionID)
	}
	if o.Outcome == decision.OutcomeUnspecified {
		return a, fmt.Errorf("%w: outcome is unspecified", ErrInvalid)
	}
	a.record = key(keyDecision, b, "", o.DecisionID)
	a.outcomes = key(keyOutcomes, b, "", o.DecisionID)
	a.field = utoa(o.Outcome)
	a.value = outcomeValue(o.OccurredAt, o.Now)
	if m := o.Effects.ReleaseMessage; m != nil {
		if err := checkMessage(m); err != nil {
			return a, err
		}
		a.release = messageMember(m)
	}
	if f := o.Effects.FailChannel; f != nil {
		a.failCh = utoa(f.Channel)
		a.failTill = ms(f.Until)
	}
	if r := o.Effects.ResetLedger; r != nil {
		if err := checkID("reset card_ref", r.CardRef, true); err != nil {
			return a, err
		}
		a.resetRef = r.CardRef
	}
	return a, nil
}

// Narrowing is what a decision on an event reads of the customer's retry ledger and recent
// decisions (decision.Narrow): LoadNarrow decodes only that and counts the rest, so that a
// decision's cost does not grow with the customer's history.
type Narrowing struct {
	// Payment is set for an event whose card's ledger entries the decision reads (CardRef);
	// without it, it reads none (decision.NarrowedLedger).
	Payment bool
	CardRef string
}

// decodeNarrow decodes r as decode does and decision.Narrow then narrows it for n, without
// building what Narrow drops: every ledger entry and recent decision is still parsed (a
// malformed one is ErrCorrupt, as with decode) and counted, but only the entries of n's card
// and the newest decision.RecentShown decisions are kept.
func (r *rawState) decodeNarrow(k *customerKeys, now time.Time, n Narrowing) (decision.State, error) {
	st, err := r.decodeRest(k, now)
	if err != nil {
		return decision.State{}, err
	}
	st.Narrowed = true

	// The ledger: count the declines of the last 30 days on any card, keep n's card's entries.
	flat := r.ledger
	if len(flat)%2 != 0 || len(flat)/2 > maxMembers {
		return decision.State{}, corrupt(k.ledger, "%d members", len(flat)/2)
	}
	since := now.Add(-30 * 24 * time.Hour)
	matches := 0
	for i := 0; i < len(flat); i += 2 {
		score, err := parseScore(k.ledger, flat[i+1])
		if err != nil {
			return decision.State{}, err
		}
		e, err := decodeLedgerEntry(k.ledger, flat[i], score)
		if err != nil {
			return decision.State{}, err
		}
		if e.Kind == decision.LedgerDecline && !e.At.Before(since) {
			st.LedgerDeclines30d++
		}
		if n.Payment && e.CardRef == n.CardRef {
			matches++
		}
	}
	if matches > 0 {
		// One allocation of the exact size; the entries parsed again are few.
		st.Ledger = make([]decision.LedgerEntry, 0, matches)
		for i := 0; i < len(flat); i += 2 {
			score, _ := parseScore(k.ledger, flat[i+1]) // checked above
			if e, _ := decodeLedgerEntry(k.ledger, flat[i], score); e.CardRef == n.CardRef {
				st.Ledger = append(st.Ledger, e)
			}
		}
	}

	// The recent decisions: count those of the last 24 hours, keep the newest few.
	if len(r.recent) > recentLen {
		return decision.State{}, corrupt(k.recent, "%d entries", len(r.recent))
	}
	daySince := now.Add(-24 * time.Hour)
	keep := min(len(r.recent), decision.RecentShown)
	for _, v := range r.recent[keep:] {
		at, err := recentTime(k.recent, v)
		if err != nil {
			return decision.State{}, err
		}
		if !at.Before(daySince) {
			st.RecentDecisions24h++
		}
	}
	if st.Recent, err = decodeRecent(k.recent, r.recent[:keep]); err != nil {
		return decision.State{}, err
	}
	for i := range st.Recent {
		if !st.Recent[i].DecidedAt.Before(daySince) {
			st.RecentDecisions24h++
		}
	}
	return st, nil
}

// recentTime checks a recent-decision entry as decodeRecent does and returns its time,
// without building the summary.
func recentTime(key, v string) (time.Time, error) {
	var f [5]string
	n := 0
	for n < len(f) {
		field, rest, more := strings.Cut(v, sep)
		f[n] = field
		n++
		if !more {
			break
		}
		v = rest
	}
	if n < len(f) {
		return time.Time{}, corrupt(key, "summary has %d fields, want at least 5", n)
	}
	if _, err := parseUint8(key, "summary event type", f[2]); err != nil {
		return time.Time{}, err
	}
	if _, err := parseUint8(key, "summary action", f[3]); err != nil {
		return time.Time{}, err
	}
	return parseMS(key, "summary time", f[4])
}

package decision

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// payInput is a Visa "51" decline of a merchant-initiated payment for a customer in London.
func payInput(t testing.TB) *Input {
	in := msgInput(t)
	in.Event = Event{ID: "p1", Type: EventPaymentFailed, Payment: &PaymentFailure{
		DeclineCode: "51", Network: NetworkVisa, AmountMinor: 4999, Currency: "GBP", Acquirer: "acq-a",
		CardRef: "tok_1", Initiator: InitiatorMerchant, MerchantID: "m1",
	}}
	return in
}

// payCandidates are what a typical policy proposes on a decline: retry, else ask for another
// payment method, else escalate suspected fraud.
func payCandidates() []Candidate {
	return []Candidate{
		{RuleID: "retry", Priority: 10, Action: ActionRetry},
		{RuleID: "ask", Priority: 5, Action: ActionMessage, Purpose: PurposeService, Channels: []Channel{ChannelEmail}},
	}
}

func TestDeclineTable(t *testing.T) {
	rows, err := readDeclineRows(declineCodesCSV)
	if err != nil {
		t.Fatalf("readDeclineRows() = %v", err)
	}
	if len(rows) != 36 {
		t.Errorf("the reference table has %d rows, want 36", len(rows))
	}
	g := mustGuardrails(t, GuardrailConfig{}, PaymentConfig{})
	for _, r := range rows {
		t.Run(r.code, func(t *testing.T) {
			// The row's own columns agree with each other.
			if (r.retryAllowed == "no") != (r.class == ClassNever) {
				t.Errorf("row %s: network_retry_allowed %q with class %s: \"no\" must be exactly NEVER", r.code, r.retryAllowed, r.class)
			}
			if r.retryAllowed == "yes_after_data_change" && r.class != ClassFixData {
				t.Errorf("row %s: retry after data change with class %s, want FIX_DATA", r.code, r.class)
			}
			if (r.category == 1) != (r.class == ClassNever) {
				t.Errorf("row %s: Visa category %d with class %s: category 1 must be exactly NEVER", r.code, r.category, r.class)
			}
			if got := visaCategory(r.code); got != int(r.category) {
				t.Errorf("visaCategory(%q) = %d, want %d", r.code, got, r.category)
			}
			for _, n := range []Network{NetworkVisa, NetworkMastercard, NetworkAmex, NetworkOther} {
				for _, ini := range []Initiator{InitiatorCustomer, InitiatorMerchant} {
					want := r.class
					if (r.code == "1A" || r.code == "N7") && ini != InitiatorCustomer {
						want = ClassNoAuto
					}
					if got := Classify(n, r.code, "", ini); got != want {
						t.Errorf("Classify(%d, %q, \"\", %d) = %s, want %s", n, r.code, ini, got, want)
					}
					if got := Classify(n, strings.ToLower(r.code), "", ini); got != want {
						t.Errorf("Classify(%d, %q, \"\", %d) = %s, want %s (case-insensitive)", n, strings.ToLower(r.code), ini, got, want)
					}
				}
			}

			// The resulting action under a retry-then-message policy.
			in := payInput(t)
			in.Event.Payment.DeclineCode = r.code
			in.Event.Payment.Initiator = InitiatorCustomer
			res := simDecide(g, in, payCandidates())
			wantAction := ActionMessage
			wantCode, _ := classCode(r.class)
			if r.class == ClassLater || r.class == ClassGeneric {
				wantAction = ActionRetry
			}
			if res.Action != wantAction || !hasReason(res.Reasons, wantCode) {
				t.Errorf("decide(%s) = %v %v, want %v with %s", r.code, res.Action, codes(res.Reasons), wantAction, wantCode)
			}
			stop := len(res.Effects.Stops) > 0
			if stop != (r.class == ClassNever) {
				t.Errorf("decide(%s) stops = %v, want a hard stop only for NEVER", r.code, res.Effects.Stops)
			}
		})
	}
}

func TestCodeKeys(t *testing.T) {
	for want, code := range map[int]string{key01: "01", key02: "02", key03: "03", key04: "04", key21: "21", key24: "24",
		key25: "25", key26: "26", key27: "27", key28: "28", key29: "29", key30: "30", key51: "51", key91: "91", key96: "96",
		key1A: "1A", keyN7: "N7", keyR0: "R0", keyR1: "R1", keyR3: "R3"} {
		if got := codeKey(code); got != want {
			t.Errorf("codeKey(%q) = %d, want %d", code, got, want)
		}
	}
	for _, bad := range []string{"", "   ", "123", "5-", "é", "\x00\x00"} {
		if got := codeKey(bad); got != -1 {
			t.Errorf("codeKey(%q) = %d, want -1", bad, got)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		n    Network
		code string
		mac  string
		ini  Initiator
		want DeclineClass
	}{
		{"unknown code is generic", NetworkVisa, "ZZ", "", InitiatorMerchant, ClassGeneric},
		{"empty code is generic", NetworkVisa, "", "", InitiatorMerchant, ClassGeneric},
		{"long code is generic", NetworkVisa, "051", "", InitiatorMerchant, ClassGeneric},
		{"single digit is zero-padded", NetworkVisa, "4", "", InitiatorMerchant, ClassNever},
		{"spaces are trimmed", NetworkVisa, " 51 ", "", InitiatorMerchant, ClassLater},
		{"MAC 03 overrides a soft decline", NetworkMastercard, "51", "03", InitiatorMerchant, ClassNever},
		{"MAC 21 overrides a soft decline", NetworkMastercard, "05", "21", InitiatorCustomer, ClassNever},
		{"MAC 03 overrides an unknown code", NetworkMastercard, "ZZ", "03", InitiatorMerchant, ClassNever},
		{"MAC 3 is MAC 03", NetworkMastercard, "51", "3", InitiatorMerchant, ClassNever},
		{"MAC is Mastercard only", NetworkVisa, "51", "03", InitiatorMerchant, ClassLater},
		{"MAC 01 makes a soft decline fix-data", NetworkMastercard, "51", "01", InitiatorMerchant, ClassFixData},
		{"MAC 04 makes a generic decline fix-data", NetworkMastercard, "05", "04", InitiatorMerchant, ClassFixData},
		{"MAC 01 keeps no-auto", NetworkMastercard, "59", "01", InitiatorMerchant, ClassNoAuto},
		{"MAC 01 keeps never", NetworkMastercard, "41", "01", InitiatorMerchant, ClassNever},
		{"MAC 25 keeps the class", NetworkMastercard, "51", "25", InitiatorMerchant, ClassLater},
		{"MAC 02 keeps the class", NetworkMastercard, "05", "02", InitiatorMerchant, ClassGeneric},
		{"1A in a customer session is fix-data", NetworkVisa, "1A", "", InitiatorCustomer, ClassFixData},
		{"1A merchant-initiated is no-auto", NetworkVisa, "1A", "", InitiatorMerchant, ClassNoAuto},
		{"N7 with unknown initiator is no-auto", NetworkMastercard, "N7", "", InitiatorUnspecified, ClassNoAuto},
		{"n7 lower case", NetworkVisa, "n7", "", InitiatorCustomer, ClassFixData},
		{"R0 stop payment", NetworkVisa, "R0", "", InitiatorMerchant, ClassNever},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.n, tt.code, tt.mac, tt.ini); got != tt.want {
				t.Errorf("Classify(%d, %q, %q, %d) = %s, want %s", tt.n, tt.code, tt.mac, tt.ini, got, tt.want)
			}
		})
	}
	if got := ClassNone.String(); got != "" {
		t.Errorf("ClassNone.String() = %q, want \"\"", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { Classify(NetworkMastercard, "51", "25", InitiatorMerchant) }); allocs != 0 {
		t.Errorf("Classify allocates %v times, want 0", allocs)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(uint8(NetworkVisa), "51", "", uint8(InitiatorMerchant))
	f.Add(uint8(NetworkMastercard), "05", "03", uint8(InitiatorCustomer))
	f.Fuzz(func(t *testing.T, n uint8, code, mac string, ini uint8) {
		c := Classify(Network(n), code, mac, Initiator(ini))
		if c < ClassNever || c > ClassNoAuto {
			t.Fatalf("Classify(%d, %q, %q, %d) = %d, want a class", n, code, mac, ini, c)
		}
		if c2 := Classify(Network(n), code, mac, Initiator(ini)); c2 != c {
			t.Fatalf("Classify is not deterministic: %s then %s", c, c2)
		}
		if lookupCode(code).class == ClassNever && c != ClassNever {
			t.Fatalf("Classify(%d, %q, %q, %d) = %s, want NEVER for a NEVER code", n, code, mac, ini, c)
		}
		if Network(n) == NetworkMastercard && codeKey(mac) == key03 && c != ClassNever {
			t.Fatalf("Classify(MC, %q, %q) = %s, want NEVER for MAC 03", code, mac, c)
		}
		_ = macWait(codeKey(mac), time.Hour)
		_ = visaCategory(code)
	})
}

// retryWant is what a RETRY candidate became.
type retryWant struct {
	Blocked   bool
	NotBefore time.Time
	Acquirer  string
	Attempt   int
	Codes     []string
}

func TestRetryGuardrails(t *testing.T) {
	now := mustTime(t, "2026-06-10T11:00:00Z")
	entry := func(k LedgerKind, ago time.Duration) LedgerEntry {
		return LedgerEntry{Kind: k, EventID: "old", CardRef: "tok_1", MerchantID: "m1", AmountMinor: 4999, Currency: "GBP",
			Initiator: InitiatorMerchant, Network: NetworkVisa, At: now.Add(-ago)}
	}
	tests := []struct {
		name string
		pc   PaymentConfig
		edit func(in *Input, c *Candidate)
		want retryWant
	}{
		{
			name: "first soft decline: back-off 4h, same acquirer",
			edit: func(in *Input, c *Candidate) {},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "the rule's delay when longer",
			edit: func(in *Input, c *Candidate) { c.Delay = 6 * time.Hour },
			want: retryWant{NotBefore: now.Add(6 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "second retry backs off 24h",
			edit: func(in *Input, c *Candidate) {
				in.State.Ledger = []LedgerEntry{entry(LedgerDecline, 5*time.Hour), entry(LedgerRetry, 5*time.Hour)}
			},
			want: retryWant{NotBefore: now.Add(24 * time.Hour), Acquirer: "acq-a", Attempt: 2},
		},
		{
			name: "the last back-off step repeats",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 10}},
			edit: func(in *Input, c *Candidate) {
				for i := range 5 {
					in.State.Ledger = append(in.State.Ledger, entry(LedgerDecline, time.Duration(i+1)*day), entry(LedgerRetry, time.Duration(i+1)*day))
				}
			},
			want: retryWant{NotBefore: now.Add(72 * time.Hour), Acquirer: "acq-a", Attempt: 6},
		},
		{
			name: "Mastercard MAC 25: not before 24h",
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network, in.Event.Payment.MerchantAdviceCode = NetworkMastercard, "25"
			},
			want: retryWant{NotBefore: now.Add(24 * time.Hour), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodeMACRetryAfter}},
		},
		{
			name: "Mastercard MAC 25 counts from a decline reported ahead of our clock",
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network, in.Event.Payment.MerchantAdviceCode = NetworkMastercard, "25"
				in.Event.OccurredAt = now.Add(2 * time.Minute)
			},
			want: retryWant{NotBefore: now.Add(24*time.Hour + 2*time.Minute), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodeMACRetryAfter}},
		},
		{
			name: "Mastercard MAC 30: not before 10 days",
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network, in.Event.Payment.MerchantAdviceCode = NetworkMastercard, "30"
			},
			want: retryWant{NotBefore: now.Add(10 * day), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodeMACRetryAfter}},
		},
		{
			name: "Mastercard MAC 24 under a longer back-off",
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network, in.Event.Payment.MerchantAdviceCode = NetworkMastercard, "24"
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodeMACRetryAfter}},
		},
		{
			name: "Mastercard MAC 02: 72h",
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network, in.Event.Payment.MerchantAdviceCode = NetworkMastercard, "02"
			},
			want: retryWant{NotBefore: now.Add(72 * time.Hour), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodeMACRetryAfter}},
		},
		{
			name: "Mastercard MAC 03: never",
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network, in.Event.Payment.MerchantAdviceCode = NetworkMastercard, "03"
			},
			want: retryWant{Blocked: true, Codes: []string{CodeMACDoNotRetry}},
		},
		{
			name: "Mastercard MAC 21: never",
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network, in.Event.Payment.MerchantAdviceCode = NetworkMastercard, "21"
			},
			want: retryWant{Blocked: true, Codes: []string{CodeMACDoNotRetry}},
		},
		{
			name: "category 1: never",
			edit: func(in *Input, c *Candidate) { in.Event.Payment.DeclineCode = "43" },
			want: retryWant{Blocked: true, Codes: []string{CodeHardDecline}},
		},
		{
			name: "expired card: fix data",
			edit: func(in *Input, c *Candidate) { in.Event.Payment.DeclineCode = "54" },
			want: retryWant{Blocked: true, Codes: []string{CodeFixDataDecline}},
		},
		{
			name: "suspected fraud: no automatic retry",
			edit: func(in *Input, c *Candidate) { in.Event.Payment.DeclineCode = "59" },
			want: retryWant{Blocked: true, Codes: []string{CodeNoAutoRetry}},
		},
		{
			name: "a stored stop on the credential",
			edit: func(in *Input, c *Candidate) {
				in.State.Stops = []RetryStop{{CardRef: "tok_1", Until: now.Add(day), ReasonCode: CodeMACDoNotRetry}}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeMACDoNotRetry}},
		},
		{
			name: "a ledger that overflowed stops the card",
			edit: func(in *Input, c *Candidate) {
				in.State.Stops = []RetryStop{{CardRef: "tok_1", Until: now.Add(day), ReasonCode: CodeLedgerFull}}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeLedgerFull}},
		},
		{
			name: "an ended recurring sequence for this merchant",
			edit: func(in *Input, c *Candidate) {
				in.State.Stops = []RetryStop{{CardRef: "tok_1", MerchantID: "m1", Until: now.Add(day), ReasonCode: CodeRecurringEnded}}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeRecurringEnded}},
		},
		{
			name: "a stop for another merchant does not apply",
			edit: func(in *Input, c *Candidate) {
				in.State.Stops = []RetryStop{{CardRef: "tok_1", MerchantID: "m2", Until: now.Add(day), ReasonCode: CodeRecurringEnded}}
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "an expired stop does not apply",
			edit: func(in *Input, c *Candidate) {
				in.State.Stops = []RetryStop{{CardRef: "tok_1", Until: now, ReasonCode: CodeHardDecline}}
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "business limit for LATER",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 1}},
			edit: func(in *Input, c *Candidate) {
				in.State.Ledger = []LedgerEntry{entry(LedgerDecline, day), entry(LedgerRetry, day)}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeRetryLimit}},
		},
		{
			name: "business limit 0 means no automatic retry",
			pc:   PaymentConfig{RetryLimits: map[string]int{"generic": 0}},
			edit: func(in *Input, c *Candidate) { in.Event.Payment.DeclineCode = "05" },
			want: retryWant{Blocked: true, Codes: []string{CodeRetryLimit}},
		},
		{
			name: "Visa 20 reattempts in 30 days",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				for i := range 20 {
					in.State.Ledger = append(in.State.Ledger, entry(LedgerRetry, time.Duration(i+1)*time.Hour))
				}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeNetworkRetryLimit}},
		},
		{
			name: "Visa reattempts made elsewhere count through their declines",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				for i := range 20 {
					in.State.Ledger = append(in.State.Ledger, entry(LedgerDecline, time.Duration(i+1)*time.Hour))
				}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeNetworkRetryLimit}},
		},
		{
			name: "a policy can lower the Visa limit",
			pc:   PaymentConfig{NetworkLimits: NetworkLimits{VisaReattempts30d: ptr(2)}, RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				in.State.Ledger = []LedgerEntry{entry(LedgerRetry, day), entry(LedgerRetry, 2*day)}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeNetworkRetryLimit}},
		},
		{
			name: "CIT reattempts do not count against MIT",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				for i := range 20 {
					e := entry(LedgerRetry, time.Duration(i+1)*time.Hour)
					e.Initiator = InitiatorCustomer
					in.State.Ledger = append(in.State.Ledger, e)
				}
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "reattempts older than 30 days do not count",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				for i := range 20 {
					in.State.Ledger = append(in.State.Ledger, entry(LedgerRetry, 30*day+time.Duration(i+1)*time.Hour))
				}
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "Mastercard: 9 declines in 24h leave no room for a 10th decline and a retry",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network = NetworkMastercard
				for i := range 9 {
					e := entry(LedgerDecline, time.Duration(i+1)*time.Hour)
					e.MerchantID, e.AmountMinor = "other", 1 // any merchant and amount count
					in.State.Ledger = append(in.State.Ledger, e)
				}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeNetworkRetryLimit}},
		},
		{
			name: "Mastercard: 8 declines in 24h still allow one retry",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network = NetworkMastercard
				for i := range 8 {
					in.State.Ledger = append(in.State.Ledger, entry(LedgerDecline, time.Duration(i+1)*time.Hour))
				}
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "Mastercard: 34 attempts in 30 days",
			pc:   PaymentConfig{RetryLimits: map[string]int{"later": 20}},
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.Network = NetworkMastercard
				for i := range 34 {
					in.State.Ledger = append(in.State.Ledger, entry(LedgerDecline, 2*day+time.Duration(i)*time.Hour*12))
				}
			},
			want: retryWant{Blocked: true, Codes: []string{CodeNetworkRetryLimit}},
		},
		{
			name: "issuer inoperative: another acquirer",
			pc:   PaymentConfig{Acquirers: map[string][]string{"visa": {"acq-a", "acq-b"}}},
			edit: func(in *Input, c *Candidate) { in.Event.Payment.DeclineCode = "91" },
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-b", Attempt: 1, Codes: []string{CodeAcquirerSwitch}},
		},
		{
			name: "system malfunction with the second acquirer declining: the first",
			pc:   PaymentConfig{Acquirers: map[string][]string{"visa": {"acq-a", "acq-b"}}},
			edit: func(in *Input, c *Candidate) {
				in.Event.Payment.DeclineCode = "96"
				in.Event.Payment.Acquirer = "acq-b"
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodeAcquirerSwitch}},
		},
		{
			name: "other declines keep the acquirer",
			pc:   PaymentConfig{Acquirers: map[string][]string{"visa": {"acq-b", "acq-a"}}},
			edit: func(in *Input, c *Candidate) {},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "no acquirer reported: the first listed",
			pc:   PaymentConfig{Acquirers: map[string][]string{"visa": {"acq-b", "acq-a"}}},
			edit: func(in *Input, c *Candidate) { in.Event.Payment.Acquirer = "" },
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-b", Attempt: 1},
		},
		{
			name: "insufficient funds aimed after payday",
			edit: func(in *Input, c *Candidate) { in.State.Features["next_payday"] = "2026-06-13" },
			want: retryWant{NotBefore: mustTime(t, "2026-06-13T05:00:00Z"), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodePaydayTargeted}},
		},
		{
			name: "payday as an RFC 3339 time",
			edit: func(in *Input, c *Candidate) { in.State.Features["next_payday"] = "2026-06-12T09:00:00Z" },
			want: retryWant{NotBefore: mustTime(t, "2026-06-12T09:00:00Z"), Acquirer: "acq-a", Attempt: 1, Codes: []string{CodePaydayTargeted}},
		},
		{
			name: "payday too far away is ignored",
			edit: func(in *Input, c *Candidate) { in.State.Features["next_payday"] = "2026-07-30" },
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "payday only for insufficient funds",
			edit: func(in *Input, c *Candidate) {
				in.State.Features["next_payday"] = "2026-06-13"
				in.Event.Payment.DeclineCode = "61"
			},
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "malformed payday is ignored",
			edit: func(in *Input, c *Candidate) { in.State.Features["next_payday"] = 12.5 },
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "retry quiet hours",
			pc:   PaymentConfig{RetryQuietHours: &QuietWindow{Start: "00:00", End: "06:00"}},
			edit: func(in *Input, c *Candidate) { c.Delay = 13 * time.Hour }, // 01:00 BST
			want: retryWant{NotBefore: mustTime(t, "2026-06-11T05:00:00Z"), Acquirer: "acq-a", Attempt: 1},
		},
		{
			name: "vulnerable customer: no automated retry",
			edit: func(in *Input, c *Candidate) { in.Customer.Vulnerable = true },
			want: retryWant{Blocked: true, Codes: []string{CodeVulnerableCustomer}},
		},
		{
			name: "fraud hold: no automated retry",
			edit: func(in *Input, c *Candidate) { in.State.Features["fraud_hold"] = true },
			want: retryWant{Blocked: true, Codes: []string{CodeFraudHold}},
		},
		{
			name: "state unknown: no retry",
			edit: func(in *Input, c *Candidate) { in.Degraded = true },
			want: retryWant{Blocked: true, Codes: []string{CodeStoreUnavailable}},
		},
		{
			name: "not a payment event",
			edit: func(in *Input, c *Candidate) { in.Event.Type = EventInvoiceOverdue },
			want: retryWant{Blocked: true, Codes: []string{CodeRetryNotApplicable}},
		},
		{
			name: "no card reference",
			edit: func(in *Input, c *Candidate) { in.Event.Payment.CardRef = "" },
			want: retryWant{Blocked: true, Codes: []string{CodeNetworkRetryLimit}},
		},
		{
			name: "opt-out does not affect retries",
			edit: func(in *Input, c *Candidate) { in.State.Features["opted_out"] = true },
			want: retryWant{NotBefore: now.Add(4 * time.Hour), Acquirer: "acq-a", Attempt: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustGuardrails(t, GuardrailConfig{}, tt.pc)
			in := payInput(t)
			c := &Candidate{RuleID: "retry", Action: ActionRetry}
			tt.edit(in, c)
			f := g.facts(in)
			g.apply(in, &f, c, nil)
			got := retryWant{Blocked: c.Blocked, Codes: codes(c.Reasons)}
			if c.Retry != nil {
				got.NotBefore, got.Acquirer, got.Attempt = c.Retry.NotBefore, c.Retry.Acquirer, c.Retry.Attempt
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("apply(RETRY) mismatch (-want +got):\n%s", diff)
			}
			if c.Blocked && c.Retry != nil {
				t.Errorf("apply(RETRY) blocked but resolved a retry %+v", c.Retry)
			}
		})
	}
}

func TestPaymentEffects(t *testing.T) {
	now := mustTime(t, "2026-06-10T11:00:00Z")
	g := mustGuardrails(t, GuardrailConfig{}, PaymentConfig{})
	decline := LedgerEntry{Kind: LedgerDecline, EventID: "p1", CardRef: "tok_1", MerchantID: "m1", AmountMinor: 4999,
		Currency: "GBP", Initiator: InitiatorMerchant, Network: NetworkVisa, At: now}
	retry := decline
	retry.Kind = LedgerRetry

	t.Run("retry", func(t *testing.T) {
		res := simDecide(g, payInput(t), payCandidates())
		want := Effects{
			Ledger: []LedgerEntry{decline, retry},
			LedgerChecks: []LedgerCheck{
				{Name: checkVisaReattempts, Kind: LedgerRetry, CardRef: "tok_1", AmountMinor: 4999, Currency: "GBP", Initiator: InitiatorMerchant, Since: now.Add(-30 * day), Limit: 20},
				{Name: checkVisaDeclines, Kind: LedgerDecline, CardRef: "tok_1", AmountMinor: 4999, Currency: "GBP", Initiator: InitiatorMerchant, Since: now.Add(-30 * day), Limit: 20},
				{Name: checkBusiness, Kind: LedgerRetry, CardRef: "tok_1", MerchantID: "m1", AmountMinor: 4999, Currency: "GBP", Initiator: InitiatorMerchant, Since: now.Add(-30 * day), Limit: 4},
			},
			StopChecks: []StopCheck{{Name: checkRetryStop, CardRef: "tok_1", MerchantID: "m1", At: now}},
		}
		if diff := cmp.Diff(want, res.Effects); diff != "" {
			t.Errorf("effects(RETRY) mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{CodeSoftDecline}, codes(res.Reasons)); diff != "" {
			t.Errorf("reasons mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("mastercard checks", func(t *testing.T) {
		in := payInput(t)
		in.Event.Payment.Network = NetworkMastercard
		res := simDecide(g, in, payCandidates())
		var names []string
		for _, c := range res.Effects.LedgerChecks {
			names = append(names, c.Name)
		}
		if diff := cmp.Diff([]string{checkMCRolling, checkMCDay, checkMC30d, checkBusiness}, names); diff != "" {
			t.Errorf("effects(RETRY).LedgerChecks names mismatch (-want +got):\n%s", diff)
		}
		if got, want := res.Effects.LedgerChecks[1].Since, mustTime(t, "2026-06-10T00:00:00Z"); !got.Equal(want) {
			t.Errorf("calendar-day check since %s, want %s", got, want)
		}
	})
	stops := []struct {
		name    string
		network Network
		code    string
		mac     string
		want    RetryStop
	}{
		{"MAC 03 stops the card", NetworkMastercard, "51", "03", RetryStop{CardRef: "tok_1", Until: now.Add(30 * day), ReasonCode: CodeMACDoNotRetry}},
		{"MAC 21 ends the sequence with the merchant", NetworkMastercard, "51", "21", RetryStop{CardRef: "tok_1", MerchantID: "m1", Until: now.Add(30 * day), ReasonCode: CodeMACDoNotRetry}},
		{"R1 ends the sequence with the merchant", NetworkVisa, "R1", "", RetryStop{CardRef: "tok_1", MerchantID: "m1", Until: now.Add(30 * day), ReasonCode: CodeRecurringEnded}},
		{"lost card stops the card", NetworkVisa, "41", "", RetryStop{CardRef: "tok_1", Until: now.Add(30 * day), ReasonCode: CodeHardDecline}},
	}
	for _, tt := range stops {
		t.Run(tt.name, func(t *testing.T) {
			in := payInput(t)
			in.Event.Payment.Network, in.Event.Payment.DeclineCode, in.Event.Payment.MerchantAdviceCode = tt.network, tt.code, tt.mac
			res := simDecide(g, in, payCandidates())
			if res.Action != ActionMessage {
				t.Errorf("decide() = %v, want MESSAGE", res.Action)
			}
			if diff := cmp.Diff([]RetryStop{tt.want}, res.Effects.Stops); diff != "" {
				t.Errorf("effects().Stops mismatch (-want +got):\n%s", diff)
			}
			if len(res.Effects.LedgerChecks) != 0 || len(res.Effects.Ledger) != 1 {
				t.Errorf("effects() ledger = %v checks %v, want only the decline", res.Effects.Ledger, res.Effects.LedgerChecks)
			}
		})
	}
	t.Run("59 escalates to fraud through the policy", func(t *testing.T) {
		in := payInput(t)
		in.Event.Payment.DeclineCode = "59"
		cands := append(payCandidates(), Candidate{RuleID: "fraud", Priority: 20, Action: ActionEscalate, Queue: "fraud"})
		res := simDecide(g, in, cands)
		if res.Action != ActionEscalate || res.Escalate.Queue != "fraud" || !hasReason(res.Reasons, CodeNoAutoDecline) {
			t.Errorf("decide(59) = %v %+v %v, want ESCALATE to fraud with %s", res.Action, res.Escalate, codes(res.Reasons), CodeNoAutoDecline)
		}
	})
}

func TestConfigBounds(t *testing.T) {
	tests := []struct {
		name  string
		gc    GuardrailConfig
		pc    PaymentConfig
		field string
	}{
		{"quiet start too late", GuardrailConfig{QuietHours: QuietHoursConfig{Start: "22:00"}}, PaymentConfig{}, "guardrails.quiet_hours.start"},
		{"quiet end too early", GuardrailConfig{QuietHours: QuietHoursConfig{End: "07:00"}}, PaymentConfig{}, "guardrails.quiet_hours.end"},
		{"quiet hours switched off", GuardrailConfig{QuietHours: QuietHoursConfig{Start: "08:00", End: "08:00"}}, PaymentConfig{}, "guardrails.quiet_hours.start"},
		{"quiet start malformed", GuardrailConfig{QuietHours: QuietHoursConfig{Start: "9pm"}}, PaymentConfig{}, "guardrails.quiet_hours.start"},
		{"per-purpose quiet too short", GuardrailConfig{QuietHours: QuietHoursConfig{Purposes: map[string]QuietWindow{"marketing": {End: "06:00"}}}}, PaymentConfig{}, "guardrails.quiet_hours.purposes.marketing.end"},
		{"security quiet hours", GuardrailConfig{QuietHours: QuietHoursConfig{Purposes: map[string]QuietWindow{"security": {Start: "21:00"}}}}, PaymentConfig{}, "guardrails.quiet_hours.purposes.security"},
		{"unknown purpose", GuardrailConfig{QuietHours: QuietHoursConfig{Purposes: map[string]QuietWindow{"sales": {}}}}, PaymentConfig{}, "guardrails.quiet_hours.purposes.sales"},
		{"default cap raised above its ceiling", GuardrailConfig{Caps: []CapConfig{{Name: "sms_daily", Limit: ptr(3)}}}, PaymentConfig{}, "guardrails.caps[0].limit"},
		{"default cap reshaped", GuardrailConfig{Caps: []CapConfig{{Name: "all_daily", Window: "30d", Limit: ptr(2)}}}, PaymentConfig{}, "guardrails.caps[0]"},
		{"cap without limit", GuardrailConfig{Caps: []CapConfig{{Name: "x", Window: "24h"}}}, PaymentConfig{}, "guardrails.caps[0].limit"},
		{"cap negative", GuardrailConfig{Caps: []CapConfig{{Name: "x", Window: "24h", Limit: ptr(-1)}}}, PaymentConfig{}, "guardrails.caps[0].limit"},
		{"cap above window ceiling", GuardrailConfig{Caps: []CapConfig{{Name: "x", Window: "24h", Limit: ptr(6)}}}, PaymentConfig{}, "guardrails.caps[0].limit"},
		{"cap odd window", GuardrailConfig{Caps: []CapConfig{{Name: "x", Window: "12h", Limit: ptr(1)}}}, PaymentConfig{}, "guardrails.caps[0].window"},
		{"cap unknown channel", GuardrailConfig{Caps: []CapConfig{{Name: "x", Channel: "fax", Window: "24h", Limit: ptr(1)}}}, PaymentConfig{}, "guardrails.caps[0].channel"},
		{"cap unknown purpose", GuardrailConfig{Caps: []CapConfig{{Name: "x", Purposes: []string{"sales"}, Window: "24h", Limit: ptr(1)}}}, PaymentConfig{}, "guardrails.caps[0].purposes[0]"},
		{"cap duplicate", GuardrailConfig{Caps: []CapConfig{{Name: "x", Window: "24h", Limit: ptr(1)}, {Name: "x", Window: "7d", Limit: ptr(1)}}}, PaymentConfig{}, "guardrails.caps[1].name"},
		{"cooldown too short", GuardrailConfig{FailingChannelCooldown: "10m"}, PaymentConfig{}, "guardrails.failing_channel_cooldown"},
		{"default channel unknown", GuardrailConfig{DefaultChannels: []string{"email", "pigeon"}}, PaymentConfig{}, "guardrails.default_channels[1]"},
		{"retry limit above the Visa limit", GuardrailConfig{}, PaymentConfig{RetryLimits: map[string]int{"later": 21}}, "payments.retry_limits.later"},
		{"retry limit for a class never retried", GuardrailConfig{}, PaymentConfig{RetryLimits: map[string]int{"never": 1}}, "payments.retry_limits.never"},
		{"raise the Visa network limit", GuardrailConfig{}, PaymentConfig{NetworkLimits: NetworkLimits{VisaReattempts30d: ptr(25)}}, "payments.network_limits.visa_reattempts_30d"},
		{"raise the Mastercard daily limit", GuardrailConfig{}, PaymentConfig{NetworkLimits: NetworkLimits{MastercardDeclines24h: ptr(11)}}, "payments.network_limits.mastercard_declines_24h"},
		{"raise the Mastercard monthly limit", GuardrailConfig{}, PaymentConfig{NetworkLimits: NetworkLimits{MastercardAttempts30d: ptr(36)}}, "payments.network_limits.mastercard_attempts_30d"},
		{"back-off too short", GuardrailConfig{}, PaymentConfig{Backoff: []string{"4h", "1m"}}, "payments.backoff[1]"},
		{"back-off malformed", GuardrailConfig{}, PaymentConfig{Backoff: []string{"soon"}}, "payments.backoff[0]"},
		{"acquirers for an unknown network", GuardrailConfig{}, PaymentConfig{Acquirers: map[string][]string{"discover": {"a"}}}, "payments.acquirers.discover"},
		{"duplicate acquirer", GuardrailConfig{}, PaymentConfig{Acquirers: map[string][]string{"visa": {"a", "a"}}}, "payments.acquirers.visa[1]"},
		{"stops shorter than the scheme's 30 days", GuardrailConfig{}, PaymentConfig{StopFor: "7d"}, "payments.stop_for"},
		{"MAC 02 wait too short", GuardrailConfig{}, PaymentConfig{Mac02Wait: "1m"}, "payments.mac02_wait"},
		{"payday time malformed", GuardrailConfig{}, PaymentConfig{Payday: PaydayConfig{At: "25:00"}}, "payments.payday.at"},
		{"retry quiet hours malformed", GuardrailConfig{}, PaymentConfig{RetryQuietHours: &QuietWindow{Start: "x", End: "06:00"}}, "payments.retry_quiet_hours.start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newGuardrails(tt.gc, tt.pc)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("newGuardrails() = %v, want a *ConfigError", err)
			}
			if ce.Field != tt.field {
				t.Errorf("newGuardrails() error field = %q (%v), want %q", ce.Field, err, tt.field)
			}
		})
	}

	// Valid tuning within bounds is accepted and takes effect.
	g, err := newGuardrails(GuardrailConfig{
		QuietHours: QuietHoursConfig{Start: "20:00", End: "09:00", Purposes: map[string]QuietWindow{"marketing": {Start: "18:00", End: "11:00"}}},
		Caps:       []CapConfig{{Name: "sms_daily", Limit: ptr(0)}, {Name: "push_weekly", Channel: "push", Window: "7d", Limit: ptr(2)}},
	}, PaymentConfig{RetryLimits: map[string]int{"later": 20, "generic": 0}, Backoff: []string{"1h", "2d"}, StopFor: "90d"})
	if err != nil {
		t.Fatalf("newGuardrails(valid) = %v, want no error", err)
	}
	if got := g.quiet[PurposeService]; got != (quietPeriod{20 * 60, 9 * 60}) {
		t.Errorf("quiet[service] = %v, want 20:00-09:00", got)
	}
	if got := g.quiet[PurposeMarketing]; got != (quietPeriod{18 * 60, 11 * 60}) {
		t.Errorf("quiet[marketing] = %v, want 18:00-11:00", got)
	}
	if got := g.quiet[PurposeSecurity]; got != (quietPeriod{}) {
		t.Errorf("quiet[security] = %v, want exempt", got)
	}
	if n := len(g.capList); n != len(defaultCaps())+1 || g.capList[0].check.Limit != 0 {
		t.Errorf("caps = %+v, want the defaults with sms_daily 0 plus push_weekly", g.capList)
	}
	if diff := cmp.Diff([]time.Duration{time.Hour, 2 * day}, g.pay.backoff); diff != "" {
		t.Errorf("backoff mismatch (-want +got):\n%s", diff)
	}
}

package decision

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// granted returns consents granted for every channel in chs and every purpose in ps.
func granted(chs []Channel, ps ...Purpose) []Consent {
	var out []Consent
	for _, ch := range chs {
		for _, p := range ps {
			out = append(out, Consent{Channel: ch, Purpose: p, Granted: true})
		}
	}
	return out
}

// msgInput is a customer in London at 12:00 BST with consent for SMS and e-mail for service,
// collections and marketing.
func msgInput(t testing.TB) *Input {
	return &Input{
		Event: Event{ID: "e1", Type: EventInvoiceOverdue},
		Customer: Customer{
			ID:       "c1",
			Timezone: "Europe/London",
			Consents: granted([]Channel{ChannelSMS, ChannelEmail}, PurposeService, PurposeCollections, PurposeMarketing),
		},
		State: State{Features: map[string]any{}},
		Now:   mustTime(t, "2026-06-10T11:00:00Z"),
	}
}

// msgWant is what a MESSAGE candidate became.
type msgWant struct {
	Blocked  bool
	Channel  Channel
	SendAt   time.Time
	Fallback []Channel
	Codes    []string
}

func msgGot(c *Candidate) msgWant {
	w := msgWant{Blocked: c.Blocked, Codes: codes(c.Reasons)}
	if c.Message != nil {
		w.Channel, w.SendAt, w.Fallback = c.Message.Channel, c.Message.SendAt, c.Message.FallbackChannels
	}
	return w
}

func TestMessageGuardrails(t *testing.T) {
	noon := mustTime(t, "2026-06-10T11:00:00Z") // 12:00 BST
	next8 := mustTime(t, "2026-06-11T07:00:00Z")
	sent := func(ch Channel, p Purpose, at string) SentMessage {
		return SentMessage{DecisionID: "old", Channel: ch, Purpose: p, At: mustTime(t, at)}
	}
	tests := []struct {
		name string
		cfg  GuardrailConfig
		edit func(in *Input, c *Candidate)
		want msgWant
	}{
		{
			name: "all pass: first channel, the other as fallback",
			edit: func(in *Input, c *Candidate) {},
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "opted out blocks service",
			edit: func(in *Input, c *Candidate) { in.State.Features["opted_out"] = true },
			want: msgWant{Blocked: true, Codes: []string{CodeOptedOut}},
		},
		{
			name: "opted out still gets security, without consent, in quiet hours",
			edit: func(in *Input, c *Candidate) {
				in.State.Features["opted_out"] = true
				c.Purpose = PurposeSecurity
				in.Now = mustTime(t, "2026-06-10T22:30:00Z") // 23:30 BST
			},
			want: msgWant{Channel: ChannelSMS, SendAt: mustTime(t, "2026-06-10T22:30:00Z"), Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "malformed opted_out fails closed",
			edit: func(in *Input, c *Candidate) { in.State.Features["opted_out"] = map[string]any{"x": 1} },
			want: msgWant{Blocked: true, Codes: []string{CodeOptedOut}},
		},
		{
			name: "no consent on the preferred channel falls back",
			edit: func(in *Input, c *Candidate) {
				in.Customer.Consents = granted([]Channel{ChannelEmail}, PurposeService)
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "no consent anywhere",
			edit: func(in *Input, c *Candidate) { in.Customer.Consents = nil },
			want: msgWant{Blocked: true, Codes: []string{CodeNoConsent}},
		},
		{
			name: "consent for another purpose does not count",
			edit: func(in *Input, c *Candidate) {
				in.Customer.Consents = granted([]Channel{ChannelSMS, ChannelEmail}, PurposeService)
				c.Purpose = PurposeMarketing
			},
			want: msgWant{Blocked: true, Codes: []string{CodeNoConsent}},
		},
		{
			name: "security explicitly denied on sms goes to email",
			edit: func(in *Input, c *Candidate) {
				c.Purpose = PurposeSecurity
				in.Customer.Consents = []Consent{{Channel: ChannelSMS, Purpose: PurposeSecurity, Granted: false}}
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "stored consent denial wins over the request",
			edit: func(in *Input, c *Candidate) { in.State.Features["consent_sms_service"] = false },
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "stored consent grant is enough",
			edit: func(in *Input, c *Candidate) {
				in.Customer.Consents = nil
				in.State.Features["consent_email_service"] = true
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "quiet hours defer to 08:00 local",
			edit: func(in *Input, c *Candidate) { in.Now = mustTime(t, "2026-06-10T21:00:00Z") }, // 22:00 BST
			want: msgWant{Channel: ChannelSMS, SendAt: next8, Fallback: []Channel{ChannelEmail}, Codes: []string{CodeQuietHours}},
		},
		{
			name: "quiet hours start at 21:00 sharp",
			edit: func(in *Input, c *Candidate) { in.Now = mustTime(t, "2026-06-10T20:00:00Z") },
			want: msgWant{Channel: ChannelSMS, SendAt: next8, Fallback: []Channel{ChannelEmail}, Codes: []string{CodeQuietHours}},
		},
		{
			name: "20:59 is not quiet",
			edit: func(in *Input, c *Candidate) { in.Now = mustTime(t, "2026-06-10T19:59:00Z") },
			want: msgWant{Channel: ChannelSMS, SendAt: mustTime(t, "2026-06-10T19:59:00Z"), Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "a delay that lands in quiet hours is deferred",
			edit: func(in *Input, c *Candidate) { c.Delay = 10 * time.Hour }, // 22:00 BST
			want: msgWant{Channel: ChannelSMS, SendAt: next8, Fallback: []Channel{ChannelEmail}, Codes: []string{CodeQuietHours}},
		},
		{
			name: "per-purpose quiet hours for marketing",
			cfg:  GuardrailConfig{QuietHours: QuietHoursConfig{Purposes: map[string]QuietWindow{"marketing": {Start: "20:00", End: "09:00"}}}},
			edit: func(in *Input, c *Candidate) {
				c.Purpose = PurposeMarketing
				in.Now = mustTime(t, "2026-06-10T19:30:00Z") // 20:30 BST
			},
			want: msgWant{Channel: ChannelSMS, SendAt: mustTime(t, "2026-06-11T08:00:00Z"), Fallback: []Channel{ChannelEmail}, Codes: []string{CodeQuietHours}},
		},
		{
			name: "per-purpose quiet hours leave service alone",
			cfg:  GuardrailConfig{QuietHours: QuietHoursConfig{Purposes: map[string]QuietWindow{"marketing": {Start: "20:00", End: "09:00"}}}},
			edit: func(in *Input, c *Candidate) { in.Now = mustTime(t, "2026-06-10T19:30:00Z") },
			want: msgWant{Channel: ChannelSMS, SendAt: mustTime(t, "2026-06-10T19:30:00Z"), Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "no timezone: no message now",
			edit: func(in *Input, c *Candidate) { in.Customer.Timezone = "" },
			want: msgWant{Blocked: true, Codes: []string{CodeTimezoneUnknown}},
		},
		{
			name: "invalid timezone: no message now",
			edit: func(in *Input, c *Candidate) { in.Customer.Timezone = "Mars/Olympus_Mons" },
			want: msgWant{Blocked: true, Codes: []string{CodeTimezoneUnknown}},
		},
		{
			name: "Local is not a customer's zone",
			edit: func(in *Input, c *Candidate) { in.Customer.Timezone = "Local" },
			want: msgWant{Blocked: true, Codes: []string{CodeTimezoneUnknown}},
		},
		{
			name: "invalid request zone does not fall back to the feature",
			edit: func(in *Input, c *Candidate) {
				in.Customer.Timezone = "Nowhere/Land"
				in.State.Features["timezone"] = "Europe/London"
			},
			want: msgWant{Blocked: true, Codes: []string{CodeTimezoneUnknown}},
		},
		{
			name: "timezone feature when the request has none",
			edit: func(in *Input, c *Candidate) {
				in.Customer.Timezone = ""
				in.State.Features["timezone"] = "America/New_York"
				in.Now = mustTime(t, "2026-06-10T02:00:00Z") // 22:00 EDT
			},
			want: msgWant{Channel: ChannelSMS, SendAt: mustTime(t, "2026-06-10T12:00:00Z"), Fallback: []Channel{ChannelEmail}, Codes: []string{CodeQuietHours}},
		},
		{
			name: "security needs no timezone",
			edit: func(in *Input, c *Candidate) { in.Customer.Timezone = ""; c.Purpose = PurposeSecurity },
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "sms daily cap falls back to email",
			edit: func(in *Input, c *Candidate) {
				in.State.Messages = []SentMessage{sent(ChannelSMS, PurposeCollections, "2026-06-09T12:00:00Z")}
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "sms cap window is rolling: 24h and a minute ago does not count",
			edit: func(in *Input, c *Candidate) {
				in.State.Messages = []SentMessage{sent(ChannelSMS, PurposeCollections, "2026-06-09T10:59:00Z")}
			},
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "sms weekly cap",
			edit: func(in *Input, c *Candidate) {
				in.State.Messages = []SentMessage{
					sent(ChannelSMS, PurposeService, "2026-06-04T12:00:00Z"),
					sent(ChannelSMS, PurposeService, "2026-06-06T12:00:00Z"),
					sent(ChannelSMS, PurposeService, "2026-06-08T12:00:00Z"),
				}
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "cross-channel daily cap blocks every channel",
			edit: func(in *Input, c *Candidate) {
				in.State.Messages = []SentMessage{
					sent(ChannelEmail, PurposeService, "2026-06-10T01:00:00Z"),
					sent(ChannelPush, PurposeMarketing, "2026-06-10T09:00:00Z"),
				}
			},
			want: msgWant{Blocked: true, Codes: []string{CodeFrequencyCap}},
		},
		{
			name: "security messages do not count against non-security caps",
			edit: func(in *Input, c *Candidate) {
				in.State.Messages = []SentMessage{
					sent(ChannelSMS, PurposeSecurity, "2026-06-10T01:00:00Z"),
					sent(ChannelSMS, PurposeSecurity, "2026-06-10T09:00:00Z"),
				}
			},
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "security is not capped by the non-security caps",
			edit: func(in *Input, c *Candidate) {
				c.Purpose = PurposeSecurity
				in.State.Messages = []SentMessage{
					sent(ChannelSMS, PurposeService, "2026-06-10T01:00:00Z"),
					sent(ChannelEmail, PurposeService, "2026-06-10T09:00:00Z"),
				}
			},
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "policy cap on security",
			cfg:  GuardrailConfig{Caps: []CapConfig{{Name: "security_daily", Purposes: []string{"security"}, Window: "24h", Limit: ptr(1)}}},
			edit: func(in *Input, c *Candidate) {
				c.Purpose = PurposeSecurity
				in.State.Messages = []SentMessage{sent(ChannelPush, PurposeSecurity, "2026-06-10T01:00:00Z")}
			},
			want: msgWant{Blocked: true, Codes: []string{CodeFrequencyCap}},
		},
		{
			name: "caps are counted at the deferred send time",
			edit: func(in *Input, c *Candidate) {
				in.Now = mustTime(t, "2026-06-10T21:00:00Z") // 22:00 BST: deferred to 08:00 BST
				in.State.Messages = []SentMessage{sent(ChannelSMS, PurposeService, "2026-06-10T06:30:00Z")}
			},
			want: msgWant{Channel: ChannelSMS, SendAt: next8, Fallback: []Channel{ChannelEmail}, Codes: []string{CodeQuietHours}},
		},
		{
			name: "deferred messages already reserved count",
			edit: func(in *Input, c *Candidate) {
				in.State.Messages = []SentMessage{sent(ChannelSMS, PurposeService, "2026-06-11T07:00:00Z")}
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "fraud hold blocks marketing",
			edit: func(in *Input, c *Candidate) { in.State.Features["fraud_hold"] = true; c.Purpose = PurposeMarketing },
			want: msgWant{Blocked: true, Codes: []string{CodeFraudHold}},
		},
		{
			name: "fraud hold allows service",
			edit: func(in *Input, c *Candidate) { in.State.Features["fraud_hold"] = true },
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "fraud flag raised by this event blocks collections",
			edit: func(in *Input, c *Candidate) { in.Event.Type = EventFraudFlagRaised; c.Purpose = PurposeCollections },
			want: msgWant{Blocked: true, Codes: []string{CodeFraudHold}},
		},
		{
			name: "fraud flag cleared by this event lifts the hold",
			edit: func(in *Input, c *Candidate) {
				in.Event.Type = EventFraudFlagCleared
				in.State.Features["fraud_hold"] = true
				c.Purpose = PurposeMarketing
			},
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "vulnerable customer gets no collections message",
			edit: func(in *Input, c *Candidate) { in.Customer.Vulnerable = true; c.Purpose = PurposeCollections },
			want: msgWant{Blocked: true, Codes: []string{CodeVulnerableCustomer}},
		},
		{
			name: "hardship feature blocks marketing",
			edit: func(in *Input, c *Candidate) { in.State.Features["hardship"] = true; c.Purpose = PurposeMarketing },
			want: msgWant{Blocked: true, Codes: []string{CodeVulnerableCustomer}},
		},
		{
			name: "vulnerable feature still allows service",
			edit: func(in *Input, c *Candidate) { in.State.Features["vulnerable"] = true },
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "failing channel is skipped",
			edit: func(in *Input, c *Candidate) {
				in.State.FailingChannels = []ChannelFailure{{Channel: ChannelSMS, Until: mustTime(t, "2026-06-10T12:00:00Z")}}
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Codes: []string{CodeChannelFallback}},
		},
		{
			name: "a cooled-down channel is used again",
			edit: func(in *Input, c *Candidate) {
				in.State.FailingChannels = []ChannelFailure{{Channel: ChannelSMS, Until: noon}}
			},
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
		{
			name: "every channel failing",
			edit: func(in *Input, c *Candidate) {
				until := mustTime(t, "2026-06-10T12:00:00Z")
				in.State.FailingChannels = []ChannelFailure{{Channel: ChannelSMS, Until: until}, {Channel: ChannelEmail, Until: until}}
			},
			want: msgWant{Blocked: true, Codes: []string{CodeChannelFailing}},
		},
		{
			name: "capped, failing and unconsented channels together",
			edit: func(in *Input, c *Candidate) {
				c.Channels = []Channel{ChannelSMS, ChannelEmail, ChannelPush}
				in.State.Messages = []SentMessage{sent(ChannelSMS, PurposeCollections, "2026-06-09T12:00:00Z")}
				in.State.FailingChannels = []ChannelFailure{{Channel: ChannelEmail, Until: mustTime(t, "2026-06-10T12:00:00Z")}}
			},
			want: msgWant{Blocked: true, Codes: []string{CodeFrequencyCap, CodeChannelFailing, CodeNoConsent}},
		},
		{
			name: "quiet hours and a capped channel together",
			edit: func(in *Input, c *Candidate) {
				in.Now = mustTime(t, "2026-06-10T21:00:00Z")
				in.State.Messages = []SentMessage{sent(ChannelSMS, PurposeCollections, "2026-06-10T20:00:00Z")}
			},
			want: msgWant{Channel: ChannelEmail, SendAt: next8, Codes: []string{CodeChannelFallback, CodeQuietHours}},
		},
		{
			name: "opt-out wins over quiet hours and caps",
			edit: func(in *Input, c *Candidate) {
				in.State.Features["opted_out"] = true
				in.Now = mustTime(t, "2026-06-10T21:00:00Z")
			},
			want: msgWant{Blocked: true, Codes: []string{CodeOptedOut}},
		},
		{
			name: "state unknown: no message",
			edit: func(in *Input, c *Candidate) { in.Degraded = true; c.Purpose = PurposeSecurity },
			want: msgWant{Blocked: true, Codes: []string{CodeStoreUnavailable}},
		},
		{
			name: "customer's preferred channels when the rule names none",
			edit: func(in *Input, c *Candidate) {
				c.Channels = nil
				in.Customer.PreferredChannels = []Channel{ChannelEmail, ChannelSMS}
			},
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Fallback: []Channel{ChannelSMS}, Codes: []string{}},
		},
		{
			name: "default channels when nobody names one",
			edit: func(in *Input, c *Candidate) { c.Channels = nil },
			want: msgWant{Channel: ChannelEmail, SendAt: noon, Fallback: []Channel{ChannelSMS}, Codes: []string{}},
		},
		{
			name: "unspecified purpose is treated as marketing",
			edit: func(in *Input, c *Candidate) {
				c.Purpose = PurposeUnspecified
				in.Customer.Consents = granted([]Channel{ChannelSMS}, PurposeService)
			},
			want: msgWant{Blocked: true, Codes: []string{CodeNoConsent}},
		},
		{
			name: "duplicate and unknown channels are ignored",
			edit: func(in *Input, c *Candidate) {
				c.Channels = []Channel{ChannelSMS, ChannelUnspecified, Channel(99), ChannelSMS, ChannelEmail}
			},
			want: msgWant{Channel: ChannelSMS, SendAt: noon, Fallback: []Channel{ChannelEmail}, Codes: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustGuardrails(t, tt.cfg, PaymentConfig{})
			in := msgInput(t)
			c := &Candidate{RuleID: "r", Action: ActionMessage, Channels: []Channel{ChannelSMS, ChannelEmail},
				TemplateID: "t", Purpose: PurposeService}
			tt.edit(in, c)
			f := g.facts(in)
			tr := &Explanation{}
			g.apply(in, &f, c, tr)
			if diff := cmp.Diff(tt.want, msgGot(c), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("apply(MESSAGE) mismatch (-want +got):\n%s", diff)
			}
			if c.Blocked && c.Why == "" {
				t.Errorf("apply(MESSAGE) blocked with an empty Why")
			}
			if len(tr.Guardrails) == 0 {
				t.Errorf("apply(MESSAGE) recorded no guardrail verdict in the explanation")
			}
			// The explanation agrees with the candidate: a block verdict exactly when blocked,
			// and one verdict per reason added.
			verdicts := map[string]int{}
			for _, v := range tr.Guardrails {
				verdicts[v.Verdict]++
			}
			if (verdicts["block"] > 0) != c.Blocked || verdicts["block"]+verdicts["modify"] != len(c.Reasons) {
				t.Errorf("explanation verdicts %v for a candidate blocked=%v with %d reasons", verdicts, c.Blocked, len(c.Reasons))
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestMandatory(t *testing.T) {
	tests := []struct {
		name   string
		event  EventType
		edit   func(in *Input)
		want   bool
		action Action
	}{
		{"vulnerable and invoice overdue", EventInvoiceOverdue, func(in *Input) { in.Customer.Vulnerable = true }, true, ActionEscalate},
		{"hardship feature and payment failed", EventPaymentFailed, func(in *Input) { in.State.Features["hardship"] = true }, true, ActionEscalate},
		{"vulnerable feature and payment plan missed", EventPaymentPlanMissed, func(in *Input) { in.State.Features["vulnerable"] = true }, true, ActionEscalate},
		{"vulnerable and risky login", EventRiskyLogin, func(in *Input) { in.Customer.Vulnerable = true }, false, 0},
		{"not vulnerable", EventInvoiceOverdue, func(in *Input) {}, false, 0},
		{"vulnerable false feature", EventInvoiceOverdue, func(in *Input) { in.State.Features["vulnerable"] = false }, false, 0},
	}
	g := mustGuardrails(t, GuardrailConfig{HardshipQueue: "care"}, PaymentConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := msgInput(t)
			in.Event.Type = tt.event
			tt.edit(in)
			f := g.facts(in)
			c := g.mandatory(in, &f)
			if (c != nil) != tt.want {
				t.Fatalf("mandatory() = %v, want a candidate: %v", c, tt.want)
			}
			if c == nil {
				return
			}
			if c.Action != tt.action || c.Queue != "care" || c.Priority != MandatoryPriority {
				t.Errorf("mandatory() = %+v, want ESCALATE to care at MandatoryPriority", c)
			}
			// The mandatory escalation wins over any policy candidate.
			res := simDecide(g, in, []Candidate{
				{RuleID: "msg", Priority: 1000, Action: ActionMessage, Purpose: PurposeService, Channels: []Channel{ChannelSMS}},
			})
			if res.Action != ActionEscalate || res.Escalate.Queue != "care" {
				t.Errorf("decide() = %v to %+v, want ESCALATE to care", res.Action, res.Escalate)
			}
			if !hasReason(res.Reasons, CodeVulnerableCustomer) {
				t.Errorf("decide() reasons = %v, want %s", codes(res.Reasons), CodeVulnerableCustomer)
			}
		})
	}
}

func TestMessageEffects(t *testing.T) {
	g := mustGuardrails(t, GuardrailConfig{}, PaymentConfig{})
	in := msgInput(t)
	in.Now = mustTime(t, "2026-06-10T21:00:00Z") // deferred to 08:00 BST
	res := simDecide(g, in, []Candidate{{RuleID: "r", Action: ActionMessage, Purpose: PurposeService, Channels: []Channel{ChannelSMS}}})
	at := mustTime(t, "2026-06-11T07:00:00Z")
	if res.Action != ActionMessage {
		t.Fatalf("decide() = %v, want MESSAGE", res.Action)
	}
	nonSec := PurposesOf(PurposeService, PurposeCollections, PurposeMarketing)
	want := Effects{
		Message: &SentMessage{Channel: ChannelSMS, Purpose: PurposeService, At: at},
		CapChecks: []CapCheck{
			{Name: "sms_daily", Channel: ChannelSMS, Purposes: nonSec, Since: at.Add(-day), Limit: 1},
			{Name: "sms_weekly", Channel: ChannelSMS, Purposes: nonSec, Since: at.Add(-7 * day), Limit: 3},
			{Name: "all_daily", Purposes: nonSec, Since: at.Add(-day), Limit: 2},
			{Name: "all_weekly", Purposes: nonSec, Since: at.Add(-7 * day), Limit: 5},
			{Name: "all_monthly", Purposes: nonSec, Since: at.Add(-30 * day), Limit: 15},
		},
	}
	if diff := cmp.Diff(want, res.Effects); diff != "" {
		t.Errorf("effects(MESSAGE) mismatch (-want +got):\n%s", diff)
	}

	// Fraud events set and clear the hold whatever the action.
	for _, tc := range []struct {
		ev   EventType
		want []FeatureUpdate
	}{
		{EventFraudFlagRaised, []FeatureUpdate{{Name: "fraud_hold", Value: true}}},
		{EventFraudFlagCleared, []FeatureUpdate{{Name: "fraud_hold", Value: nil}}},
	} {
		in := msgInput(t)
		in.Event.Type = tc.ev
		res := simDecide(g, in, []Candidate{{RuleID: "s", Action: ActionSuppress}})
		if diff := cmp.Diff(tc.want, res.Effects.Features); diff != "" {
			t.Errorf("effects(%v).Features mismatch (-want +got):\n%s", tc.ev, diff)
		}
	}

	// Degraded: nothing is written.
	in = msgInput(t)
	in.Degraded = true
	in.Event.Type = EventFraudFlagRaised
	res = simDecide(g, in, []Candidate{{RuleID: "r", Action: ActionMessage, Purpose: PurposeSecurity}})
	if res.Action != ActionSuppress || !hasReason(res.Reasons, CodeStoreUnavailable) {
		t.Errorf("decide(degraded) = %v %v, want SUPPRESS with %s", res.Action, codes(res.Reasons), CodeStoreUnavailable)
	}
	if diff := cmp.Diff(Effects{}, res.Effects); diff != "" {
		t.Errorf("effects(degraded) mismatch (-want +got):\n%s", diff)
	}
}

func TestOutcome(t *testing.T) {
	g := mustGuardrails(t, GuardrailConfig{FailingChannelCooldown: "48h"}, PaymentConfig{})
	now := mustTime(t, "2026-06-10T12:00:00Z")
	sendAt := mustTime(t, "2026-06-10T11:00:00Z")
	msgRes := &Result{Action: ActionMessage, Message: &Message{Channel: ChannelSMS, Purpose: PurposeService, SendAt: sendAt}}
	pay := &Input{Event: Event{Type: EventPaymentFailed, Payment: &PaymentFailure{CardRef: "tok_1"}}}
	retryRes := &Result{Action: ActionRetry, Retry: &Retry{}}
	tests := []struct {
		name string
		in   *Input
		res  *Result
		o    Outcome
		want OutcomeEffects
	}{
		{"delivery failed releases the slot and marks the channel", &Input{}, msgRes, OutcomeDeliveryFailed, OutcomeEffects{
			ReleaseMessage: &SentMessage{Channel: ChannelSMS, Purpose: PurposeService, At: sendAt},
			FailChannel:    &ChannelFailure{Channel: ChannelSMS, Until: now.Add(48 * time.Hour)},
		}},
		{"delivered changes nothing", &Input{}, msgRes, OutcomeDelivered, OutcomeEffects{}},
		{"retry approved resets the ledger", pay, retryRes, OutcomeRetryApproved, OutcomeEffects{ResetLedger: &LedgerReset{CardRef: "tok_1"}}},
		{"paid resets the ledger", pay, retryRes, OutcomePaid, OutcomeEffects{ResetLedger: &LedgerReset{CardRef: "tok_1"}}},
		{"retry declined changes nothing", pay, retryRes, OutcomeRetryDeclined, OutcomeEffects{}},
		{"delivery failed of a retry changes nothing", pay, retryRes, OutcomeDeliveryFailed, OutcomeEffects{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := g.outcome(tt.in, tt.res, tt.o, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome(%v) mismatch (-want +got):\n%s", tt.o, diff)
			}
		})
	}
}

func TestFactsCounters(t *testing.T) {
	g := mustGuardrails(t, GuardrailConfig{}, PaymentConfig{})
	in := msgInput(t)
	in.State.Messages = []SentMessage{
		{Channel: ChannelSMS, Purpose: PurposeService, At: in.Now.Add(-time.Hour)},
		{Channel: ChannelEmail, Purpose: PurposeMarketing, At: in.Now.Add(-3 * day)},
		{Channel: ChannelPush, Purpose: PurposeSecurity, At: in.Now.Add(-time.Hour)},
	}
	f := g.facts(in)
	got := map[string]int{}
	for _, c := range f.counters {
		got[c.Name] = c.Count
	}
	want := map[string]int{"sms_daily": 1, "sms_weekly": 1, "all_daily": 1, "all_weekly": 2, "all_monthly": 2,
		"marketing_monthly": 1, "ivr_collections_weekly": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts().counters mismatch (-want +got):\n%s", diff)
	}
	if n := len(g.caps(in.Now)); n != len(want) {
		t.Errorf("len(caps()) = %d, want %d", n, len(want))
	}
}

// TestGuardrailsConcurrent shares one guardrails value between goroutines, as the engine does;
// run with -race it checks the zone cache and the compiled configuration.
func TestGuardrailsConcurrent(t *testing.T) {
	g := mustGuardrails(t, GuardrailConfig{}, PaymentConfig{})
	zones := []string{"Europe/London", "Asia/Kolkata", "Bad/Zone", "Australia/Adelaide", "America/New_York"}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				in := msgInput(t)
				in.Customer.Timezone = zones[(w+i)%len(zones)]
				res := simDecide(g, in, []Candidate{{RuleID: "r", Action: ActionMessage, Purpose: PurposeService, Channels: []Channel{ChannelSMS}}})
				want := ActionMessage
				if in.Customer.Timezone == "Bad/Zone" {
					want = ActionSuppress
				}
				if res.Action != want {
					t.Errorf("decide(zone %s) = %v, want %v", in.Customer.Timezone, res.Action, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

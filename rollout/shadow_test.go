package rollout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/policystore"
)

func mustParse(t testing.TB, files map[string][]byte) *decision.Policy {
	t.Helper()
	p, err := decision.ParsePolicy(files)
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

func newMemoryFeatureStore(t *testing.T, now func() time.Time) *featurestore.Memory {
	m := featurestore.NewMemory(featurestore.WithClock(now))
	t.Cleanup(func() { m.Close() })
	return m
}

func TestShadowShare(t *testing.T) {
	candidate := mustParse(t, govBundle("B", "message"))
	active := &decision.Result{Action: decision.ActionMessage, Reasons: []decision.Reason{{Code: "OVERDUE_REMINDER"}}}
	tests := []struct {
		name  string
		share float64
		min   int64 // of 2000 events
		max   int64
	}{
		{"none", 0, 0, 0},
		{"a tenth", 0.1, 150, 250},
		{"half", 0.5, 900, 1100},
		{"all", 1, 2000, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sh := NewShadow(nil)
			sh.Set(policystore.ShadowConfig{Version: "B", Share: tc.share, Epoch: "e"}, candidate)
			in := decision.Input{Now: govNow}
			for i := range 2000 {
				in.Event = decision.Event{ID: fmt.Sprintf("evt-%d", i), Type: decision.EventInvoiceOverdue}
				sh.Observe(context.Background(), &in, active)
			}
			sh.mu.Lock()
			got := sh.counts.Evaluated
			sh.mu.Unlock()
			if got < tc.min || got > tc.max {
				t.Errorf("Observe() on 2000 events with share %v evaluated %d, want %d to %d", tc.share, got, tc.min, tc.max)
			}
		})
	}
}

// govNow dates the governance tests' changes.
var govNow = time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC)

// govBundle is a small bundle of the given version whose one rule answers INVOICE_OVERDUE
// with kind ("message" or "escalate"), with one test case that expects it.
func govBundle(version, kind string) map[string][]byte {
	r := govRules[kind]
	return map[string][]byte{
		"bundle.yaml": []byte(`id: gov-test
version: "` + version + `"
rules:
  - id: overdue
    on: [INVOICE_OVERDUE]
    priority: 100
` + r.rule + "\n"),
		"tests/cases.yaml": []byte(`tests:
  - name: overdue customer
    now: 2026-03-10T12:00:00Z
    event: {type: INVOICE_OVERDUE}
    customer: {id: c-1, timezone: Europe/London, preferred_channels: [EMAIL], consents: [{channel: ALL, purpose: COLLECTIONS, granted: true}]}
    expect: ` + r.expect + "\n"),
	}
}

// govRule is a one-rule answer to INVOICE_OVERDUE, by kind.
var govRules = map[string]struct{ rule, expect string }{
	"message": {
		rule: `    action: MESSAGE
    message: {channels: [EMAIL], template: overdue_gentle, purpose: COLLECTIONS}
    reasons: [OVERDUE_REMINDER]`,
		expect: `{action: MESSAGE, channel: EMAIL, reasons: [OVERDUE_REMINDER]}`,
	},
	"escalate": {
		rule: `    action: ESCALATE
    escalate: {queue: collections, priority: 2}
    reasons: [COLLECTIONS_REFERRAL]`,
		expect: `{action: ESCALATE, queue: collections, reasons: [COLLECTIONS_REFERRAL]}`,
	},
}

// TestShadowObserveSeesTheWholeAction: a candidate that keeps the action and its reasons but
// sends another template on another channel is counted as different, and its sample names the
// changed fields (the comparison used to see only the action and the reason codes).
func TestShadowObserveSeesTheWholeAction(t *testing.T) {
	candidate := mustParse(t, govBundle("B", "message"))
	in := decision.Input{
		Now:   govNow,
		Event: decision.Event{ID: "evt-1", Type: decision.EventInvoiceOverdue},
		Customer: decision.Customer{ID: "c-1", Timezone: "Europe/London", PreferredChannels: []decision.Channel{decision.ChannelEmail},
			Consents: []decision.Consent{{Channel: decision.ChannelEmail, Purpose: decision.PurposeCollections, Granted: true}}},
	}
	res, err := candidate.Decide(context.Background(), &in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Message == nil {
		t.Fatalf("candidate decided %v without a message: the test needs a MESSAGE", res.Action)
	}
	active := *res
	msg := *res.Message
	msg.TemplateID = "other_" + msg.TemplateID
	msg.Channel = decision.ChannelEmail
	if res.Message.Channel == decision.ChannelEmail {
		msg.Channel = decision.ChannelSMS
	}
	active.Message = &msg

	sh := NewShadow(nil)
	sh.Set(policystore.ShadowConfig{Version: "B", Share: 1, Epoch: "e"}, candidate)
	sh.Observe(context.Background(), &in, &active)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.counts.Evaluated != 1 || sh.counts.Different != 1 {
		t.Fatalf("counts = %+v, want 1 evaluated, 1 different", sh.counts)
	}
	if len(sh.samples) != 1 {
		t.Fatalf("%d samples, want 1", len(sh.samples))
	}
	if got, want := fmt.Sprint(sh.samples[0].ChangedFields), "[channel template]"; got != want {
		t.Errorf("sample's changed fields = %s, want %s", got, want)
	}
}

package decision

import (
	"fmt"
	"testing"
	"time"
)

// benchState is a busy customer: a month of messages and a retry ledger.
func benchState(now time.Time) State {
	st := State{Features: map[string]any{"timezone": "Europe/London", "days_past_due": 12.0, "risk_score": 0.3}}
	for i := range 12 {
		st.Messages = append(st.Messages, SentMessage{DecisionID: fmt.Sprint("d", i), Channel: Channel(1 + i%3),
			Purpose: Purpose(1 + i%3), At: now.Add(-time.Duration(i*55) * time.Hour)})
	}
	// Three retries in the last 30 days (attempt 4 next), older ones beyond.
	for i := range 8 {
		st.Ledger = append(st.Ledger, LedgerEntry{Kind: LedgerKind(1 + i%2), EventID: fmt.Sprint("p", i), CardRef: "tok_1",
			MerchantID: "m1", AmountMinor: 4999, Currency: "GBP", Initiator: InitiatorMerchant, Network: NetworkVisa,
			At: now.Add(-time.Duration(i*150) * time.Hour)})
	}
	return st
}

// guardrailPass runs one decision's worth of guardrail work: facts (into pooled space, as
// the engine keeps them), apply on every candidate, effects on the winner.
func guardrailPass(g *guardrails, in *Input, cands []Candidate, work []Candidate, res *Result) {
	g.fill(in, &benchFacts)
	copy(work, cands)
	for i := range work {
		g.apply(in, &benchFacts, &work[i], nil)
	}
	*res = Result{}
	for i := range work {
		if c := &work[i]; !c.Blocked {
			res.Action, res.Retry, res.Message = c.Action, c.Retry, c.Message
			break
		}
	}
	g.effects(in, &benchFacts, res)
}

// benchFacts stands for the engine's pooled scratch facts.
var benchFacts facts

func benchInputs(t testing.TB) (msg, pay *Input) {
	msg = msgInput(t)
	msg.State = benchState(msg.Now)
	msg.Customer.Timezone = ""
	pay = payInput(t)
	pay.State = benchState(pay.Now)
	return msg, pay
}

var (
	benchMsgCands = []Candidate{{RuleID: "remind", Action: ActionMessage, Purpose: PurposeService,
		Channels: []Channel{ChannelSMS, ChannelEmail, ChannelPush}, TemplateID: "t"}}
	benchPayCands = payCandidates()
)

func BenchmarkGuardrailsMessage(b *testing.B) {
	g := mustGuardrails(b, GuardrailConfig{}, PaymentConfig{})
	in, _ := benchInputs(b)
	work, res := make([]Candidate, len(benchMsgCands)), &Result{}
	b.ReportAllocs()
	for b.Loop() {
		guardrailPass(g, in, benchMsgCands, work, res)
	}
}

func BenchmarkGuardrailsRetry(b *testing.B) {
	g := mustGuardrails(b, GuardrailConfig{}, PaymentConfig{})
	_, in := benchInputs(b)
	work, res := make([]Candidate, len(benchPayCands)), &Result{}
	b.ReportAllocs()
	for b.Loop() {
		guardrailPass(g, in, benchPayCands, work, res)
	}
}

func BenchmarkClassify(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Classify(NetworkMastercard, "51", "25", InitiatorMerchant)
	}
}

// TestGuardrailAllocs keeps the guardrails' share of the engine's allocation budget (10 per
// decision in total): the facts' counters, the resolved action and the effects, nothing else.
func TestGuardrailAllocs(t *testing.T) {
	g := mustGuardrails(t, GuardrailConfig{}, PaymentConfig{})
	msg, pay := benchInputs(t)
	tests := []struct {
		name  string
		in    *Input
		cands []Candidate
		want  Action
		max   float64
	}{
		// Message with its fallback list; Effects.Message with its cap checks
		{"message", msg, benchMsgCands, ActionMessage, 2},
		// Retry, the losing MESSAGE candidate's Message, Effects.Ledger with its checks, the
		// SOFT_DECLINE reason (an engine that sizes Reasons for it saves that one)
		{"retry", pay, benchPayCands, ActionRetry, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work, res := make([]Candidate, len(tt.cands)), &Result{}
			guardrailPass(g, tt.in, tt.cands, work, res)
			if res.Action != tt.want {
				t.Fatalf("guardrails gave %v, want %v", res.Action, tt.want)
			}
			if got := testing.AllocsPerRun(200, func() { guardrailPass(g, tt.in, tt.cands, work, res) }); got > tt.max {
				t.Errorf("guardrails allocate %v times per %s decision, want at most %v", got, tt.name, tt.max)
			}
		})
	}
}

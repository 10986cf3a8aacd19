package decision

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// describeResult renders a result for failure messages.
func describeResult(r *Result) string {
	if r == nil {
		return "<nil result>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "action %s", bundleActionName(r.Action))
	if m := r.Message; m != nil {
		fmt.Fprintf(&b, " channel %s template %s send_at %s fallback %v", bundleChannelName(m.Channel), m.TemplateID, m.SendAt.UTC().Format("2006-01-02T15:04Z"), m.FallbackChannels)
	}
	if e := r.Escalate; e != nil {
		fmt.Fprintf(&b, " queue %s context %v", e.Queue, e.Context)
	}
	if rt := r.Retry; rt != nil {
		fmt.Fprintf(&b, " not_before %s acquirer %s", rt.NotBefore.UTC().Format("2006-01-02T15:04Z"), rt.Acquirer)
	}
	for _, rs := range r.Reasons {
		fmt.Fprintf(&b, "\n  %s (%s) %s", rs.Code, rs.RuleID, rs.Message)
	}
	return b.String()
}

func mustParse(t testing.TB, bundle string) *Policy {
	t.Helper()
	p, err := ParsePolicy(map[string][]byte{"bundle.yaml": []byte(bundle)})
	if err != nil {
		t.Fatalf("ParsePolicy() error = %v", err)
	}
	return p
}

var testNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func testInput(t EventType) *Input {
	return &Input{
		Event: Event{ID: "evt-1", Type: t},
		Customer: Customer{ID: "c-1", Timezone: "Europe/London", PreferredChannels: []Channel{ChannelEmail},
			Consents: []Consent{{Channel: ChannelEmail, Purpose: PurposeService, Granted: true}}},
		Now: testNow,
	}
}

func TestArbitration(t *testing.T) {
	tests := []struct {
		name       string
		rules      string
		wantRule   string
		wantAction Action
		wantLoser  string // the why of the first losing candidate in the explanation
	}{
		{
			name: "higher priority wins",
			rules: `
  - {id: low, on: [INBOUND_CONTACT], priority: 1, action: ESCALATE, escalate: {queue: a}, reasons: [LOW]}
  - {id: high, on: [INBOUND_CONTACT], priority: 2, action: SUPPRESS, reasons: [HIGH]}`,
			wantRule: "high", wantAction: ActionSuppress, wantLoser: "lost to high: lower priority (1 < 2)",
		},
		{
			name: "same priority: escalate outranks message and suppress",
			rules: `
  - {id: quiet, on: [INBOUND_CONTACT], priority: 5, action: SUPPRESS, reasons: [A]}
  - {id: msg, on: [INBOUND_CONTACT], priority: 5, action: MESSAGE, message: {template: t, purpose: SERVICE}, reasons: [B]}
  - {id: human, on: [INBOUND_CONTACT], priority: 5, action: ESCALATE, escalate: {queue: q}, reasons: [C]}`,
			wantRule: "human", wantAction: ActionEscalate, wantLoser: "lost to human: same priority, ESCALATE outranks MESSAGE",
		},
		{
			name: "same priority and action: earlier in the bundle wins",
			rules: `
  - {id: zeta, on: [INBOUND_CONTACT], priority: 5, action: ESCALATE, escalate: {queue: first}, reasons: [A]}
  - {id: alpha, on: [INBOUND_CONTACT], priority: 5, action: ESCALATE, escalate: {queue: second}, reasons: [B]}`,
			wantRule: "zeta", wantAction: ActionEscalate, wantLoser: "lost to zeta: same priority and action, later in the bundle",
		},
		{
			name: "a blocked candidate gives way and its guardrail reason is kept",
			rules: `
  - {id: msg, on: [INBOUND_CONTACT], priority: 9, action: MESSAGE, message: {channels: [SMS], template: t, purpose: SERVICE}, reasons: [B]}
  - {id: fallback, on: [INBOUND_CONTACT], priority: 1, action: SUPPRESS, reasons: [A]}`,
			wantRule: "fallback", wantAction: ActionSuppress, wantLoser: "",
		},
		{
			name: "a rule that does not match proposes nothing",
			rules: `
  - {id: never, on: [INBOUND_CONTACT], when: 'customer.segment == "vip"', priority: 9, action: SUPPRESS, reasons: [A]}
  - {id: other-event, on: [RISKY_LOGIN], priority: 9, action: SUPPRESS, reasons: [A]}
  - {id: always, priority: 1, action: ESCALATE, escalate: {queue: q}, reasons: [B]}`,
			wantRule: "always", wantAction: ActionEscalate,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, "id: t\nversion: \"1\"\nrules:"+tt.rules+"\n")
			for _, explain := range []bool{false, true} {
				in := testInput(EventInboundContact)
				in.Explain = explain
				res, err := p.Decide(context.Background(), in)
				if err != nil {
					t.Fatalf("Decide() error = %v", err)
				}
				if res.Action != tt.wantAction || res.Reasons[0].RuleID != tt.wantRule {
					t.Errorf("Decide(explain=%v) = %s from %s, want %s from %s", explain, bundleActionName(res.Action), res.Reasons[0].RuleID,
						bundleActionName(tt.wantAction), tt.wantRule)
				}
				if res.Policy != p.Ref() {
					t.Errorf("Decide().Policy = %v, want %v", res.Policy, p.Ref())
				}
				if !explain || tt.wantLoser == "" {
					continue
				}
				var why string
				for _, c := range res.Explanation.Candidates {
					if c.Outcome == "lost" {
						why = c.Why
						break
					}
				}
				if why != tt.wantLoser {
					t.Errorf("first loser's why = %q, want %q", why, tt.wantLoser)
				}
			}
		})
	}
}

func TestBlockedCandidateReasons(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: msg, on: [INBOUND_CONTACT], priority: 9, action: MESSAGE, message: {channels: [SMS], template: t, purpose: SERVICE}, reasons: [B]}
  - {id: fallback, on: [INBOUND_CONTACT], priority: 1, action: SUPPRESS, reasons: [A]}
`)
	in := testInput(EventInboundContact)
	in.Explain = true
	res, err := p.Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Reasons {
		got = append(got, r.Code+"@"+r.RuleID)
	}
	want := []string{"A@fallback", "NO_CONSENT@guardrail:consent"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decide().Reasons mismatch (-want +got):\n%s", diff)
	}
	c := res.Explanation.Candidates[0]
	if c.RuleID != "msg" || c.Outcome != "blocked" || c.Why == "" {
		t.Errorf("Explanation.Candidates[0] = %+v, want msg blocked with a why", c)
	}
}

func TestNothingLeftSuppressesWithEveryReason(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: sms, on: [CARD_EXPIRING], priority: 9, action: MESSAGE, message: {channels: [SMS], template: t, purpose: SERVICE}, reasons: [CARD_EXPIRING]}
`)
	res, err := p.Decide(context.Background(), testInput(EventCardExpiring))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Reasons {
		got = append(got, r.Code)
	}
	if res.Action != ActionSuppress || !cmp.Equal(got, []string{"CARD_EXPIRING", "NO_CONSENT"}) {
		t.Errorf("Decide() = %s %v, want SUPPRESS [CARD_EXPIRING NO_CONSENT]", bundleActionName(res.Action), got)
	}

	res, err = p.Decide(context.Background(), testInput(EventRiskyLogin))
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionSuppress || len(res.Reasons) != 1 || res.Reasons[0].Code != ReasonNoRuleMatched {
		t.Errorf("Decide(no rule) = %s\nwant SUPPRESS %s", describeResult(res), ReasonNoRuleMatched)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{"unknown field", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrulez: []\n"}, []string{"a.yaml:3: field rulez not found"}},
		{"unknown rule field", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - id: r\n    action: SUPPRESS\n    colour: red\n"}, []string{"a.yaml:6: field colour not found in type rule"}},
		{"missing id and version", map[string]string{"a.yaml": "rules: []\n"}, []string{"a.yaml: id: required", "a.yaml: version: required"}},
		{"type error names file, line and rule", map[string]string{"b.yaml": "id: t\nversion: \"1\"\nrules:\n  - id: bad-type\n    action: SUPPRESS\n    when: customer.vulnerable == \"yes\"\n"},
			[]string{"b.yaml:6: rule bad-type: when: line 1", "no matching overload"}},
		{"multi-line when points at the bad line", map[string]string{"b.yaml": "id: t\nversion: \"1\"\nrules:\n  - id: bad-line\n    action: SUPPRESS\n    when: |\n      customer.vulnerable &&\n      nosuch.thing\n"},
			[]string{"b.yaml:8: rule bad-line:", "undeclared reference"}},
		{"not a bool", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: num, action: SUPPRESS, when: 'event.payment.amount_minor + 1'}\n"}, []string{"rule num: when: must be a bool expression"}},
		{"cost limit", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: costly, action: SUPPRESS, when: 'customer.preferred_channels.all(a, customer.preferred_channels.all(b, customer.preferred_channels.all(c, a + b + c != \"\")))'}\n"},
			[]string{"rule costly: when: estimated cost", "exceeds the limit 10000"}},
		{"duplicate id", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: r, action: SUPPRESS}\n  - {id: r, action: SUPPRESS}\n"}, []string{"a.yaml:5: rule r: id: duplicate of the rule at line 4"}},
		{"unknown event and action", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: r, on: [PAYMENT_EXPLODED], action: CALL}\n"}, []string{"on: unknown event type \"PAYMENT_EXPLODED\"", "action: \"CALL\" must be"}},
		{"parameters of another action", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: r, action: SUPPRESS, escalate: {queue: q}}\n"}, []string{"escalate: only for action ESCALATE"}},
		{"message needs template and purpose", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: r, action: MESSAGE, message: {channels: [FAX]}}\n"}, []string{"unknown channel \"FAX\"", "message.template: required", "message.purpose"}},
		{"bad reason code", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: r, action: SUPPRESS, reasons: [soft]}\n"}, []string{"reasons: \"soft\" must be an upper-case code"}},
		{"guardrail out of bounds", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nguardrails:\n  quiet_hours: {start: \"25:00\"}\n"}, []string{"a.yaml: guardrails.quiet_hours"}},
		{"guardrail unknown field", map[string]string{"a.yaml": "id: t\nversion: \"1\"\nguardrails:\n  quiet_hours_off: true\n"}, []string{"guardrails: ", "quiet_hours_off not found"}},
		{"id set twice", map[string]string{"a.yaml": "id: t\nversion: \"1\"\n", "b.yaml": "id: u\n"}, []string{"b.yaml: id: already set in a.yaml"}},
		{"bad test case", map[string]string{"a.yaml": "id: t\nversion: \"1\"\n", "tests/x.yaml": "tests:\n  - {name: x, now: 2026-01-01T00:00:00Z, event: {type: NOPE}, expect: {action: SUPPRESS}}\n"},
			[]string{"tests/x.yaml: test \"x\": event.type: unknown event type \"NOPE\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string][]byte{}
			for n, s := range tt.files {
				files[n] = []byte(s)
			}
			_, err := ParsePolicy(files)
			if err == nil {
				t.Fatalf("ParsePolicy() error = nil, want %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidBundle) {
				t.Errorf("ParsePolicy() error = %v, want errors.Is ErrInvalidBundle", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParsePolicy() error = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadPolicyDigest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "id: t\nversion: \"1\"\nrules:\n  - {id: r1, action: SUPPRESS, reasons: [A]}\n")
	write("b.yaml", "rules:\n  - {id: r2, action: SUPPRESS, reasons: [A]}\n")
	write("tests/c.yaml", "tests:\n  - {name: c, now: 2026-01-01T00:00:00Z, event: {type: RISKY_LOGIN}, expect: {action: SUPPRESS}}\n")
	write("notes.txt", "ignored")
	p1, err := LoadPolicy(dir)
	if err != nil {
		t.Fatalf("LoadPolicy(dir) error = %v", err)
	}
	if p1.RuleCount() != 2 || len(p1.Tests()) != 1 || !strings.HasPrefix(p1.Ref().Digest, "sha256:") {
		t.Fatalf("LoadPolicy(dir) = %d rules, %d tests, digest %q; want 2, 1, sha256:...", p1.RuleCount(), len(p1.Tests()), p1.Ref().Digest)
	}
	p2, err := LoadPolicy(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Ref() != p2.Ref() {
		t.Errorf("LoadPolicy twice: refs %v and %v, want equal", p1.Ref(), p2.Ref())
	}
	write("b.yaml", "rules:\n  - {id: r2, action: SUPPRESS, priority: 1, reasons: [A]}\n")
	p3, err := LoadPolicy(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Ref().Digest == p1.Ref().Digest {
		t.Errorf("digest unchanged after editing b.yaml: %s", p3.Ref().Digest)
	}
	single, err := LoadPolicy(filepath.Join(dir, "a.yaml"))
	if err != nil {
		t.Fatalf("LoadPolicy(file) error = %v", err)
	}
	if single.RuleCount() != 1 {
		t.Errorf("LoadPolicy(file).RuleCount() = %d, want 1", single.RuleCount())
	}
}

func TestDecideHonoursContext(t *testing.T) {
	p := DefaultPolicy()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Decide(ctx, testInput(EventInboundContact))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Decide(cancelled ctx) error = %v, want context.Canceled", err)
	}
	if _, err := p.Decide(context.Background(), nil); !errors.Is(err, ErrNilInput) {
		t.Errorf("Decide(nil) error = %v, want ErrNilInput", err)
	}
}

func TestIteratingRuleHonoursDeadline(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: loop, on: [INBOUND_CONTACT], when: 'customer.preferred_channels.exists(c, c == "SMS")', action: SUPPRESS, reasons: [LOOP]}
`)
	in := testInput(EventInboundContact)
	in.Customer.PreferredChannels = []Channel{ChannelEmail, ChannelSMS}
	res, err := p.Decide(context.Background(), in)
	if err != nil || res.Reasons[0].RuleID != "loop" {
		t.Fatalf("Decide() = %v, %v; want the loop rule to match", res, err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := p.Decide(ctx, in); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Decide(expired ctx) error = %v, want context.DeadlineExceeded", err)
	}
}

// TestGuardsAgreeWithCEL checks the Go prefilter against the CEL programs it short-cuts: for
// every rule of the default policy and every case of its corpus, evaluating with guards must
// give what the program alone gives.
func TestGuardsAgreeWithCEL(t *testing.T) {
	p := DefaultPolicy()
	ins := corpusInputs(t, p)
	guarded := 0
	for _, r := range p.rules {
		if r.when == nil || len(r.when.guards) == 0 {
			continue
		}
		guarded++
		for _, in := range ins {
			f := p.guards.facts(in)
			var act activation
			act.consts, act.adapter = p.consts, p.adapter
			act.reset(in, &f)
			got, _ := r.when.eval(context.Background(), &act)
			out, _, err := r.when.prg.Eval(&act)
			want := err == nil && out.Value() == true
			if got != want {
				t.Errorf("rule %s on %s: guarded eval = %v, CEL = %v", r.id, in.Event.ID, got, want)
			}
		}
	}
	if guarded < 5 {
		t.Errorf("%d rules of the default policy have guards, want at least 5", guarded)
	}
}

// TestDecideAllocs keeps the allocation budget of a decision: at most 10 on average over the
// default policy's cases (engine and guardrails, no explanation).
func TestDecideAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("alloc guard")
	}
	p := DefaultPolicy()
	ins := corpusInputs(t, p)
	ctx := context.Background()
	i := 0
	avg := testing.AllocsPerRun(len(ins)*20, func() {
		if _, err := p.Decide(ctx, ins[i%len(ins)]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if avg > 10 {
		t.Errorf("Decide allocates %.1f times per decision on average, want at most 10", avg)
	}
}

// TestExplanationGolden renders the explanation of selected default-policy cases and compares
// it with testdata/explain/*.golden (refresh with go test ./decision -run Golden -update).
func TestExplanationGolden(t *testing.T) {
	p := DefaultPolicy()
	names := map[string]string{
		"business retry limit reached falls back to a message":      "retry-limit",
		"SMS daily cap falls back to email":                         "sms-cap",
		"caller in arrears goes to collections":                     "inbound-arrears",
		"vulnerable customer gets the hardship team, never a retry": "vulnerable",
		"high-risk login goes to the fraud team":                    "risky-login",
	}
	found := 0
	for i := range p.Tests() {
		tc := &p.Tests()[i]
		file, ok := names[tc.Name]
		if !ok {
			continue
		}
		found++
		t.Run(file, func(t *testing.T) {
			in, err := tc.Input()
			if err != nil {
				t.Fatal(err)
			}
			in.Explain = true
			res, err := p.Decide(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			got := RenderExplanation(res)
			path := filepath.Join("testdata", "explain", file+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("RenderExplanation(%s) mismatch (-want +got):\n%s", tc.Name, diff)
			}
		})
	}
	if found != len(names) {
		t.Errorf("found %d of the %d golden cases in the default policy", found, len(names))
	}
}

// TestDecideConcurrent decides the corpus from several goroutines at once on one Policy (its
// working memory is pooled) and checks every answer against the sequential one.
func TestDecideConcurrent(t *testing.T) {
	p := DefaultPolicy()
	ins := corpusInputs(t, p)
	want := make([]string, len(ins))
	for i, in := range ins {
		res, err := p.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = describeResult(res)
	}
	errs := make(chan string, 8*len(ins))
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := range ins {
				i := (k + g) % len(ins)
				res, err := p.Decide(context.Background(), ins[i])
				if err != nil {
					errs <- err.Error()
					continue
				}
				if got := describeResult(res); got != want[i] {
					errs <- fmt.Sprintf("case %d: concurrent Decide = %s\nwant %s", i, got, want[i])
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestLint(t *testing.T) {
	if w := DefaultPolicy().Lint(); len(w) != 0 {
		t.Errorf("DefaultPolicy().Lint() = %q, want no warnings", w)
	}
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: catch-all, on: [INBOUND_CONTACT], priority: 10, action: ESCALATE, escalate: {queue: general}, reasons: [A]}
  - {id: shadowed, on: [INBOUND_CONTACT], priority: 5, action: ESCALATE, escalate: {queue: fraud}, reasons: [B]}
  - {id: reachable, on: [INBOUND_CONTACT, RISKY_LOGIN], priority: 5, action: SUPPRESS, reasons: [C]}
`)
	want := []string{
		"the bundle has no test cases",
		"bundle.yaml:5: rule shadowed can never win: rule catch-all always matches, ranks higher and is never blocked",
	}
	if diff := cmp.Diff(want, p.Lint()); diff != "" {
		t.Errorf("Lint() mismatch (-want +got):\n%s", diff)
	}
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/server"
)

func policyHelp() help {
	return help{
		summary: "lint, test and diff policy bundles; publish, activate and shadow versions on a server",
		usage:   []string{"policy SUBCOMMAND [flags]"},
		detail: `PATH, OLD and NEW are a bundle file or folder, or "default" for the bundled default policy.
The governance subcommands talk to a running server's PolicyService with the admin role
(docs/governance.md).`,
		examples: []string{
			"arbiter policy lint policies/default",
			"arbiter policy test policies/default --coverage",
			"arbiter policy diff default ./next --events events.jsonl",
			"arbiter policy publish ./next --comment \"refer arrears at 30 days\"",
		},
	}
}

// policyCommands are the subcommands of "arbiter policy": the local tools on bundle files,
// then the governance commands.
func policyCommands() []command {
	const local = "Local tools (on bundle files)"
	cmds := []command{
		{name: "lint", help: policyLintHelp, run: runPolicyLint, section: local},
		{name: "test", help: policyTestHelp, run: runPolicyTest, section: local},
		{name: "diff", help: policyDiffHelp, run: runPolicyDiff, section: local},
	}
	for _, ac := range policyAdminCommands() {
		name := ac.name
		cmds = append(cmds, command{name: name, help: ac.help, section: "Governance (against a running server)",
			run: func(ctx context.Context, args []string, env func(string) string, _ io.Reader, stdout, stderr io.Writer) error {
				_, err := runPolicyAdmin(ctx, append([]string{name}, args...), env, stdout, stderr)
				return err
			}})
	}
	return cmds
}

// readBundle reads the files of a bundle path, or of the embedded default for "default"
// (unless a file or folder of that name exists).
func readBundle(path string) (map[string][]byte, error) {
	if path == "default" {
		if _, err := os.Stat(path); err != nil {
			return decision.DefaultPolicy().Files(), nil
		}
	}
	return readPolicyBundleFiles(path)
}

// loadBundle loads a bundle path, or the embedded default for "default".
func loadBundle(path string) (*decision.Policy, error) {
	files, err := readBundle(path)
	if err != nil {
		return nil, err
	}
	return decision.ParsePolicy(files)
}

// bundleProblems returns the problems of a bundle that did not load: its *BundleError values,
// or the error itself as one problem without a file.
func bundleProblems(err error) []decision.BundleError {
	var out []decision.BundleError
	for _, be := range decision.BundleErrors(err) {
		out = append(out, *be)
	}
	if len(out) == 0 {
		out = append(out, decision.BundleError{Msg: err.Error()})
	}
	return out
}

func policyLintHelp() help {
	return help{
		summary: "compile a bundle and report every problem and warning",
		usage:   []string{"policy lint PATH [--format text|json|junit]"},
		detail: `Every problem is reported with its file, line and rule, and the other files of the bundle
are checked too. Warnings (the bundle still loads): a rule that can never win because an
always-true ESCALATE or SUPPRESS rule outranks it on every event type it applies to (also
within an experiment arm that replaces or removes rules), a
SERVICE message rule whose template or reasons suggest promotion (acknowledged with the rule
field purpose_ack: "why"), and a bundle without test cases. Exit status 1 when the bundle is invalid; warnings alone exit 0.`,
		examples: []string{
			"arbiter policy lint policies/default",
			"arbiter policy lint ./next --format junit > lint.xml   # for CI test reports",
			"arbiter policy lint ./next --format json | jq '.errors[]'",
		},
	}
}

func runPolicyLint(_ context.Context, args []string, _ func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter policy lint"
	fs := newFlagSet(cmd)
	format := formatText
	fs.Var(&format, "format", "output: text, json or junit")
	pos, err := parseArgs(fs, policyLintHelp(), args, nil, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef(cmd, "policy lint: want one PATH, got %d arguments", len(pos))
	}
	files, err := readBundle(pos[0])
	if err != nil {
		return fmt.Errorf("policy lint: %w", err)
	}
	rep := lintReport{Path: pos[0], Files: slices.Sorted(maps.Keys(files))}
	p, perr := decision.ParsePolicy(files)
	if perr != nil {
		rep.Errors = bundleProblems(perr)
	} else {
		rep.Policy, rep.Rules, rep.Tests = p.Ref(), p.RuleCount(), len(p.Tests())
		rep.Warnings = p.LintFindings()
	}
	if err := rep.write(stdout, format); err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("policy lint %s: the bundle is invalid", pos[0])
	}
	return nil
}

func policyTestHelp() help {
	return help{
		summary: "run a bundle's test cases",
		usage:   []string{"policy test PATH [-run RE] [-v] [--coverage] [--format text|json|junit]"},
		detail: `Decides each test case of the bundle (its tests: and the files under tests/) and compares
the answer with the case's expect:. --coverage decides with the explanation on and reports
which rules the cases matched and won, and which guardrails they made block or change a
candidate; what no case exercised is listed at the end. Exit status 1 when a case fails, when
no case ran, or when the bundle is invalid.`,
		examples: []string{
			"arbiter policy test policies/default",
			"arbiter policy test policies/default -run overdue -v   # the explanation of each failing case",
			"arbiter policy test ./next --coverage",
			"arbiter policy test ./next --format junit > policy-tests.xml",
		},
	}
}

func runPolicyTest(ctx context.Context, args []string, _ func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter policy test"
	fs := newFlagSet(cmd)
	runRE := fs.String("run", "", "run only the cases whose name matches this regular expression")
	verbose := fs.Bool("v", false, "text: print the decision and its explanation for every failing case")
	coverage := fs.Bool("coverage", false, "report which rules and guardrails the cases exercised, and which none did")
	format := formatText
	fs.Var(&format, "format", "output: text, json or junit")
	pos, err := parseArgs(fs, policyTestHelp(), args, nil, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef(cmd, "policy test: want one PATH, got %d arguments", len(pos))
	}
	var match *regexp.Regexp
	if *runRE != "" {
		if match, err = regexp.Compile(*runRE); err != nil {
			return usagef(cmd, "policy test: -run: %w", err)
		}
	}
	files, err := readBundle(pos[0])
	if err != nil {
		return fmt.Errorf("policy test: %w", err)
	}
	p, perr := decision.ParsePolicy(files)
	if perr != nil {
		rep := testReport{Path: pos[0], Errors: bundleProblems(perr)}
		if err := rep.write(stdout, format, false); err != nil {
			return err
		}
		return fmt.Errorf("policy test %s: the bundle is invalid", pos[0])
	}
	rep := testReport{Path: pos[0], Policy: p.Ref(), verbose: *verbose}
	start := time.Now()
	for i := range p.Tests() {
		tc := &p.Tests()[i]
		if match != nil && !match.MatchString(tc.Name) {
			continue
		}
		if *verbose || *coverage {
			tc = withExplain(tc)
		}
		t0 := time.Now()
		r := p.RunTest(ctx, tc)
		rep.Results = append(rep.Results, r)
		rep.Durations = append(rep.Durations, time.Since(t0))
		if r.Passed() {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	rep.Duration = time.Since(start)
	if *coverage {
		cov := p.Coverage(rep.Results)
		rep.Coverage = &cov
	}
	if err := rep.write(stdout, format, *coverage); err != nil {
		return err
	}
	if rep.Failed > 0 {
		return fmt.Errorf("policy test: %d of %d cases failed", rep.Failed, rep.Passed+rep.Failed)
	}
	if rep.Passed == 0 {
		return errors.New("policy test: no test case ran")
	}
	return nil
}

// withExplain returns a copy of tc that decides with the explanation on.
func withExplain(tc *decision.TestCase) *decision.TestCase {
	c := *tc
	c.Explain = true
	return &c
}

func policyDiffHelp() help {
	return help{
		summary: "decide recorded events under two bundles and report what changes",
		usage:   []string{"policy diff OLD NEW --events FILE [--examples N] [--now TIME]"},
		detail: `FILE holds DecideRequest messages in protobuf JSON, one per line ("-": standard input).
Each is decided under both bundles without stored state, at the event's occurred_at or --now;
the report gives the changed decisions, the action transitions, the reason codes added and
removed, and examples.`,
		examples: []string{
			"arbiter policy diff default ./next --events events.jsonl",
			"arbiter policy diff ./v1 ./v2 --events - --now 2026-03-10T12:00:00Z < events.jsonl",
		},
	}
}

func runPolicyDiff(ctx context.Context, args []string, _ func(string) string, stdin io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter policy diff"
	fs := newFlagSet(cmd)
	events := fs.String("events", "", "file of DecideRequest messages in protojson, one per line (\"-\": standard input)")
	examples := fs.Int("examples", 10, "most changed decisions to show")
	nowFlag := fs.String("now", "", "decision time (RFC 3339) for events without occurred_at; default: the current time")
	pos, err := parseArgs(fs, policyDiffHelp(), args, nil, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 2 || *events == "" {
		return usagef(cmd, "policy diff: want OLD, NEW and --events")
	}
	now := time.Now().UTC()
	if *nowFlag != "" {
		if now, err = time.Parse(time.RFC3339, *nowFlag); err != nil {
			return usagef(cmd, "policy diff: --now: %w", err)
		}
	}
	oldP, err := loadBundle(pos[0])
	if err != nil {
		return fmt.Errorf("policy diff: old: %w", err)
	}
	newP, err := loadBundle(pos[1])
	if err != nil {
		return fmt.Errorf("policy diff: new: %w", err)
	}
	var r io.Reader = stdin
	if *events != "-" {
		f, err := os.Open(*events)
		if err != nil {
			return fmt.Errorf("policy diff: %w", err)
		}
		defer f.Close()
		r = f
	}
	inputs, err := readDecideRequests(r, now)
	if err != nil {
		return fmt.Errorf("policy diff: %s: %w", *events, err)
	}
	d, err := decision.DiffPolicies(ctx, oldP, newP, inputs, *examples)
	if err != nil {
		return fmt.Errorf("policy diff: %w", err)
	}
	fmt.Fprintf(stdout, "old: %s %s (%s)\nnew: %s %s (%s)\n\n", oldP.Ref().ID, oldP.Ref().Version, oldP.Ref().Digest,
		newP.Ref().ID, newP.Ref().Version, newP.Ref().Digest)
	fmt.Fprint(stdout, d.String())
	return nil
}

// readDecideRequests reads JSON lines of DecideRequest (protojson) into decision inputs with
// no stored state, decided at the event's occurred_at or now.
func readDecideRequests(r io.Reader, now time.Time) ([]*decision.Input, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var out []*decision.Input
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		var req arbiterv1.DecideRequest
		if err := unmarshalRequest([]byte(text), &req); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		in := requestInput(&req, now)
		if in.Event.ID == "" {
			in.Event.ID = fmt.Sprintf("line-%d", line)
		}
		out = append(out, in)
	}
	return out, sc.Err()
}

// requestInput converts a DecideRequest to a decision input with the server's conversion,
// deciding at the event's occurred_at when it has one, else at now.
func requestInput(req *arbiterv1.DecideRequest, now time.Time) *decision.Input {
	in := server.InputFromRequest(req)
	in.Now, in.Explain = now, req.GetOptions().GetExplain()
	if !in.Event.OccurredAt.IsZero() {
		in.Now = in.Event.OccurredAt
	}
	return &in
}

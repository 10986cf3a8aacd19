package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/server"
)

// runPolicy is the "policy" command: local tools (lint, test, diff) that work on bundle files,
// and the governance subcommands that talk to a running server.
func runPolicy(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		policyUsage(stdout)
		if len(args) == 0 {
			return errors.New("policy: no subcommand given")
		}
		return nil
	}
	switch args[0] {
	case "lint":
		return runPolicyLint(args[1:], stdout, stderr)
	case "test":
		return runPolicyTest(ctx, args[1:], stdout, stderr)
	case "diff":
		return runPolicyDiff(ctx, args[1:], stdin, stdout, stderr)
	}
	if handled, err := runPolicyAdmin(ctx, args, env, stdout, stderr); handled {
		return err
	}
	policyUsage(stderr)
	return fmt.Errorf("policy: unknown subcommand %q", args[0])
}

func policyUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: arbiter policy SUBCOMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  lint PATH                        compile a bundle (file or folder); report every problem and warning")
	fmt.Fprintln(w, "  test PATH [-run RE] [-v]         run the bundle's test cases; exit 1 on a failure")
	fmt.Fprintln(w, "  diff OLD NEW --events FILE       decide the events under both bundles and report the changes")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "PATH, OLD and NEW are a bundle file or folder, or \"default\" for the bundled default policy.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "governance (against a running server):")
	policyAdminUsage(w)
}

// loadBundle loads a bundle path, or the embedded default for "default".
func loadBundle(path string) (*decision.Policy, error) {
	if path == "default" {
		if _, err := os.Stat(path); err != nil {
			return decision.DefaultPolicy(), nil
		}
	}
	return decision.LoadPolicy(path)
}

func runPolicyLint(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: arbiter policy lint PATH") }
	pos, err := adminParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("policy lint: want one PATH")
	}
	p, err := loadBundle(pos[0])
	if err != nil {
		fmt.Fprintln(stdout, err)
		return fmt.Errorf("policy lint %s: the bundle is invalid", pos[0])
	}
	for _, w := range p.Lint() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	ref := p.Ref()
	fmt.Fprintf(stdout, "ok: %s version %s (%s): %d rules, %d test cases\n", ref.ID, ref.Version, ref.Digest, p.RuleCount(), len(p.Tests()))
	return nil
}

func runPolicyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runRE := fs.String("run", "", "run only the cases whose name matches this regular expression")
	verbose := fs.Bool("v", false, "print the decision and its explanation for every failing case")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: arbiter policy test PATH [-run RE] [-v]")
		fs.PrintDefaults()
	}
	pos, err := adminParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("policy test: want one PATH")
	}
	var match *regexp.Regexp
	if *runRE != "" {
		if match, err = regexp.Compile(*runRE); err != nil {
			return fmt.Errorf("policy test: -run: %w", err)
		}
	}
	p, err := loadBundle(pos[0])
	if err != nil {
		fmt.Fprintln(stdout, err)
		return fmt.Errorf("policy test %s: the bundle is invalid", pos[0])
	}
	passed, failed := 0, 0
	for i := range p.Tests() {
		tc := &p.Tests()[i]
		if match != nil && !match.MatchString(tc.Name) {
			continue
		}
		if *verbose {
			tc = withExplain(tc)
		}
		r := p.RunTest(ctx, tc)
		if r.Passed() {
			passed++
			fmt.Fprintf(stdout, "PASS  %s\n", tc.Name)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s (%s)\n", tc.Name, tc.File)
		for _, f := range r.Failures {
			fmt.Fprintf(stdout, "      %s\n", f)
		}
		if *verbose && r.Result != nil {
			for _, line := range strings.Split(strings.TrimRight(decision.RenderExplanation(r.Result), "\n"), "\n") {
				fmt.Fprintf(stdout, "      | %s\n", line)
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return fmt.Errorf("policy test: %d of %d cases failed", failed, passed+failed)
	}
	if passed == 0 {
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

func runPolicyDiff(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.String("events", "", "file of DecideRequest messages in protojson, one per line (\"-\": standard input)")
	examples := fs.Int("examples", 10, "most changed decisions to show")
	nowFlag := fs.String("now", "", "decision time (RFC 3339) for events without occurred_at; default: the current time")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: arbiter policy diff OLD NEW --events FILE [--examples N] [--now TIME]")
		fs.PrintDefaults()
	}
	pos, err := adminParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || *events == "" {
		fs.Usage()
		return errors.New("policy diff: want OLD, NEW and --events")
	}
	now := time.Now().UTC()
	if *nowFlag != "" {
		if now, err = time.Parse(time.RFC3339, *nowFlag); err != nil {
			return fmt.Errorf("policy diff: --now: %w", err)
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
		if err := protojson.Unmarshal([]byte(text), &req); err != nil {
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

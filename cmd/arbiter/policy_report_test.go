package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeFiles writes files (name → content) under a new folder and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// brokenBundle has a YAML syntax error in the file that sets id and version, and a bad rule in
// another file.
var brokenBundle = map[string]string{
	"bundle.yaml": "id: t\nversion: \"1\"\npayments:\n  retry_limits: {later: 4}\n  backoff: [4h]\n    acquirers: [oops\n",
	"rules.yaml":  "rules:\n  - {id: r, on: [INBOUND_CONTACT], action: CALL, reasons: [A]}\n",
}

// warnedBundle loads, with a rule that can never win and a test case that fails.
var warnedBundle = map[string]string{
	"bundle.yaml": `id: w
version: "3"
rules:
  - {id: catch-all, on: [INBOUND_CONTACT], when: "true", priority: 10, action: ESCALATE, escalate: {queue: general}, reasons: [A]}
  - {id: fraud, on: [INBOUND_CONTACT], when: 'features.?fraud.orValue(false) == true', priority: 5, action: ESCALATE, escalate: {queue: fraud}, reasons: [B]}
  - {id: logins, on: [RISKY_LOGIN], action: SUPPRESS, reasons: [C]}
`,
	"tests/cases.yaml": `tests:
  - {name: routes callers, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE, queue: general}}
  - {name: wrong on purpose, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE, queue: fraud}}
`,
}

func TestPolicyLintFormats(t *testing.T) {
	broken, warned := writeFiles(t, brokenBundle), writeFiles(t, warnedBundle)

	// Text: the real line of the syntax error, once, no false id/version errors, and the
	// other file checked too.
	out, err := runArbiter(t, "", "policy", "lint", broken)
	if exitCode(err) != 1 {
		t.Errorf("policy lint broken exits %d (%v), want 1", exitCode(err), err)
	}
	want := "invalid policy bundle:\nbundle.yaml:6: YAML syntax error: did not find expected key\n" +
		`rules.yaml:2: rule r: action: "CALL" must be RETRY, MESSAGE, ESCALATE or SUPPRESS` + "\n"
	if out != want {
		t.Errorf("policy lint broken printed:\n%s\nwant:\n%s", out, want)
	}
	out, err = runArbiter(t, "", "policy", "lint", warned)
	if err != nil || !strings.Contains(out, "warning: bundle.yaml:5: rule fraud can never win: rule catch-all always matches") || !strings.Contains(out, "ok: w version 3") {
		t.Errorf("policy lint warned = %q, %v; want the warning, ok and nil", out, err)
	}

	// JSON.
	type problem struct {
		File    string `json:"file"`
		Line    int    `json:"line"`
		Rule    string `json:"rule"`
		Message string `json:"message"`
	}
	type lintJSON struct {
		Valid    bool      `json:"valid"`
		Files    []string  `json:"files"`
		Errors   []problem `json:"errors"`
		Warnings []problem `json:"warnings"`
		Policy   *struct {
			ID, Version string
		} `json:"policy"`
		Rules int `json:"rules"`
	}
	for _, tc := range []struct {
		dir  string
		code int
		want lintJSON
	}{
		{broken, 1, lintJSON{Files: []string{"bundle.yaml", "rules.yaml"}, Errors: []problem{
			{File: "bundle.yaml", Line: 6, Message: "YAML syntax error: did not find expected key"},
			{File: "rules.yaml", Line: 2, Rule: "r", Message: `action: "CALL" must be RETRY, MESSAGE, ESCALATE or SUPPRESS`}},
			Warnings: []problem{}}},
		{warned, 0, lintJSON{Valid: true, Files: []string{"bundle.yaml", "tests/cases.yaml"}, Errors: []problem{}, Rules: 3,
			Policy: &struct{ ID, Version string }{"w", "3"},
			Warnings: []problem{{File: "bundle.yaml", Line: 5, Rule: "fraud",
				Message: "rule fraud can never win: rule catch-all always matches, ranks higher and is never blocked"}}}},
	} {
		var stdout bytes.Buffer
		err := run(t.Context(), []string{"policy", "lint", tc.dir, "--format", "json"}, noEnv, nil, &stdout, &bytes.Buffer{})
		if exitCode(err) != tc.code {
			t.Errorf("policy lint --format json exits %d (%v), want %d", exitCode(err), err, tc.code)
		}
		var got lintJSON
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("policy lint --format json printed invalid JSON: %v\n%s", err, stdout.String())
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("policy lint --format json mismatch (-want +got):\n%s", diff)
		}
	}

	// JUnit: a case per file, failed where the file has problems.
	var stdout bytes.Buffer
	err = run(t.Context(), []string{"policy", "lint", broken, "--format", "junit"}, noEnv, nil, &stdout, &bytes.Buffer{})
	if exitCode(err) != 1 {
		t.Errorf("policy lint --format junit of a broken bundle exits %d, want 1", exitCode(err))
	}
	var suites junitSuites
	if err := xml.Unmarshal(stdout.Bytes(), &suites); err != nil {
		t.Fatalf("policy lint --format junit printed invalid XML: %v\n%s", err, stdout.String())
	}
	if suites.Tests != 2 || suites.Failures != 2 || len(suites.Suites) != 1 || len(suites.Suites[0].Cases) != 2 {
		t.Fatalf("policy lint --format junit = %+v, want 2 cases, both failed", suites)
	}
	if c := suites.Suites[0].Cases[0]; c.Name != "bundle.yaml" || c.Failure == nil || !strings.Contains(c.Failure.Text, "bundle.yaml:6: YAML syntax error") {
		t.Errorf("policy lint --format junit first case = %+v, want bundle.yaml failed at line 6", c)
	}
}

func TestPolicyTestFormats(t *testing.T) {
	dir := writeFiles(t, warnedBundle)

	// Text with coverage: the rules and guardrails, and what no case exercised.
	out, err := runArbiter(t, "", "policy", "test", dir, "--coverage")
	if exitCode(err) != 1 {
		t.Errorf("policy test with a failing case exits %d (%v), want 1", exitCode(err), err)
	}
	for _, want := range []string{
		"1 passed, 1 failed",
		"coverage: 1 of 3 rules matched, 0 of 11 guardrails acted, in 2 cases",
		"catch-all  bundle.yaml:4",
		"not exercised by any case:\n  rule fraud (bundle.yaml:5): no case matched it\n  rule logins (bundle.yaml:6): no case matched it\n  guardrail:store: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("policy test --coverage printed:\n%s\nwant it to contain %q", out, want)
		}
	}

	// JSON.
	var stdout bytes.Buffer
	err = run(t.Context(), []string{"policy", "test", dir, "--format", "json", "--coverage"}, noEnv, nil, &stdout, &bytes.Buffer{})
	if exitCode(err) != 1 {
		t.Errorf("policy test --format json exits %d, want 1", exitCode(err))
	}
	var got struct {
		Passed, Failed int
		Cases          []struct {
			Name     string
			File     string
			Passed   bool
			Failures []string
		}
		Coverage struct {
			Rules []struct {
				ID      string
				Matched int
				Covered bool
			}
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("policy test --format json printed invalid JSON: %v\n%s", err, stdout.String())
	}
	if got.Passed != 1 || got.Failed != 1 || len(got.Cases) != 2 || got.Cases[1].Passed || got.Cases[1].File != "tests/cases.yaml" ||
		len(got.Cases[1].Failures) == 0 || len(got.Coverage.Rules) != 3 || !got.Coverage.Rules[0].Covered || got.Coverage.Rules[1].Covered {
		t.Errorf("policy test --format json = %+v, want 1 passed, the failing case with its failures, and the coverage of 3 rules", got)
	}

	// JUnit.
	stdout.Reset()
	err = run(t.Context(), []string{"policy", "test", dir, "--format", "junit"}, noEnv, nil, &stdout, &bytes.Buffer{})
	if exitCode(err) != 1 {
		t.Errorf("policy test --format junit exits %d, want 1", exitCode(err))
	}
	var suites junitSuites
	if err := xml.Unmarshal(stdout.Bytes(), &suites); err != nil {
		t.Fatalf("policy test --format junit printed invalid XML: %v\n%s", err, stdout.String())
	}
	if suites.Tests != 2 || suites.Failures != 1 || suites.Suites[0].Name != "w 3" {
		t.Fatalf("policy test --format junit = %+v, want suite w 3 with 2 cases, 1 failed", suites)
	}
	c := suites.Suites[0].Cases[1]
	if c.Name != "wrong on purpose" || c.Classname != "tests/cases.yaml" || c.Failure == nil || !strings.Contains(c.Failure.Text, `escalate.queue = "general", want "fraud"`) {
		t.Errorf("policy test --format junit second case = %+v, want it failed with the queue mismatch", c)
	}

	// A bundle that does not load fails in every format.
	broken := writeFiles(t, brokenBundle)
	for _, f := range []string{"text", "json", "junit"} {
		var out bytes.Buffer
		err := run(t.Context(), []string{"policy", "test", broken, "--format", f}, noEnv, nil, &out, &bytes.Buffer{})
		if exitCode(err) != 1 || !strings.Contains(out.String(), "YAML syntax error") {
			t.Errorf("policy test of a broken bundle --format %s = %v, printed:\n%s\nwant the problem and exit 1", f, err, out.String())
		}
	}
}

package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
)

// outputFormat is the value of --format of policy lint and policy test.
type outputFormat string

const (
	formatText  outputFormat = "text"
	formatJSON  outputFormat = "json"
	formatJUnit outputFormat = "junit"
)

func (f *outputFormat) String() string { return string(*f) }

func (f *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case formatText, formatJSON, formatJUnit:
		*f = outputFormat(s)
		return nil
	}
	return errors.New("want text, json or junit")
}

// lintReport is what "policy lint" found in one bundle.
type lintReport struct {
	Path     string
	Files    []string // the bundle's files, in name order
	Policy   decision.PolicyRef
	Rules    int
	Tests    int
	Errors   []decision.BundleError // the bundle is invalid when there are any
	Warnings []decision.BundleError
}

// problemJSON is a problem or warning in JSON output.
type problemJSON struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Message string `json:"message"`
}

func problemsJSON(ps []decision.BundleError) []problemJSON {
	out := make([]problemJSON, len(ps))
	for i, p := range ps {
		out[i] = problemJSON{File: p.File, Line: p.Line, Rule: p.Rule, Message: p.Msg}
	}
	return out
}

// policyJSON names a bundle in JSON output.
type policyJSON struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

// problemText is a problem as text: "file:line: rule ID: message". Warnings name their rule
// in the message already.
func problemText(p decision.BundleError, warning bool) string {
	if warning {
		p.Rule = ""
	}
	if p.File == "" {
		return p.Msg
	}
	return p.Error()
}

func (r *lintReport) write(w io.Writer, f outputFormat) error {
	switch f {
	case formatJSON:
		out := struct {
			Path     string        `json:"path"`
			Valid    bool          `json:"valid"`
			Policy   *policyJSON   `json:"policy,omitempty"`
			Rules    int           `json:"rules"`
			Tests    int           `json:"tests"`
			Files    []string      `json:"files"`
			Errors   []problemJSON `json:"errors"`
			Warnings []problemJSON `json:"warnings"`
		}{Path: r.Path, Valid: len(r.Errors) == 0, Rules: r.Rules, Tests: r.Tests, Files: r.Files,
			Errors: problemsJSON(r.Errors), Warnings: problemsJSON(r.Warnings)}
		if out.Valid {
			out.Policy = &policyJSON{ID: r.Policy.ID, Version: r.Policy.Version, Digest: r.Policy.Digest}
		}
		return writeJSON(w, out)
	case formatJUnit:
		return writeJUnit(w, r.junit())
	}
	var b strings.Builder
	if len(r.Errors) > 0 {
		b.WriteString("invalid policy bundle:\n")
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "%s\n", problemText(e, false))
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", problemText(wn, true))
	}
	if len(r.Errors) == 0 {
		fmt.Fprintf(&b, "ok: %s version %s (%s): %d rules, %d test cases\n", r.Policy.ID, r.Policy.Version, r.Policy.Digest, r.Rules, r.Tests)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// junit is the lint report as JUnit XML: one test case per bundle file, failed when the file
// has problems, with its warnings as output; problems and warnings about the whole bundle
// form a case of their own.
func (r *lintReport) junit() junitSuites {
	s := junitSuite{Name: "arbiter policy lint " + r.Path}
	byFile := map[string]int{} // index in s.Cases
	caseOf := func(file string) *junitCase {
		i, ok := byFile[file]
		if !ok {
			name := file
			if name == "" {
				name = "(bundle)"
			}
			i = len(s.Cases)
			s.Cases = append(s.Cases, junitCase{Name: name, Classname: "policy lint", File: file})
			byFile[file] = i
		}
		return &s.Cases[i]
	}
	for _, f := range r.Files {
		caseOf(f)
	}
	for _, e := range r.Errors {
		c := caseOf(e.File)
		if c.Failure == nil {
			c.Failure = &junitFailure{Type: "invalid"}
		}
		c.Failure.Text += problemText(e, false) + "\n"
	}
	for _, wn := range r.Warnings {
		c := caseOf(wn.File)
		c.SystemOut += "warning: " + problemText(wn, true) + "\n"
	}
	for i := range s.Cases {
		if f := s.Cases[i].Failure; f != nil {
			f.Message = fmt.Sprintf("%d problem(s)", strings.Count(f.Text, "\n"))
			s.Failures++
		}
	}
	s.Tests = len(s.Cases)
	return junitSuites{Name: "arbiter policy lint", Tests: s.Tests, Failures: s.Failures, Suites: []junitSuite{s}}
}

// testReport is what "policy test" found.
type testReport struct {
	Path      string
	Policy    decision.PolicyRef
	Errors    []decision.BundleError // the bundle did not load
	Results   []decision.TestResult
	Durations []time.Duration // of each result
	Duration  time.Duration
	Passed    int
	Failed    int
	Coverage  *decision.Coverage
	verbose   bool
}

func (r *testReport) write(w io.Writer, f outputFormat, coverage bool) error {
	switch f {
	case formatJSON:
		return writeJSON(w, r.json())
	case formatJUnit:
		return writeJUnit(w, r.junit())
	}
	var b strings.Builder
	if len(r.Errors) > 0 {
		b.WriteString("invalid policy bundle:\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "%s\n", problemText(e, false))
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	for _, res := range r.Results {
		tc := res.Case
		if res.Passed() {
			fmt.Fprintf(&b, "PASS  %s\n", tc.Name)
			continue
		}
		fmt.Fprintf(&b, "FAIL  %s (%s)\n", tc.Name, tc.File)
		for _, fl := range res.Failures {
			fmt.Fprintf(&b, "      %s\n", fl)
		}
		if r.verbose && res.Result != nil {
			for _, line := range strings.Split(strings.TrimRight(decision.RenderExplanation(res.Result), "\n"), "\n") {
				fmt.Fprintf(&b, "      | %s\n", line)
			}
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed\n", r.Passed, r.Failed)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if coverage && r.Coverage != nil {
		return writeCoverageText(w, r.Coverage)
	}
	return nil
}

// writeCoverageText prints a coverage report: a table of rules, a table of guardrails, and
// what no case exercised.
func writeCoverageText(w io.Writer, cov *decision.Coverage) error {
	rules, guards := 0, 0
	for _, r := range cov.Rules {
		if r.Covered() {
			rules++
		}
	}
	for _, g := range cov.Guardrails {
		if g.Covered() {
			guards++
		}
	}
	fmt.Fprintf(w, "\ncoverage: %d of %d rules matched, %d of %d guardrails acted, in %d cases\n\n",
		rules, len(cov.Rules), guards, len(cov.Guardrails), cov.Cases)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tWHERE\tMATCHED\tWON")
	for _, r := range cov.Rules {
		fmt.Fprintf(tw, "%s\t%s:%d\t%d\t%d\n", r.RuleID, r.File, r.Line, r.Matched, r.Won)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "GUARDRAIL\tBLOCKED\tCHANGED")
	for _, g := range cov.Guardrails {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", g.Guardrail, g.Blocked, g.Modified)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var missed []string
	for _, r := range cov.Rules {
		if !r.Covered() {
			missed = append(missed, fmt.Sprintf("rule %s (%s:%d): no case matched it", r.RuleID, r.File, r.Line))
		}
	}
	for _, g := range cov.Guardrails {
		if !g.Covered() {
			missed = append(missed, g.Guardrail+": no case made it block or change a candidate")
		}
	}
	if len(missed) == 0 {
		_, err := fmt.Fprintln(w, "\nevery rule and guardrail was exercised")
		return err
	}
	fmt.Fprintln(w, "\nnot exercised by any case:")
	for _, m := range missed {
		fmt.Fprintf(w, "  %s\n", m)
	}
	return nil
}

// coverageJSON is a coverage report in JSON output.
type coverageJSON struct {
	Cases int `json:"cases"`
	Rules []struct {
		ID      string `json:"id"`
		File    string `json:"file"`
		Line    int    `json:"line"`
		Matched int    `json:"matched"`
		Won     int    `json:"won"`
		Covered bool   `json:"covered"`
	} `json:"rules"`
	Guardrails []struct {
		Guardrail string `json:"guardrail"`
		Blocked   int    `json:"blocked"`
		Changed   int    `json:"changed"`
		Covered   bool   `json:"covered"`
	} `json:"guardrails"`
}

func (r *testReport) json() any {
	type caseJSON struct {
		Name     string   `json:"name"`
		File     string   `json:"file"`
		Passed   bool     `json:"passed"`
		Failures []string `json:"failures,omitempty"`
		Seconds  float64  `json:"seconds"`
	}
	out := struct {
		Path     string        `json:"path"`
		Valid    bool          `json:"valid"`
		Policy   *policyJSON   `json:"policy,omitempty"`
		Errors   []problemJSON `json:"errors,omitempty"`
		Passed   int           `json:"passed"`
		Failed   int           `json:"failed"`
		Cases    []caseJSON    `json:"cases"`
		Coverage *coverageJSON `json:"coverage,omitempty"`
	}{Path: r.Path, Valid: len(r.Errors) == 0, Errors: problemsJSON(r.Errors), Passed: r.Passed, Failed: r.Failed, Cases: []caseJSON{}}
	if out.Valid {
		out.Policy = &policyJSON{ID: r.Policy.ID, Version: r.Policy.Version, Digest: r.Policy.Digest}
	}
	for i, res := range r.Results {
		out.Cases = append(out.Cases, caseJSON{Name: res.Case.Name, File: res.Case.File, Passed: res.Passed(),
			Failures: res.Failures, Seconds: r.Durations[i].Seconds()})
	}
	if cov := r.Coverage; cov != nil {
		cj := &coverageJSON{Cases: cov.Cases}
		for _, rc := range cov.Rules {
			cj.Rules = append(cj.Rules, struct {
				ID      string `json:"id"`
				File    string `json:"file"`
				Line    int    `json:"line"`
				Matched int    `json:"matched"`
				Won     int    `json:"won"`
				Covered bool   `json:"covered"`
			}{rc.RuleID, rc.File, rc.Line, rc.Matched, rc.Won, rc.Covered()})
		}
		for _, g := range cov.Guardrails {
			cj.Guardrails = append(cj.Guardrails, struct {
				Guardrail string `json:"guardrail"`
				Blocked   int    `json:"blocked"`
				Changed   int    `json:"changed"`
				Covered   bool   `json:"covered"`
			}{g.Guardrail, g.Blocked, g.Modified, g.Covered()})
		}
		out.Coverage = cj
	}
	return out
}

// junit is the test report as JUnit XML: one test case per policy test case, in a suite named
// for the bundle; a bundle that did not load is one failed case; the coverage report, when
// asked for, is the suite's output.
func (r *testReport) junit() junitSuites {
	s := junitSuite{Name: "arbiter policy test " + r.Path, Time: seconds(r.Duration)}
	if len(r.Errors) > 0 {
		var text strings.Builder
		for _, e := range r.Errors {
			text.WriteString(problemText(e, false) + "\n")
		}
		s.Cases = []junitCase{{Name: "load bundle", Classname: "policy test",
			Failure: &junitFailure{Type: "invalid", Message: "the bundle is invalid", Text: text.String()}}}
		s.Tests, s.Failures = 1, 1
		return junitSuites{Name: "arbiter policy test", Tests: 1, Failures: 1, Suites: []junitSuite{s}}
	}
	s.Name = fmt.Sprintf("%s %s", r.Policy.ID, r.Policy.Version)
	for i, res := range r.Results {
		c := junitCase{Name: res.Case.Name, Classname: res.Case.File, File: res.Case.File, Time: seconds(r.Durations[i])}
		if !res.Passed() {
			c.Failure = &junitFailure{Type: "failed", Message: res.Failures[0], Text: strings.Join(res.Failures, "\n") + "\n"}
			s.Failures++
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(s.Cases)
	if r.Coverage != nil {
		var b strings.Builder
		_ = writeCoverageText(&b, r.Coverage)
		s.SystemOut = strings.TrimLeft(b.String(), "\n")
	}
	return junitSuites{Name: "arbiter policy test", Tests: s.Tests, Failures: s.Failures, Time: s.Time, Suites: []junitSuite{s}}
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// JUnit XML, as CI systems read it (the Ant/Surefire schema).
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Time     string       `xml:"time,attr,omitempty"`
		Suites   []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name      string      `xml:"name,attr"`
		Tests     int         `xml:"tests,attr"`
		Failures  int         `xml:"failures,attr"`
		Errors    int         `xml:"errors,attr"`
		Time      string      `xml:"time,attr,omitempty"`
		Cases     []junitCase `xml:"testcase"`
		SystemOut string      `xml:"system-out,omitempty"`
	}
	junitCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		File      string        `xml:"file,attr,omitempty"`
		Time      string        `xml:"time,attr,omitempty"`
		Failure   *junitFailure `xml:"failure"`
		SystemOut string        `xml:"system-out,omitempty"`
	}
	junitFailure struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr,omitempty"`
		Text    string `xml:",chardata"`
	}
)

func writeJUnit(w io.Writer, s junitSuites) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

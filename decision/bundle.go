package decision

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"go.yaml.in/yaml/v3"

	"github.com/arbiter-dev/arbiter/policies"
)

// Bundle limits: a bundle larger than this is rejected before it is parsed.
const (
	maxBundleBytes = 8 << 20
	maxBundleRules = 10_000
	maxBundleFiles = 256
)

// BundleError is one problem found while loading a bundle. File and Line locate it (Line is
// 0 when unknown); Rule names the rule when the problem is in one.
type BundleError struct {
	File string
	Line int
	Rule string
	Msg  string
}

// Error implements error as "file:line: rule ID: message".
func (e *BundleError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Rule != "" {
		b.WriteString("rule ")
		b.WriteString(e.Rule)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrInvalidBundle wraps every error about a bundle's content; errors.As finds the
// *BundleError values inside.
var ErrInvalidBundle = errors.New("invalid policy bundle")

// BundleSchemaVersion is the version of the bundle format this package reads: the fields,
// their meaning and the CEL inputs of docs/policies.md. Bundles do not declare it; it changes
// only when a bundle written for an older version would no longer load or would decide
// differently.
const BundleSchemaVersion = "v1"

// bundleDuration is a duration in a bundle: Go syntax ("90m", "24h") or whole days ("7d").
type bundleDuration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler. A bad duration is a type error, so decoding goes
// on and reports the bundle's other problems too.
func (d *bundleDuration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = bundleDuration(v)
	return nil
}

// ParseDuration parses a duration as bundles write them: Go syntax ("90m", "4h") or whole
// days ("7d", at most 3650). Leading and trailing spaces are ignored; negative durations are
// refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 3650 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return v, nil
}

// bundleFile is one YAML file of a bundle. A folder's files are merged: rules, experiments
// and tests are concatenated in file-name order; id, version, description, guardrails and
// payments may each be set in one file only.
type bundleFile struct {
	ID          string           `yaml:"id"`
	Version     string           `yaml:"version"`
	Description string           `yaml:"description"`
	Guardrails  yaml.Node        `yaml:"guardrails"`
	Payments    yaml.Node        `yaml:"payments"`
	Rules       []ruleSpec       `yaml:"rules"`
	Experiments []experimentSpec `yaml:"experiments"`
	Tests       []TestCase       `yaml:"tests"`
}

// testFile is a file under tests/: only test cases.
type testFile struct {
	Tests []TestCase `yaml:"tests"`
}

// ruleSpec is a rule as written in a bundle.
type ruleSpec struct {
	ID          string        `yaml:"id"`
	Description string        `yaml:"description"`
	On          []string      `yaml:"on"`
	When        string        `yaml:"when"`
	Priority    int           `yaml:"priority"`
	Action      string        `yaml:"action"`
	Message     *messageSpec  `yaml:"message"`
	Escalate    *escalateSpec `yaml:"escalate"`
	Suppress    *suppressSpec `yaml:"suppress"`
	Retry       *retrySpec    `yaml:"retry"`
	Reasons     []string      `yaml:"reasons"`
	// PurposeAck acknowledges, with a reason, a lint warning that the rule's template or
	// reasons suggest promotion while its purpose is SERVICE (docs/policies.md).
	PurposeAck string `yaml:"purpose_ack"`

	file, line, whenLine int
}

type messageSpec struct {
	Channels []string       `yaml:"channels"`
	Template string         `yaml:"template"`
	Purpose  string         `yaml:"purpose"`
	Delay    bundleDuration `yaml:"delay"`
}

type escalateSpec struct {
	Queue    string            `yaml:"queue"`
	Priority int               `yaml:"priority"`
	Context  map[string]string `yaml:"context"`
}

type suppressSpec struct {
	For bundleDuration `yaml:"for"`
}

type retrySpec struct {
	Delay bundleDuration `yaml:"delay"`
}

// rule is a compiled rule.
type rule struct {
	id          string
	description string
	order       int
	priority    int
	events      []EventType // empty: every event type
	when        *condition  // nil: always
	cand        Candidate   // the candidate the rule proposes, without guardrail results
	purposeAck  string      // why a SERVICE purpose is right despite promotional words; "" none
	file        string
	line        int
}

// validRuleID reports whether id is 1 to 80 of [a-z0-9_.-], starting with a letter or digit.
func validRuleID(id string) bool {
	if id == "" || len(id) > 80 || id[0] == '_' || id[0] == '.' || id[0] == '-' {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// validReasonCode reports whether code is 1 to 64 of [A-Z0-9_], starting with a letter.
func validReasonCode(code string) bool {
	if code == "" || len(code) > 64 || code[0] < 'A' || code[0] > 'Z' {
		return false
	}
	for _, c := range []byte(code) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// LoadPolicy loads and compiles the bundle at path: one YAML file, or a folder of *.yaml
// files with optional test files under tests/.
func LoadPolicy(path string) (*Policy, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	if st.IsDir() {
		return LoadPolicyFS(os.DirFS(path), ".")
	}
	if st.Size() > maxBundleBytes {
		return nil, fmt.Errorf("load policy %s: %w: larger than %d bytes", path, ErrInvalidBundle, maxBundleBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	return ParsePolicy(map[string][]byte{filepath.Base(path): b})
}

// LoadPolicyFS loads and compiles the bundle in folder dir of fsys: its *.yaml and *.yml
// files, and the test files under dir/tests/.
func LoadPolicyFS(fsys fs.FS, dir string) (*Policy, error) {
	files := map[string][]byte{}
	total := 0
	for _, sub := range []string{"", "tests"} {
		d := path.Join(dir, sub)
		entries, err := fs.ReadDir(fsys, d)
		if err != nil {
			if sub != "" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("load policy %s: %w", d, err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				continue
			}
			b, err := fs.ReadFile(fsys, path.Join(d, name))
			if err != nil {
				return nil, fmt.Errorf("load policy: %w", err)
			}
			total += len(b)
			if total > maxBundleBytes {
				return nil, fmt.Errorf("load policy %s: %w: larger than %d bytes", dir, ErrInvalidBundle, maxBundleBytes)
			}
			files[path.Join(sub, name)] = b
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load policy %s: %w: no *.yaml files", dir, ErrInvalidBundle)
	}
	return ParsePolicy(files)
}

// DefaultPolicy returns the compiled default bundle shipped with Arbiter (policies/default).
// It panics if the embedded bundle does not compile, which its tests rule out.
func DefaultPolicy() *Policy {
	p, err := LoadPolicyFS(policies.Default, "default")
	if err != nil {
		panic(fmt.Sprintf("decision: embedded default policy: %v", err))
	}
	return p
}

// Digest returns the content digest of a bundle's files: "sha256:" and the hex SHA-256 over
// each file's name and content, in name order.
func Digest(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// ParsePolicy compiles a bundle given as its files, by name relative to the bundle's root
// (test files as "tests/NAME.yaml"). Every problem found is reported, each as a *BundleError
// wrapped with ErrInvalidBundle.
func ParsePolicy(files map[string][]byte) (*Policy, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no files", ErrInvalidBundle)
	}
	if len(files) > maxBundleFiles {
		return nil, fmt.Errorf("%w: more than %d files", ErrInvalidBundle, maxBundleFiles)
	}
	names := make([]string, 0, len(files))
	total := 0
	for n, b := range files {
		names = append(names, n)
		total += len(b)
	}
	if total > maxBundleBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidBundle, maxBundleBytes)
	}
	slices.Sort(names)

	var errs []error
	fail := func(file string, line int, ruleID, format string, args ...any) {
		errs = append(errs, &BundleError{File: file, Line: line, Rule: ruleID, Msg: fmt.Sprintf(format, args...)})
	}
	var merged bundleFile
	var guardNode, payNode *yaml.Node
	setIn := map[string]string{}
	// undecoded is set when a bundle file could not be read: what it sets is unknown, so the
	// checks that need the whole bundle (id and version required) are skipped.
	undecoded := false
	for fi, name := range names {
		data := files[name]
		if strings.HasPrefix(name, "tests/") {
			var tf testFile
			if err := decodeStrict(data, &tf); err != nil {
				errs = append(errs, decodeErrors(name, data, err)...)
				continue
			}
			for i := range tf.Tests {
				tf.Tests[i].File = name
			}
			merged.Tests = append(merged.Tests, tf.Tests...)
			continue
		}
		var bf bundleFile
		if err := decodeStrict(data, &bf); err != nil {
			errs = append(errs, decodeErrors(name, data, err)...)
			undecoded = true
			continue
		}
		for _, kv := range []struct {
			key string
			set bool
		}{{"id", bf.ID != ""}, {"version", bf.Version != ""}, {"description", bf.Description != ""},
			{"guardrails", bf.Guardrails.Kind != 0}, {"payments", bf.Payments.Kind != 0}} {
			if !kv.set {
				continue
			}
			if prev, ok := setIn[kv.key]; ok {
				fail(name, 0, "", "%s: already set in %s", kv.key, prev)
				continue
			}
			setIn[kv.key] = name
		}
		merged.ID = cmp.Or(merged.ID, bf.ID)
		merged.Version = cmp.Or(merged.Version, bf.Version)
		merged.Description = cmp.Or(merged.Description, bf.Description)
		if bf.Guardrails.Kind != 0 && guardNode == nil {
			guardNode = &bf.Guardrails
		}
		if bf.Payments.Kind != 0 && payNode == nil {
			payNode = &bf.Payments
		}
		lines := ruleLines(data)
		for i := range bf.Rules {
			bf.Rules[i].file = fi
			if i < len(lines) {
				bf.Rules[i].line, bf.Rules[i].whenLine = lines[i][0], lines[i][1]
			}
		}
		for i := range bf.Tests {
			bf.Tests[i].File = name
		}
		placeExperiments(data, fi, bf.Experiments)
		merged.Experiments = append(merged.Experiments, bf.Experiments...)
		merged.Rules = append(merged.Rules, bf.Rules...)
		merged.Tests = append(merged.Tests, bf.Tests...)
	}
	first := names[0]
	if merged.ID == "" && !undecoded {
		fail(first, 0, "", "id: required")
	}
	if merged.Version == "" && !undecoded {
		fail(first, 0, "", "version: required")
	}
	if len(merged.Rules) > maxBundleRules {
		fail(first, 0, "", "rules: more than %d", maxBundleRules)
		return nil, joinBundleErrors(errs)
	}

	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: cel environment: %w", err)
	}
	p := &Policy{
		ref:         PolicyRef{ID: merged.ID, Version: merged.Version, Digest: Digest(files)},
		description: merged.Description,
		consts:      newCELConsts(),
		adapter:     env.CELTypeAdapter(),
		tests:       merged.Tests,
		files:       files,
	}
	g, err := buildGuardrails(guardNode, payNode)
	if err != nil {
		file := setIn["guardrails"]
		if file == "" {
			file = cmp.Or(setIn["payments"], first)
		}
		fail(file, 0, "", "%s", err.Error())
	}
	p.guards = g

	seen := map[string]int{}
	for i := range merged.Rules {
		rs := &merged.Rules[i]
		file := names[rs.file]
		r, rerrs := compileRule(env, rs, i)
		if prev, ok := seen[rs.ID]; ok && rs.ID != "" {
			rerrs = append(rerrs, ruleErr{line: rs.line, msg: fmt.Sprintf("id: duplicate of the rule at line %d", prev)})
		}
		seen[rs.ID] = rs.line
		for _, e := range rerrs {
			fail(file, e.line, rs.ID, "%s", e.msg)
		}
		if r != nil && len(rerrs) == 0 {
			r.file = file
			p.rules = append(p.rules, r)
		}
	}
	p.experiments = compileExperiments(env, p.adapter, merged.Experiments, merged.Rules, names, fail)
	for i := range p.tests {
		if err := p.tests[i].check(); err != nil {
			fail(p.tests[i].File, 0, "", "test %q: %v", p.tests[i].Name, err)
		} else if err := p.checkTestExperiment(&p.tests[i]); err != nil {
			fail(p.tests[i].File, 0, "", "test %q: %v", p.tests[i].Name, err)
		}
	}
	if len(errs) > 0 {
		return nil, joinBundleErrors(errs)
	}
	p.index()
	p.indexExperiments()
	p.scratch = sync.Pool{New: func() any { return newScratch(p) }}
	return p, nil
}

func joinBundleErrors(errs []error) error {
	return fmt.Errorf("%w:\n%w", ErrInvalidBundle, errors.Join(errs...))
}

// BundleErrors returns every *BundleError that err holds, in order: the problems ParsePolicy
// and LoadPolicy found. It returns nil for an error that holds none (a file that cannot be
// read, for example).
func BundleErrors(err error) []*BundleError {
	var out []*BundleError
	var walk func(error)
	walk = func(e error) {
		if be, ok := e.(*BundleError); ok {
			out = append(out, be)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// decodeErrors turns the error of decoding the bundle file name (content data) into
// BundleErrors with their lines: one per problem for type and field errors, and one at the
// line of the problem for a syntax error.
func decodeErrors(name string, data []byte, err error) []error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			line, rest := yamlLine(msg)
			out = append(out, &BundleError{File: name, Line: line, Msg: yamlMsg(errors.New(rest))})
		}
		return out
	}
	if line, ok := yamlSyntaxLine(data); ok {
		_, msg := yamlLine(strings.TrimPrefix(err.Error(), "yaml: "))
		return []error{&BundleError{File: name, Line: line, Msg: "YAML syntax error: " + msg}}
	}
	line, msg := yamlLine(strings.TrimPrefix(err.Error(), "yaml: "))
	return []error{&BundleError{File: name, Line: line, Msg: yamlMsg(errors.New(msg))}}
}

// yamlLine splits "line N: message", the YAML decoder's way to place a problem, into N and
// the message; N is 0 when msg does not start so.
func yamlLine(msg string) (int, string) {
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 {
				return n, after
			}
		}
	}
	return 0, msg
}

// yamlSyntaxScanBytes bounds the bytes yamlSyntaxLine re-parses in all, so that a large
// bundle costs a bounded time; past it the decoder's own line is reported.
const yamlSyntaxScanBytes = 64 << 20

// yamlSyntaxLine returns the line of the syntax error in data, and false when data has no
// syntax error. The decoder reports the line where the enclosing block starts (counted from
// zero), not the line of the problem: the problem is on the first line at which data, cut
// after that line, fails with the same error. Cut before it, data parses or fails otherwise
// (an unclosed bracket); cut after it, it fails the same way; so the line is found by
// bisection, from the reported line, which is never after the problem.
func yamlSyntaxLine(data []byte) (int, bool) {
	var doc yaml.Node
	perr := yaml.Unmarshal(data, &doc)
	if perr == nil {
		return 0, false // the document parses: a type error, not a syntax error
	}
	reported, _ := yamlLine(strings.TrimPrefix(perr.Error(), "yaml: "))
	// ends[k] is the length of data cut after line k+1.
	lines := bytes.SplitAfter(data, []byte("\n"))
	ends := make([]int, len(lines))
	for i, n := 0, 0; i < len(lines); i++ {
		n += len(lines[i])
		ends[i] = n
	}
	same := func(k int) bool { // cut after line k, data fails as a whole does
		var prefix yaml.Node
		e := yaml.Unmarshal(data[:ends[k-1]], &prefix)
		return e != nil && e.Error() == perr.Error()
	}
	lo, hi := min(max(reported, 1), len(lines)), len(lines) // same(hi) holds: hi is all of data
	for scanned := 0; lo < hi; {
		if scanned > yamlSyntaxScanBytes {
			return reported, true
		}
		mid := lo + (hi-lo)/2
		scanned += ends[mid-1]
		if same(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return hi, true
}

// decodeStrict decodes one YAML document, rejecting unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file
		}
		return err
	}
	return nil
}

// yamlMsg shortens the YAML decoder's messages and names types as a bundle author knows them.
func yamlMsg(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "yaml: unmarshal errors:\n  ", "")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	r := strings.NewReplacer("decision.ruleSpec", "rule", "decision.bundleFile", "bundle",
		"decision.messageSpec", "message", "decision.escalateSpec", "escalate", "decision.suppressSpec", "suppress",
		"decision.retrySpec", "retry", "decision.TestCase", "test case", "decision.testFile", "test file",
		"decision.experimentSpec", "experiment", "decision.armSpec", "arm")
	return r.Replace(s)
}

// ruleLines returns, for each item of the top-level rules sequence, the line of the item and
// of its when key (0 when absent).
func ruleLines(data []byte) [][2]int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "rules" || root.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		return seqRuleLines(root.Content[i+1].Content)
	}
	return nil
}

// seqRuleLines returns, for each rule item of a sequence, the line of the item and of its
// when key (0 when absent).
func seqRuleLines(items []*yaml.Node) [][2]int {
	out := make([][2]int, len(items))
	for j, it := range items {
		out[j][0] = it.Line
		for k := 0; k+1 < len(it.Content); k += 2 {
			if it.Content[k].Value == "when" {
				v := it.Content[k+1]
				out[j][1] = v.Line
				if v.Style == yaml.LiteralStyle || v.Style == yaml.FoldedStyle {
					out[j][1]++
				}
			}
		}
	}
	return out
}

type ruleErr struct {
	line int
	msg  string
}

// compileRule validates and compiles one rule; order is its position in the bundle.
func compileRule(env *cel.Env, rs *ruleSpec, order int) (*rule, []ruleErr) {
	var errs []ruleErr
	bad := func(format string, args ...any) {
		errs = append(errs, ruleErr{line: rs.line, msg: fmt.Sprintf(format, args...)})
	}
	if rs.ID == "" {
		bad("id: required")
	} else if !validRuleID(rs.ID) {
		bad("id: %q must be lower case letters, digits, '_', '.' or '-' (at most 80)", rs.ID)
	}
	r := &rule{id: rs.ID, description: strings.TrimSpace(rs.Description), order: order, priority: rs.Priority,
		purposeAck: strings.TrimSpace(rs.PurposeAck), line: rs.line}
	if rs.Priority < -1_000_000 || rs.Priority > 1_000_000 {
		bad("priority: %d is outside [-1000000, 1000000]", rs.Priority)
	}
	for _, on := range rs.On {
		t := bundleParseEventType(on)
		if t == EventUnspecified {
			bad("on: unknown event type %q", on)
			continue
		}
		if !slices.Contains(r.events, t) {
			r.events = append(r.events, t)
		}
	}
	c := &r.cand
	c.RuleID, c.Priority, c.Order = rs.ID, rs.Priority, order
	c.Action = bundleParseAction(rs.Action)
	if c.Action == ActionUnspecified {
		bad("action: %q must be RETRY, MESSAGE, ESCALATE or SUPPRESS", rs.Action)
	}
	if rs.Message != nil && c.Action != ActionMessage {
		bad("message: only for action MESSAGE")
	}
	if rs.Escalate != nil && c.Action != ActionEscalate {
		bad("escalate: only for action ESCALATE")
	}
	if rs.Suppress != nil && c.Action != ActionSuppress {
		bad("suppress: only for action SUPPRESS")
	}
	if rs.Retry != nil && c.Action != ActionRetry {
		bad("retry: only for action RETRY")
	}
	switch c.Action {
	case ActionMessage:
		m := rs.Message
		if m == nil {
			bad("message: required for action MESSAGE")
			break
		}
		for _, ch := range m.Channels {
			v := bundleParseChannel(ch)
			if v == ChannelUnspecified {
				bad("message.channels: unknown channel %q", ch)
				continue
			}
			if slices.Contains(c.Channels, v) {
				bad("message.channels: %s listed twice", ch)
				continue
			}
			c.Channels = append(c.Channels, v)
		}
		if m.Template == "" {
			bad("message.template: required")
		}
		c.TemplateID = m.Template
		c.Purpose = bundleParsePurpose(m.Purpose)
		if c.Purpose == PurposeUnspecified {
			bad("message.purpose: %q must be SERVICE, COLLECTIONS, MARKETING or SECURITY", m.Purpose)
		}
		c.Delay = time.Duration(m.Delay)
	case ActionEscalate:
		e := rs.Escalate
		if e == nil || e.Queue == "" {
			bad("escalate.queue: required for action ESCALATE")
			break
		}
		c.Queue, c.EscalatePriority, c.Context = e.Queue, e.Priority, e.Context
	case ActionSuppress:
		if rs.Suppress != nil {
			c.SuppressFor = time.Duration(rs.Suppress.For)
		}
	case ActionRetry:
		if rs.Retry != nil {
			c.Delay = time.Duration(rs.Retry.Delay)
		}
	}
	if len(rs.Reasons) == 0 {
		bad("reasons: at least one reason code is required, so every answer says why")
	}
	for _, code := range rs.Reasons {
		if !validReasonCode(code) {
			bad("reasons: %q must be an upper-case code such as SOFT_DECLINE", code)
		}
	}
	c.ReasonCodes = slices.Clip(rs.Reasons)
	if strings.TrimSpace(rs.When) != "" {
		cond, err := compileCondition(env, rs.When)
		if err != nil {
			line := rs.whenLine
			if line == 0 {
				line = rs.line
			}
			var ce *celError
			if errors.As(err, &ce) && line > 0 {
				line += ce.line - 1
			}
			errs = append(errs, ruleErr{line: line, msg: err.Error()})
		}
		r.when = cond
	}
	return r, errs
}

// index builds, for each event type, the rules that apply to it in arbitration order, so
// that evaluating an event costs only its own rules.
func (p *Policy) index() {
	p.byEvent = indexRules(p.rules)
}

// indexRules returns, for each event type, the rules of rules that apply to it in
// arbitration order.
func indexRules(rules []*rule) [eventTypeCount][]ruleSlot {
	var byEvent [eventTypeCount][]ruleSlot
	for t := EventType(1); t < eventTypeCount; t++ {
		var rs []*rule
		for _, r := range rules {
			if len(r.events) == 0 || slices.Contains(r.events, t) {
				rs = append(rs, r)
			}
		}
		slices.SortStableFunc(rs, func(a, b *rule) int { return compareCandidates(&a.cand, &b.cand) })
		slots := make([]ruleSlot, len(rs))
		for i, r := range rs {
			slots[i] = newRuleSlot(r)
		}
		byEvent[t] = slots
	}
	return byEvent
}

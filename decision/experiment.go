package decision

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"go.yaml.in/yaml/v3"
)

// CodeExperimentHoldout: the customer is in an experiment's holdout, so the MESSAGE or RETRY
// the champion would have given is withheld and the answer is SUPPRESS. Its rule_id is
// "experiment:<id>". docs/experiments.md explains it.
const CodeExperimentHoldout = "EXPERIMENT_HOLDOUT"

// Arm names with a fixed meaning. ChampionArm is the arm that must be in every experiment:
// the bundle's own rules. HoldoutArm is the arm of the holdout, which no bundle arm may be
// named.
const (
	ChampionArm = "champion"
	HoldoutArm  = "holdout"
)

// ExperimentBuckets is the number of buckets customers are hashed into (see
// ExperimentBucket): shares of an experiment are whole buckets, 0.01% each.
const ExperimentBuckets = 10_000

// Experiment limits.
const (
	maxExperiments     = 64
	maxExperimentArms  = 8
	maxHoldoutBuckets  = ExperimentBuckets / 2 // 50%
	maxExperimentParam = 32
)

// ExperimentArm names the experiment and the arm a decision was made in. It is the zero
// value when the decision is in no experiment: the event type is in none, or the customer
// has no id.
type ExperimentArm struct {
	// ID is the experiment's id.
	ID string
	// Arm is the arm's name: ChampionArm, a challenger's name, or HoldoutArm.
	Arm string
}

// Experiment describes one experiment of a loaded bundle.
type Experiment struct {
	ID          string
	Description string
	// Events are the event types the experiment applies to; empty: every event type.
	Events []EventType
	// Arms are the holdout first when the experiment has one, then the bundle's arms in
	// bundle order, in the order of their buckets.
	Arms []Arm
}

// Arm describes one arm of an experiment.
type Arm struct {
	Name string
	// Champion is set for the champion arm, Holdout for the holdout arm.
	Champion, Holdout bool
	// Weight is the arm's weight as written; 0 for the holdout.
	Weight int
	// Buckets is how many of the ExperimentBuckets buckets the arm holds: its share of
	// customers is Buckets / ExperimentBuckets.
	Buckets int
	// Rules are the ids of the bundle rules the arm replaces, Remove those it leaves out.
	Rules, Remove []string
	// Params are the arm's parameters (the holdout's are the champion's): string, int64,
	// float64 or bool values. The map must not be modified.
	Params map[string]any
}

// experimentSpec is an experiment as written in a bundle.
type experimentSpec struct {
	ID          string    `yaml:"id"`
	Description string    `yaml:"description"`
	On          []string  `yaml:"on"`
	Holdout     string    `yaml:"holdout"`
	Arms        []armSpec `yaml:"arms"`

	file, line, onLine, holdoutLine, armsLine int
}

// armSpec is an arm as written in a bundle.
type armSpec struct {
	Name   string         `yaml:"name"`
	Weight int            `yaml:"weight"`
	Params map[string]any `yaml:"params"`
	Rules  []ruleSpec     `yaml:"rules"`
	Remove []string       `yaml:"remove"`

	line, weightLine, paramsLine, removeLine int
}

// experiment is a compiled experiment.
type experiment struct {
	id          string
	description string
	events      []EventType // empty: every event type
	holdout     int         // buckets
	// arms are the holdout (when holdout > 0) and the bundle's arms, in bucket order; each
	// holds the buckets from the previous arm's upper bound to its own.
	arms  []*arm
	idVal ref.Val
}

// arm is a compiled arm.
type arm struct {
	exp               *experiment
	name              string
	champion, holdout bool
	weight            int
	upper             int // exclusive upper bound of the arm's buckets
	params            map[string]any
	paramsVal         ref.Val
	nameVal           ref.Val
	replace           []*rule  // the arm's versions of bundle rules
	remove            []string // the bundle rules the arm leaves out
	// byEvent is the arm's rule index; nil when the arm decides with the bundle's rules.
	byEvent *[eventTypeCount][]ruleSlot
}

// ExperimentBucket returns the bucket, in [0, ExperimentBuckets), of customerID in the
// experiment experimentID: the first 8 bytes of SHA-256("arbiter experiment\x00" + id +
// "\x00" + customer), big-endian, modulo ExperimentBuckets. It depends on nothing else, so
// every replica, restart and policy version puts a customer in the same bucket; the
// experiment id salts it, so a customer's buckets in two experiments are independent.
func ExperimentBucket(experimentID, customerID string) int {
	var buf [256]byte
	b := append(buf[:0], "arbiter experiment\x00"...)
	b = append(b, experimentID...)
	b = append(b, 0)
	b = append(b, customerID...)
	sum := sha256.Sum256(b)
	return int(binary.BigEndian.Uint64(sum[:8]) % ExperimentBuckets)
}

// Assign returns the arm of the experiment experimentID that customerID is in: HoldoutArm
// for the holdout's buckets, then the bundle's arms by weight. ok is false when the bundle
// has no such experiment or customerID is empty (a customer without an id is in no
// experiment). It is a pure function of its arguments and the bundle.
func (p *Policy) Assign(experimentID, customerID string) (arm string, ok bool) {
	for _, e := range p.experiments {
		if e.id == experimentID {
			if a := e.assign(customerID); a != nil {
				return a.name, true
			}
			return "", false
		}
	}
	return "", false
}

// assign returns the arm customerID is in, or nil for an empty id.
func (e *experiment) assign(customerID string) *arm {
	if customerID == "" {
		return nil
	}
	b := ExperimentBucket(e.id, customerID)
	for _, a := range e.arms {
		if b < a.upper {
			return a
		}
	}
	return e.arms[len(e.arms)-1] // not reached: the last upper bound is ExperimentBuckets
}

// Experiments describes the bundle's experiments, in bundle order.
func (p *Policy) Experiments() []Experiment {
	out := make([]Experiment, 0, len(p.experiments))
	for _, e := range p.experiments {
		x := Experiment{ID: e.id, Description: e.description, Events: slices.Clone(e.events)}
		lower := 0
		for _, a := range e.arms {
			xa := Arm{Name: a.name, Champion: a.champion, Holdout: a.holdout, Weight: a.weight,
				Buckets: a.upper - lower, Remove: slices.Clone(a.remove), Params: a.params}
			for _, r := range a.replace {
				xa.Rules = append(xa.Rules, r.id)
			}
			x.Arms = append(x.Arms, xa)
			lower = a.upper
		}
		out = append(out, x)
	}
	return out
}

// withhold turns the champion's answer res, whose winning candidate is w (nil when none),
// into the holdout's: a MESSAGE or RETRY becomes SUPPRESS with CodeExperimentHoldout first,
// followed by the reasons of the answer less those the guardrails added to the withheld
// action's detail (a send time, a channel, an acquirer). ESCALATE (a human, and the
// mandatory escalation of a vulnerable customer) and SUPPRESS are left as they are. It
// returns the action withheld, or ActionUnspecified.
func withhold(res *Result, w *Candidate, experimentID string) Action {
	if res.Action != ActionMessage && res.Action != ActionRetry {
		return ActionUnspecified
	}
	withheld := res.Action
	reasons := make([]Reason, 0, len(res.Reasons)+1)
	reasons = append(reasons, Reason{Code: CodeExperimentHoldout, RuleID: "experiment:" + experimentID,
		Message: "holdout of experiment " + experimentID + ": the " + bundleActionName(withheld) + " is withheld"})
	for _, r := range res.Reasons {
		if w != nil && slices.Contains(w.Reasons, r) {
			continue
		}
		reasons = addReason(reasons, r)
	}
	res.Action = ActionSuppress
	res.Retry, res.Message, res.Escalate = nil, nil, nil
	res.Suppress = &Suppress{}
	res.Reasons = reasons
	return withheld
}

// experimentSummary is what the explanation's summary says of the experiment.
func experimentSummary(a *arm, withheld Action) string {
	s := "; experiment " + a.exp.id + " arm " + a.name
	if withheld != ActionUnspecified {
		s += " (" + bundleActionName(withheld) + " withheld)"
	}
	return s
}

// validParamName reports whether s is 1 to 64 of [a-z0-9_], starting with a letter or '_'.
func validParamName(s string) bool {
	if s == "" || len(s) > 64 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// parseHoldout parses a holdout share written as a percentage with at most two decimals
// ("10%", "12.5%") into buckets.
func parseHoldout(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	num, ok := strings.CutSuffix(s, "%")
	if !ok {
		return 0, fmt.Errorf("%q must be a percentage such as 10%%", s)
	}
	whole, frac, _ := strings.Cut(strings.TrimSpace(num), ".")
	if len(frac) > 2 {
		return 0, fmt.Errorf("%q has more than two decimals", s)
	}
	w, err := strconv.Atoi(whole)
	if err != nil || w < 0 || whole[0] == '+' || whole[0] == '-' {
		return 0, fmt.Errorf("%q must be a percentage such as 10%%", s)
	}
	f := 0
	if frac != "" {
		v, err := strconv.Atoi(frac)
		if err != nil || frac[0] == '+' || frac[0] == '-' {
			return 0, fmt.Errorf("%q must be a percentage such as 10%%", s)
		}
		f = v
		if len(frac) == 1 {
			f *= 10
		}
	}
	if w > 100 {
		return 0, fmt.Errorf("%q is outside [0%%, 50%%]", s)
	}
	return w*100 + f, nil
}

// experimentParams validates an arm's parameters and converts YAML integers to int64.
func experimentParams(in map[string]any) (map[string]any, []string) {
	var errs []string
	out := make(map[string]any, len(in))
	if len(in) > maxExperimentParam {
		errs = append(errs, fmt.Sprintf("params: more than %d", maxExperimentParam))
	}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		if !validParamName(k) {
			errs = append(errs, fmt.Sprintf("params: %q must be lower case letters, digits or '_', not starting with a digit", k))
			continue
		}
		switch v := in[k].(type) {
		case string, bool, float64:
			out[k] = v
		case int:
			out[k] = int64(v)
		case int64:
			out[k] = v
		case uint64:
			if v > 1<<63-1 {
				errs = append(errs, fmt.Sprintf("params.%s: %d is too large", k, v))
				continue
			}
			out[k] = int64(v)
		default:
			errs = append(errs, fmt.Sprintf("params.%s: must be a string, number or bool", k))
		}
	}
	return out, errs
}

// paramsValue boxes params for CEL once, at load, so that reading one allocates nothing.
func paramsValue(adapter types.Adapter, params map[string]any) ref.Val {
	m := make(map[ref.Val]ref.Val, len(params))
	for k, v := range params {
		m[types.String(k)] = adapter.NativeToValue(v)
	}
	return types.NewRefValMap(adapter, m)
}

// bundleFail records one bundle problem (see ParsePolicy).
type bundleFail func(file string, line int, ruleID, format string, args ...any)

// compileExperiments validates and compiles the bundle's experiments, reporting each
// problem through fail. rules are the bundle's rules as written (arms refer to them by id);
// names are the bundle's file names, indexed as the specs' file fields.
func compileExperiments(env *cel.Env, adapter types.Adapter, specs []experimentSpec, rules []ruleSpec,
	names []string, fail bundleFail) []*experiment {
	if len(specs) == 0 {
		return nil
	}
	if len(specs) > maxExperiments {
		fail(names[specs[0].file], specs[0].line, "", "experiments: more than %d", maxExperiments)
		return nil
	}
	ruleAt := make(map[string]int, len(rules)) // rule id -> position in the bundle
	for i := range rules {
		if _, ok := ruleAt[rules[i].ID]; !ok && rules[i].ID != "" {
			ruleAt[rules[i].ID] = i
		}
	}
	seen := map[string]int{}
	var claimed [eventTypeCount]string
	out := make([]*experiment, 0, len(specs))
	for i := range specs {
		es := &specs[i]
		file := names[es.file]
		label := cmp.Or(es.ID, fmt.Sprintf("#%d", i+1))
		ok := true
		bad := func(line int, format string, args ...any) {
			ok = false
			fail(file, cmp.Or(line, es.line), "", "experiment %s: %s", label, fmt.Sprintf(format, args...))
		}
		e := &experiment{id: es.ID, description: strings.TrimSpace(es.Description), idVal: types.String(es.ID)}
		switch prev, dup := seen[es.ID]; {
		case es.ID == "":
			bad(es.line, "id: required")
		case !validRuleID(es.ID):
			bad(es.line, "id: %q must be lower case letters, digits, '_', '.' or '-' (at most 80)", es.ID)
		case dup:
			bad(es.line, "id: duplicate of the experiment at line %d", prev)
		}
		seen[es.ID] = es.line
		for _, on := range es.On {
			t := bundleParseEventType(on)
			if t == EventUnspecified {
				bad(es.onLine, "on: unknown event type %q", on)
				continue
			}
			if !slices.Contains(e.events, t) {
				e.events = append(e.events, t)
			}
		}
		for t := EventType(1); t < eventTypeCount; t++ {
			if len(e.events) > 0 && !slices.Contains(e.events, t) {
				continue
			}
			if other := claimed[t]; other != "" {
				bad(cmp.Or(es.onLine, es.line), "applies to %s, as experiment %s does: a customer is in at most one experiment per event type", bundleEventTypeName(t), other)
				break
			}
		}
		if ok {
			for t := EventType(1); t < eventTypeCount; t++ {
				if len(e.events) == 0 || slices.Contains(e.events, t) {
					claimed[t] = label
				}
			}
		}
		h, err := parseHoldout(es.Holdout)
		switch {
		case err != nil:
			bad(es.holdoutLine, "holdout: %v", err)
		case h > maxHoldoutBuckets:
			bad(es.holdoutLine, "holdout: %s is more than 50%%", strings.TrimSpace(es.Holdout))
		}
		e.holdout = h
		switch n := len(es.Arms); {
		case n == 0:
			bad(cmp.Or(es.armsLine, es.line), "arms: at least the %s arm is required", ChampionArm)
		case n > maxExperimentArms:
			bad(es.armsLine, "arms: %d arms, at most %d", n, maxExperimentArms)
		}

		var champion *arm
		armLine := map[string]int{}
		total := 0
		for j := range es.Arms {
			as := &es.Arms[j]
			a := &arm{exp: e, name: as.Name, weight: as.Weight, nameVal: types.String(as.Name)}
			armBad := func(line int, format string, args ...any) {
				bad(cmp.Or(line, as.line), "arm %s: %s", cmp.Or(as.Name, fmt.Sprintf("#%d", j+1)), fmt.Sprintf(format, args...))
			}
			switch prev, dup := armLine[as.Name]; {
			case as.Name == "":
				armBad(as.line, "name: required")
			case as.Name == HoldoutArm:
				armBad(as.line, "name: %q is the holdout's; set the experiment's holdout share instead", HoldoutArm)
			case !validRuleID(as.Name):
				armBad(as.line, "name: %q must be lower case letters, digits, '_', '.' or '-' (at most 80)", as.Name)
			case dup:
				armBad(as.line, "name: duplicate of the arm at line %d", prev)
			}
			armLine[as.Name] = as.line
			if as.Weight < 1 || as.Weight > ExperimentBuckets {
				armBad(as.weightLine, "weight: %d must be a whole number from 1 to %d", as.Weight, ExperimentBuckets)
			}
			total += max(as.Weight, 0)
			params, perrs := experimentParams(as.Params)
			for _, m := range perrs {
				armBad(as.paramsLine, "%s", m)
			}
			a.params = params
			a.paramsVal = paramsValue(adapter, params)
			if as.Name == ChampionArm {
				a.champion = true
				champion = a
				if len(as.Rules) > 0 || len(as.Remove) > 0 {
					armBad(as.line, "the champion decides with the bundle's own rules: put rules and remove in a challenger")
				}
			}
			replaced := map[string]bool{}
			for k := range as.Rules {
				rs := &as.Rules[k]
				pos, known := ruleAt[rs.ID]
				if !known && rs.ID != "" {
					ok = false
					fail(file, rs.line, rs.ID, "experiment %s: arm %s: not a rule of the bundle: an arm's rules replace the bundle's rules of the same id", label, as.Name)
					continue
				}
				if replaced[rs.ID] {
					ok = false
					fail(file, rs.line, rs.ID, "experiment %s: arm %s: rule replaced twice", label, as.Name)
					continue
				}
				replaced[rs.ID] = true
				r, rerrs := compileRule(env, rs, pos)
				for _, re := range rerrs {
					ok = false
					fail(file, re.line, rs.ID, "experiment %s: arm %s: %s", label, as.Name, re.msg)
				}
				if r != nil && len(rerrs) == 0 {
					if len(e.events) > 0 && len(r.events) > 0 && !slices.ContainsFunc(r.events, func(t EventType) bool { return slices.Contains(e.events, t) }) {
						ok = false
						fail(file, rs.line, rs.ID, "experiment %s: arm %s: the rule applies to none of the experiment's event types", label, as.Name)
						continue
					}
					r.file = file
					a.replace = append(a.replace, r)
				}
			}
			for _, id := range as.Remove {
				_, known := ruleAt[id]
				switch {
				case !known:
					armBad(as.removeLine, "remove: %q is not a rule of the bundle", id)
				case replaced[id]:
					armBad(as.removeLine, "remove: rule %s is also replaced", id)
				case slices.Contains(a.remove, id):
					armBad(as.removeLine, "remove: rule %s listed twice", id)
				default:
					a.remove = append(a.remove, id)
				}
			}
			e.arms = append(e.arms, a)
		}
		if len(es.Arms) > 0 && champion == nil {
			bad(cmp.Or(es.armsLine, es.line), "arms: no arm is named %s: one arm must be the champion (the bundle's own rules)", ChampionArm)
		}
		if champion != nil {
			for _, a := range e.arms {
				if !slices.Equal(slices.Sorted(maps.Keys(a.params)), slices.Sorted(maps.Keys(champion.params))) {
					bad(es.Arms[slices.Index(e.arms, a)].paramsLine, "arm %s: params: keys %v differ from the champion's %v: every arm sets the same parameters",
						a.name, slices.Sorted(maps.Keys(a.params)), slices.Sorted(maps.Keys(champion.params)))
				}
			}
		}
		if !ok || total == 0 {
			continue
		}
		// The buckets: the holdout first, then the arms by weight.
		rest := ExperimentBuckets - e.holdout
		arms := e.arms
		if e.holdout > 0 {
			h := &arm{exp: e, name: HoldoutArm, holdout: true, upper: e.holdout, params: champion.params,
				paramsVal: champion.paramsVal, nameVal: types.String(HoldoutArm)}
			e.arms = append([]*arm{h}, arms...)
		}
		cum, lower := 0, e.holdout
		for j, a := range arms {
			cum += a.weight
			a.upper = e.holdout + rest*cum/total
			if a.upper <= lower {
				bad(es.Arms[j].weightLine, "arm %s: weight %d of %d gives it no bucket of %d: raise it", a.name, a.weight, total, rest)
			}
			lower = a.upper
		}
		if ok {
			out = append(out, e)
		}
	}
	return out
}

// indexExperiments builds the rule index of every arm that changes the bundle's rules, and
// the experiment of each event type. It runs after index, on a bundle without errors.
func (p *Policy) indexExperiments() {
	for _, e := range p.experiments {
		for _, a := range e.arms {
			if len(a.replace) == 0 && len(a.remove) == 0 {
				continue
			}
			rules := make([]*rule, 0, len(p.rules))
			for _, r := range p.rules {
				if slices.Contains(a.remove, r.id) {
					continue
				}
				if k := slices.IndexFunc(a.replace, func(x *rule) bool { return x.id == r.id }); k >= 0 {
					r = a.replace[k]
				}
				rules = append(rules, r)
			}
			idx := indexRules(rules)
			a.byEvent = &idx
		}
		for t := EventType(1); t < eventTypeCount; t++ {
			if len(e.events) == 0 || slices.Contains(e.events, t) {
				p.expByEvent[t] = e
			}
		}
	}
}

// checkTestExperiment checks that the experiment and arm a test case expects exist.
func (p *Policy) checkTestExperiment(tc *TestCase) error {
	x := tc.Expect
	if x.Experiment == "" {
		if x.Arm != "" {
			return fmt.Errorf("expect.arm: needs expect.experiment")
		}
		return nil
	}
	for _, e := range p.experiments {
		if e.id != x.Experiment {
			continue
		}
		if x.Arm == "" || slices.ContainsFunc(e.arms, func(a *arm) bool { return a.name == x.Arm }) {
			return nil
		}
		return fmt.Errorf("expect.arm: experiment %s has no arm %q", e.id, x.Arm)
	}
	return fmt.Errorf("expect.experiment: no experiment %q in the bundle", x.Experiment)
}

// placeExperiments records, in specs (decoded from the bundle file data, number fi), the
// file and the lines of each experiment, arm and arm rule.
func placeExperiments(data []byte, fi int, specs []experimentSpec) {
	if len(specs) == 0 {
		return
	}
	for i := range specs {
		specs[i].file = fi
		for j := range specs[i].Arms {
			for k := range specs[i].Arms[j].Rules {
				specs[i].Arms[j].Rules[k].file = fi
			}
		}
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return
	}
	seq := mapValue(doc.Content[0], "experiments")
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return
	}
	for i, it := range seq.Content {
		if i >= len(specs) {
			break
		}
		es := &specs[i]
		es.line = it.Line
		es.onLine = keyLine(it, "on")
		es.holdoutLine = keyLine(it, "holdout")
		es.armsLine = keyLine(it, "arms")
		arms := mapValue(it, "arms")
		if arms == nil || arms.Kind != yaml.SequenceNode {
			continue
		}
		for j, an := range arms.Content {
			if j >= len(es.Arms) {
				break
			}
			as := &es.Arms[j]
			as.line = an.Line
			as.weightLine = keyLine(an, "weight")
			as.paramsLine = keyLine(an, "params")
			as.removeLine = keyLine(an, "remove")
			rs := mapValue(an, "rules")
			if rs == nil || rs.Kind != yaml.SequenceNode {
				continue
			}
			for k, l := range seqRuleLines(rs.Content) {
				if k < len(as.Rules) {
					as.Rules[k].line, as.Rules[k].whenLine = l[0], l[1]
				}
			}
		}
	}
}

// mapValue returns the value of key in the mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// keyLine returns the line of key in the mapping n, or 0.
func keyLine(n *yaml.Node, key string) int {
	if n == nil || n.Kind != yaml.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return 0
}

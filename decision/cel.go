package decision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// CostLimit is the largest estimated CEL cost a rule's `when` may have. The estimate is made
// at load with the input sizes bounded by request and store limits; a rule over the limit is
// rejected. Rules that iterate (comprehensions such as exists or all) are also limited at run
// time.
const CostLimit = 10_000

// celSizeLimit bounds the size of every string, list and map input for the cost estimate.
const celSizeLimit = 256

// celVar identifies one CEL input variable.
type celVar uint8

// CEL input variables. Qualified names are declared as variables of their own so that every
// input has a static type and the activation resolves it without building maps.
const (
	varEventType celVar = iota
	varEventID
	varEventSource
	varEventAttributes
	varPaymentDeclineCode
	varPaymentDeclineClass
	varPaymentNetwork
	varPaymentMAC
	varPaymentAmountMinor
	varPaymentCurrency
	varPaymentAcquirer
	varPaymentInitiator
	varPaymentMerchantID
	varCustomerID
	varCustomerTimezone
	varCustomerVulnerable
	varCustomerLocale
	varCustomerSegment
	varCustomerPreferredChannels
	varFeatures
	varCounters
	varLedgerDeclines24h
	varLedgerDeclines30d
	varLedgerRetries30d
	varLedgerStopped
	varNow
	varRecentDeclines30d
	varRecentDecisions24h
	varDegraded
	varExperimentID
	varExperimentArm
	varExperimentParams
	varCount
)

// celVarNames are the names rules use, indexed by celVar.
var celVarNames = [varCount]string{
	"event.type", "event.id", "event.source", "event.attributes",
	"event.payment.decline_code", "event.payment.decline_class", "event.payment.network",
	"event.payment.merchant_advice_code", "event.payment.amount_minor", "event.payment.currency",
	"event.payment.acquirer", "event.payment.initiator", "event.payment.merchant_id",
	"customer.id", "customer.timezone", "customer.vulnerable", "customer.locale", "customer.segment",
	"customer.preferred_channels",
	"features", "counters",
	"ledger.declines_24h", "ledger.declines_30d", "ledger.retries_30d", "ledger.stopped",
	"now",
	"recent.declines_30d", "recent.decisions_24h",
	"degraded",
	"experiment.id", "experiment.arm", "experiment.params",
}

func celVarType(v celVar) *cel.Type {
	switch v {
	case varEventAttributes:
		return cel.MapType(cel.StringType, cel.StringType)
	case varPaymentAmountMinor, varLedgerDeclines24h, varLedgerDeclines30d, varLedgerRetries30d,
		varRecentDeclines30d, varRecentDecisions24h:
		return cel.IntType
	case varCustomerVulnerable, varLedgerStopped, varDegraded:
		return cel.BoolType
	case varCustomerPreferredChannels:
		return cel.ListType(cel.StringType)
	case varFeatures, varExperimentParams:
		return cel.MapType(cel.StringType, cel.DynType)
	case varCounters:
		return cel.MapType(cel.StringType, cel.IntType)
	case varNow:
		return cel.TimestampType
	}
	return cel.StringType
}

// celVarOf returns the variable named name.
func celVarOf(name string) (celVar, bool) {
	switch name {
	case "event.type":
		return varEventType, true
	case "event.id":
		return varEventID, true
	case "event.source":
		return varEventSource, true
	case "event.attributes":
		return varEventAttributes, true
	case "event.payment.decline_code":
		return varPaymentDeclineCode, true
	case "event.payment.decline_class":
		return varPaymentDeclineClass, true
	case "event.payment.network":
		return varPaymentNetwork, true
	case "event.payment.merchant_advice_code":
		return varPaymentMAC, true
	case "event.payment.amount_minor":
		return varPaymentAmountMinor, true
	case "event.payment.currency":
		return varPaymentCurrency, true
	case "event.payment.acquirer":
		return varPaymentAcquirer, true
	case "event.payment.initiator":
		return varPaymentInitiator, true
	case "event.payment.merchant_id":
		return varPaymentMerchantID, true
	case "customer.id":
		return varCustomerID, true
	case "customer.timezone":
		return varCustomerTimezone, true
	case "customer.vulnerable":
		return varCustomerVulnerable, true
	case "customer.locale":
		return varCustomerLocale, true
	case "customer.segment":
		return varCustomerSegment, true
	case "customer.preferred_channels":
		return varCustomerPreferredChannels, true
	case "features":
		return varFeatures, true
	case "counters":
		return varCounters, true
	case "ledger.declines_24h":
		return varLedgerDeclines24h, true
	case "ledger.declines_30d":
		return varLedgerDeclines30d, true
	case "ledger.retries_30d":
		return varLedgerRetries30d, true
	case "ledger.stopped":
		return varLedgerStopped, true
	case "now":
		return varNow, true
	case "recent.declines_30d":
		return varRecentDeclines30d, true
	case "recent.decisions_24h":
		return varRecentDecisions24h, true
	case "degraded":
		return varDegraded, true
	case "experiment.id":
		return varExperimentID, true
	case "experiment.arm":
		return varExperimentArm, true
	case "experiment.params":
		return varExperimentParams, true
	}
	return 0, false
}

// newCELEnv returns the environment every rule is compiled in.
func newCELEnv() (*cel.Env, error) {
	opts := make([]cel.EnvOption, 0, varCount+2)
	for v := range varCount {
		opts = append(opts, cel.Variable(celVarNames[v], celVarType(v)))
	}
	opts = append(opts, cel.CrossTypeNumericComparisons(true), cel.OptionalTypes())
	return cel.NewEnv(opts...)
}

// celConsts are CEL values boxed once at load, so that resolving an enumeration input
// allocates nothing.
type celConsts struct {
	events     [eventTypeCount]ref.Val
	classes    [8]ref.Val
	networks   [len(bundleNetworkNames)]ref.Val
	initiators [len(bundleInitiatorNames)]ref.Val
	empty      ref.Val
	zero       ref.Val
	noParams   ref.Val // experiment.params outside an experiment: an empty map
}

func newCELConsts() *celConsts {
	c := &celConsts{empty: types.String(""), zero: types.Int(0),
		noParams: types.NewRefValMap(types.DefaultTypeAdapter, map[ref.Val]ref.Val{})}
	for i, n := range bundleEventNames {
		c.events[i] = types.String(n)
	}
	for i := range c.classes {
		c.classes[i] = types.String(DeclineClass(i).String())
	}
	for i, n := range bundleNetworkNames {
		c.networks[i] = types.String(n)
	}
	for i, n := range bundleInitiatorNames {
		c.initiators[i] = types.String(n)
	}
	return c
}

// condition is a compiled `when` expression.
type condition struct {
	src  string
	prg  cel.Program
	cost cost.Estimate
	// tracked is set for expressions that iterate: they run with a run-time cost limit and
	// an interrupt check on the context.
	tracked bool
	// guards are necessary conditions checked in Go before the program runs; when exact,
	// they are the whole condition and the program is not run.
	guards []guard
	exact  bool
}

// celSizes bounds input sizes for the load-time cost estimate.
type celSizes struct{}

func (celSizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if len(n.Path()) > 0 {
		return &cost.SizeEstimate{Min: 0, Max: celSizeLimit}
	}
	return nil
}

func (celSizes) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// compileCondition type-checks src, requires a bool, enforces CostLimit and plans the program.
// Errors carry the line of the expression (relative to src, 1-based).
func compileCondition(env *cel.Env, src string) (*condition, error) {
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, celIssuesError(iss)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("when: must be a bool expression, got %s", ast.OutputType())
	}
	est, err := env.EstimateCost(ast, celSizes{})
	if err != nil {
		return nil, fmt.Errorf("when: estimate cost: %w", err)
	}
	if est.Max > CostLimit {
		return nil, fmt.Errorf("when: estimated cost %d exceeds the limit %d", est.Max, CostLimit)
	}
	tracked := len(celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))) > 0
	popts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if tracked {
		popts = append(popts, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(16))
	}
	prg, err := env.Program(ast, popts...)
	if err != nil {
		return nil, fmt.Errorf("when: %w", err)
	}
	guards, exact := extractGuards(ast.NativeRep())
	return &condition{src: src, prg: prg, cost: est, tracked: tracked, guards: guards, exact: exact}, nil
}

// celIssuesError turns CEL issues into one error that names the line and column in src.
func celIssuesError(iss *cel.Issues) error {
	errs := iss.Errors()
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, fmt.Sprintf("line %d col %d: %s", e.Location.Line(), e.Location.Column()+1, e.Message))
	}
	return &celError{line: firstLine(errs), msg: "when: " + strings.Join(msgs, "; ")}
}

func firstLine(errs []*cel.Error) int {
	if len(errs) == 0 {
		return 1
	}
	return errs[0].Location.Line()
}

// celError is a compile error with the line inside the expression.
type celError struct {
	line int
	msg  string
}

func (e *celError) Error() string { return e.msg }

// errNotBool is returned when an expression evaluates to something other than a bool.
var errNotBool = errors.New("condition did not evaluate to a bool")

// eval evaluates the condition over act. Untracked programs are straight-line expressions of
// bounded cost; tracked ones honour ctx and the run-time cost limit.
func (c *condition) eval(ctx context.Context, act *activation) (bool, error) {
	if len(c.guards) > 0 && !act.admits(c.guards) {
		return false, nil
	}
	if c.exact {
		return true, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var out ref.Val
	var err error
	if c.tracked {
		out, _, err = c.prg.ContextEval(ctx, act)
	} else {
		out, _, err = c.prg.Eval(act)
	}
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, errNotBool
	}
	return bool(b), nil
}

// activation resolves the CEL inputs of one decision from Input and facts, lazily, caching
// each value so that a variable read by several rules is converted once.
type activation struct {
	in      *Input
	f       *facts
	consts  *celConsts
	adapter types.Adapter
	// arm is the experiment arm the decision is made in; nil when none.
	arm  *arm
	set  uint64
	vals [varCount]ref.Val
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) reset(in *Input, f *facts) {
	a.in, a.f, a.arm, a.set = in, f, nil, 0
	clear(a.vals[:])
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	v, ok := celVarOf(name)
	if !ok {
		return nil, false
	}
	if a.set&(1<<v) == 0 {
		a.vals[v] = a.resolve(v)
		a.set |= 1 << v
	}
	return a.vals[v], true
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) str(s string) ref.Val {
	if s == "" {
		return a.consts.empty
	}
	return types.String(s)
}

func (a *activation) resolve(v celVar) ref.Val {
	in := a.in
	p := in.Event.Payment
	if p == nil {
		p = &PaymentFailure{}
		if v >= varPaymentDeclineCode && v <= varPaymentMerchantID {
			switch v {
			case varPaymentAmountMinor:
				return a.consts.zero
			case varPaymentDeclineClass:
				return a.consts.classes[ClassNone]
			case varPaymentNetwork:
				return a.consts.networks[0]
			case varPaymentInitiator:
				return a.consts.initiators[0]
			}
			return a.consts.empty
		}
	}
	switch v {
	case varEventType:
		if int(in.Event.Type) < len(a.consts.events) {
			return a.consts.events[in.Event.Type]
		}
		return a.consts.empty
	case varEventID:
		return a.str(in.Event.ID)
	case varEventSource:
		return a.str(in.Event.Source)
	case varEventAttributes:
		return types.NewStringStringMap(a.adapter, in.Event.Attributes)
	case varPaymentDeclineCode:
		return a.str(p.DeclineCode)
	case varPaymentDeclineClass:
		c := factsClass(a.f)
		if int(c) < len(a.consts.classes) {
			return a.consts.classes[c]
		}
		return a.consts.empty
	case varPaymentNetwork:
		if int(p.Network) < len(a.consts.networks) {
			return a.consts.networks[p.Network]
		}
		return a.consts.empty
	case varPaymentMAC:
		return a.str(p.MerchantAdviceCode)
	case varPaymentAmountMinor:
		return types.Int(p.AmountMinor)
	case varPaymentCurrency:
		return a.str(p.Currency)
	case varPaymentAcquirer:
		return a.str(p.Acquirer)
	case varPaymentInitiator:
		if int(p.Initiator) < len(a.consts.initiators) {
			return a.consts.initiators[p.Initiator]
		}
		return a.consts.empty
	case varPaymentMerchantID:
		return a.str(p.MerchantID)
	case varCustomerID:
		return a.str(in.Customer.ID)
	case varCustomerTimezone:
		return a.str(in.Customer.Timezone)
	case varCustomerVulnerable:
		return types.Bool(in.Customer.Vulnerable)
	case varCustomerLocale:
		return a.str(in.Customer.Locale)
	case varCustomerSegment:
		return a.str(in.Customer.Segment)
	case varCustomerPreferredChannels:
		names := make([]string, 0, len(in.Customer.PreferredChannels))
		for _, c := range in.Customer.PreferredChannels {
			names = append(names, bundleChannelName(c))
		}
		return types.NewStringList(a.adapter, names)
	case varFeatures:
		return types.NewStringInterfaceMap(a.adapter, in.State.Features)
	case varCounters:
		cs := factsCounters(a.f)
		m := make(map[string]int64, len(cs))
		for _, c := range cs {
			m[c.Name] = int64(c.Count)
		}
		return types.NewMap(a.adapter, m)
	case varLedgerDeclines24h:
		return types.Int(factsLedger(a.f).declines24h)
	case varLedgerDeclines30d:
		return types.Int(factsLedger(a.f).declines30d)
	case varLedgerRetries30d:
		return types.Int(factsLedger(a.f).retries30d)
	case varLedgerStopped:
		return types.Bool(factsLedger(a.f).stopped)
	case varNow:
		return types.Timestamp{Time: in.Now}
	case varRecentDeclines30d:
		return types.Int(recentDeclines(in))
	case varRecentDecisions24h:
		return types.Int(recentDecisions(in))
	case varDegraded:
		return types.Bool(in.Degraded)
	case varExperimentID:
		if a.arm == nil {
			return a.consts.empty
		}
		return a.arm.exp.idVal
	case varExperimentArm:
		if a.arm == nil {
			return a.consts.empty
		}
		return a.arm.nameVal
	case varExperimentParams:
		if a.arm == nil {
			return a.consts.noParams
		}
		return a.arm.paramsVal
	}
	return types.NewErr("unknown input")
}

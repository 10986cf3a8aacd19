package server

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// instrumentationName names the meter and tracer of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/server"

// latencyBuckets are the histogram bounds, in seconds, from 100 µs to 1 s.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

// storeOp names a store call in metrics and spans.
type storeOp uint8

const (
	opLoad storeOp = iota
	opCommit
	opGetDecision
	opRecordOutcome
	opPutFeatures
	opState
	opPing
	opAppendDecision
	opConfirm
	opErase
	opExport
	opCount
)

var storeOpNames = [opCount]string{"load", "commit", "get_decision", "record_outcome", "put_features", "state", "ping", "append_decision", "confirm", "erase_customer", "export_customer"}

// spanNames are the store spans' names, built once.
var spanNames = func() (n [opCount]string) {
	for i, s := range storeOpNames {
		n[i] = "store." + s
	}
	return n
}()

// metrics are the service's instruments, created once in New.
type metrics struct {
	decisions metric.Int64Counter     // arbiter.decisions{action}
	reasons   metric.Int64Counter     // arbiter.decision.reasons{action,reason}
	latency   metric.Float64Histogram // arbiter.decide.duration{action}
	store     metric.Float64Histogram // arbiter.store.duration{op,result}
	degraded  metric.Int64Counter     // arbiter.decisions.degraded{reason}
	replayed  metric.Int64Counter     // arbiter.decisions.replayed
	conflicts metric.Int64Counter     // arbiter.store.conflicts
	shed      metric.Int64Counter     // arbiter.store.admission.shed
	outcomes  metric.Int64Counter     // arbiter.outcomes{outcome,rule,policy_version,experiment,arm}
	armDecs   metric.Int64Counter     // arbiter.experiment.decisions{experiment,arm,action}

	actionAttrs [decision.ActionSuppress + 1]metric.MeasurementOption
	storeAttrs  [opCount][2]metric.MeasurementOption // [op][ok, error]
	// reasonAttrs caches the attribute set of each (action, reason code): building one per
	// reason per decision was a tenth of the Decide pipeline's allocations. Policies name a
	// bounded set of codes; past maxReasonAttrs entries sets are built per call.
	reasonAttrs sync.Map // reasonKey -> metric.MeasurementOption
	nReasons    atomic.Int32
	// kpiAttrs caches the attribute sets of the outcome and experiment series, bounded like
	// reasonAttrs: past maxKPIAttrs sets, new label values are counted as "_other".
	kpiAttrs sync.Map // kpiKey -> metric.MeasurementOption
	nKPI     atomic.Int32
}

// kpiKey is one series of arbiter.outcomes (kind 'o') or arbiter.experiment.decisions ('d').
type kpiKey struct {
	kind                                  byte
	first, rule, version, experiment, arm string
}

// maxKPIAttrs bounds the label sets of the outcome and experiment series: rules, policy
// versions and arms are bounded by the bundles a fleet runs, but a bound keeps a runaway
// (thousands of versions published by a script) from growing /metrics without end.
const maxKPIAttrs = 4096

// otherLabel stands for every label value past maxKPIAttrs.
const otherLabel = "_other"

// kpiAttr returns the measurement option of k, cached.
func (m *metrics) kpiAttr(k kpiKey) metric.MeasurementOption {
	if o, ok := m.kpiAttrs.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	if m.nKPI.Load() >= maxKPIAttrs {
		k = kpiKey{kind: k.kind, first: k.first, rule: otherLabel, version: otherLabel, experiment: otherLabel, arm: otherLabel}
		if k.kind == 'd' {
			k.rule, k.version = "", ""
		}
		if o, ok := m.kpiAttrs.Load(k); ok {
			return o.(metric.MeasurementOption)
		}
	}
	var set attribute.Set
	if k.kind == 'o' {
		set = attribute.NewSet(attribute.String("outcome", k.first), attribute.String("rule", k.rule),
			attribute.String("policy_version", k.version), attribute.String("experiment", k.experiment), attribute.String("arm", k.arm))
	} else {
		set = attribute.NewSet(attribute.String("action", k.first), attribute.String("experiment", k.experiment), attribute.String("arm", k.arm))
	}
	o := metric.WithAttributeSet(set)
	if _, loaded := m.kpiAttrs.LoadOrStore(k, o); !loaded {
		m.nKPI.Add(1)
	}
	return o
}

// recordOutcome counts an outcome reported for the decision resp, by the rule that decided
// it, its policy version and its experiment arm.
func (m *metrics) recordOutcome(ctx context.Context, o arbiterv1.Outcome, resp *arbiterv1.DecideResponse) {
	name := strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_"))
	m.outcomes.Add(ctx, 1, m.kpiAttr(kpiKey{kind: 'o', first: name, rule: decidingRule(resp),
		version: resp.GetPolicy().GetVersion(), experiment: resp.GetExperiment().GetId(), arm: resp.GetExperiment().GetArm()}))
}

// decidingRule names the policy rule whose candidate an answer carries: the first reason's
// rule that is not a guardrail's or an experiment's; "none" when there is none (a degraded
// answer, or one only the guardrails made).
func decidingRule(resp *arbiterv1.DecideResponse) string {
	for _, r := range resp.GetReasons() {
		id := r.GetRuleId()
		if id != "" && !strings.HasPrefix(id, "guardrail:") && !strings.HasPrefix(id, "experiment:") {
			return id
		}
	}
	return "none"
}

type reasonKey struct {
	action decision.Action
	code   string
}

const maxReasonAttrs = 4096

// reasonAttr returns the measurement option of a reason code on an action.
func (m *metrics) reasonAttr(a decision.Action, code string) metric.MeasurementOption {
	k := reasonKey{a, code}
	if o, ok := m.reasonAttrs.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(attribute.String("action", actionName(a)), attribute.String("reason", code)))
	if m.nReasons.Load() < maxReasonAttrs {
		if _, loaded := m.reasonAttrs.LoadOrStore(k, o); !loaded {
			m.nReasons.Add(1)
		}
	}
	return o
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	m := mp.Meter(instrumentationName)
	var ms metrics
	var err error
	if ms.decisions, err = m.Int64Counter("arbiter.decisions",
		metric.WithDescription("Decisions answered, by action."), metric.WithUnit("{decision}")); err != nil {
		return nil, err
	}
	if ms.reasons, err = m.Int64Counter("arbiter.decision.reasons",
		metric.WithDescription("Reason codes on answered decisions, by action and reason."), metric.WithUnit("{reason}")); err != nil {
		return nil, err
	}
	if ms.latency, err = m.Float64Histogram("arbiter.decide.duration",
		metric.WithDescription("Time to answer Decide, from request to response, by action."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, err
	}
	if ms.store, err = m.Float64Histogram("arbiter.store.duration",
		metric.WithDescription("Time of one store call, by operation and result."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, err
	}
	if ms.degraded, err = m.Int64Counter("arbiter.decisions.degraded",
		metric.WithDescription("Decisions made without the customer's stored state, by reason."), metric.WithUnit("{decision}")); err != nil {
		return nil, err
	}
	if ms.replayed, err = m.Int64Counter("arbiter.decisions.replayed",
		metric.WithDescription("Decide calls answered with the stored decision of a repeated event id."), metric.WithUnit("{decision}")); err != nil {
		return nil, err
	}
	if ms.conflicts, err = m.Int64Counter("arbiter.store.conflicts",
		metric.WithDescription("Commits refused because the customer's state moved since it was read."), metric.WithUnit("{commit}")); err != nil {
		return nil, err
	}
	if ms.outcomes, err = m.Int64Counter("arbiter.outcomes",
		metric.WithDescription("Outcomes reported for decisions (RecordOutcome), by outcome, the rule that decided, its policy version and its experiment arm."), metric.WithUnit("{outcome}")); err != nil {
		return nil, err
	}
	if ms.armDecs, err = m.Int64Counter("arbiter.experiment.decisions",
		metric.WithDescription("Decisions answered in an experiment, by experiment, arm and action."), metric.WithUnit("{decision}")); err != nil {
		return nil, err
	}
	if ms.shed, err = m.Int64Counter("arbiter.store.admission.shed",
		metric.WithDescription("Decide calls refused with RESOURCE_EXHAUSTED because their store shard was at its learned admission limit."), metric.WithUnit("{call}")); err != nil {
		return nil, err
	}
	for a := range ms.actionAttrs {
		ms.actionAttrs[a] = metric.WithAttributeSet(attribute.NewSet(attribute.String("action", actionName(decision.Action(a)))))
	}
	for op := range ms.storeAttrs {
		for i, result := range [2]string{"ok", "error"} {
			ms.storeAttrs[op][i] = metric.WithAttributeSet(attribute.NewSet(
				attribute.String("op", storeOpNames[op]), attribute.String("result", result)))
		}
	}
	// The counters start at zero for every label value known here, so that they are scraped
	// from the start, not from their first increment (rate() and absent() alerts need them).
	// A measurement's context only carries exemplars and baggage: there is no call yet.
	ctx := context.Background()
	for a := decision.ActionRetry; a <= decision.ActionSuppress; a++ {
		ms.decisions.Add(ctx, 0, ms.actionAttrs[a])
	}
	for _, reason := range [...]string{ReasonStoreUnavailable, ReasonStoreCorrupt} {
		ms.degraded.Add(ctx, 0, metric.WithAttributes(attribute.String("reason", reason)))
	}
	ms.replayed.Add(ctx, 0)
	ms.conflicts.Add(ctx, 0)
	ms.shed.Add(ctx, 0)
	return &ms, nil
}

// actionName is the metric label of an action: "retry", "message", "escalate", "suppress".
func actionName(a decision.Action) string {
	switch a {
	case decision.ActionRetry:
		return "retry"
	case decision.ActionMessage:
		return "message"
	case decision.ActionEscalate:
		return "escalate"
	case decision.ActionSuppress:
		return "suppress"
	}
	return "unspecified"
}

// recordDecision counts an answered decision.
func (m *metrics) recordDecision(ctx context.Context, resp *arbiterv1.DecideResponse, elapsed time.Duration) {
	a := decision.Action(resp.GetAction())
	if int(a) >= len(m.actionAttrs) {
		a = decision.ActionUnspecified
	}
	attrs := m.actionAttrs[a]
	m.decisions.Add(ctx, 1, attrs)
	m.latency.Record(ctx, elapsed.Seconds(), attrs)
	for _, r := range resp.GetReasons() {
		m.reasons.Add(ctx, 1, m.reasonAttr(a, r.GetCode()))
	}
	if resp.GetReplayed() {
		m.replayed.Add(ctx, 1)
	} else if x := resp.GetExperiment(); x != nil {
		m.armDecs.Add(ctx, 1, m.kpiAttr(kpiKey{kind: 'd', first: actionName(a), experiment: x.GetId(), arm: x.GetArm()}))
	}
}

// recordStore records the latency of one store call.
func (m *metrics) recordStore(ctx context.Context, op storeOp, elapsed time.Duration, err error) {
	i := 0
	if err != nil {
		i = 1
	}
	m.store.Record(ctx, elapsed.Seconds(), m.storeAttrs[op][i])
}

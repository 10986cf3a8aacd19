package rollout

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/policystore"
)

// shadowSamplesPending is how many differing decisions a Shadow keeps between two flushes.
const shadowSamplesPending = policystore.ShadowSamplesKept

// shadowBuckets is the resolution of the shadow share: the share of events evaluated in
// shadow is chosen in steps of 1/shadowBuckets.
const shadowBuckets = 10_000

// ShadowSink receives the shadow counts of a replica; both featurestore policy stores
// satisfy it. AddShadowResults reports false when epoch is no longer the current run.
type ShadowSink interface {
	AddShadowResults(ctx context.Context, epoch string, counts policystore.ShadowCounts, samples []policystore.ShadowSample) (bool, error)
}

// Shadow evaluates a candidate policy beside the active one on a share of live decisions and
// counts how the answers differ. It never changes an answer and never commits anything: the
// candidate's result, effects included, is compared and dropped. Counts accumulate in memory
// and are flushed to a ShadowSink (by Sync, every tick), so the hot path does no I/O.
//
// Which events are shadowed is decided by a hash of the event id, so every replica shadows the
// same events. The zero value is not usable: call NewShadow. It is safe for concurrent use.
type Shadow struct {
	run atomic.Pointer[shadowRun]

	mu      sync.Mutex
	epoch   string // the run pending counts belong to
	counts  policystore.ShadowCounts
	samples []policystore.ShadowSample

	evaluations metric.Int64Counter // arbiter.shadow.decisions{result}
	resultAttrs [3]metric.MeasurementOption
}

// shadowRun is one shadow configuration with its compiled candidate.
type shadowRun struct {
	cfg       policystore.ShadowConfig
	policy    *decision.Policy
	threshold uint32 // events whose hash bucket is below it are shadowed
}

// Shadow results, as metric labels.
const (
	shadowSame = iota
	shadowDifferent
	shadowError
)

// NewShadow returns a Shadow with no candidate. Its metric arbiter.shadow.decisions counts
// shadow evaluations by result ("same", "different", "error"); a nil mp means no metrics.
func NewShadow(mp metric.MeterProvider) *Shadow {
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	s := &Shadow{}
	c, err := mp.Meter(instrumentationName).Int64Counter("arbiter.shadow.decisions",
		metric.WithDescription("Decisions evaluated under the shadow policy, by result against the active one."),
		metric.WithUnit("{decision}"))
	if err != nil {
		c, _ = metricnoop.NewMeterProvider().Meter(instrumentationName).Int64Counter("arbiter.shadow.decisions")
	}
	s.evaluations = c
	for i, r := range [3]string{"same", "different", "error"} {
		s.resultAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))
		// Zero from the start, so that it is scraped before the first shadow decision; a
		// measurement's context only carries exemplars and baggage.
		c.Add(context.Background(), 0, s.resultAttrs[i])
	}
	return s
}

// Set makes p, compiled from cfg.Version, the candidate for cfg.Share of the traffic. A zero
// cfg or a nil p stops shadow evaluation. Counts pending for another run are dropped.
func (s *Shadow) Set(cfg policystore.ShadowConfig, p *decision.Policy) {
	if cfg.Version == "" || p == nil || cfg.Share <= 0 {
		s.run.Store(nil)
	} else {
		share := min(cfg.Share, 1)
		s.run.Store(&shadowRun{cfg: cfg, policy: p, threshold: uint32(share*shadowBuckets + 0.5)})
	}
	s.mu.Lock()
	if s.epoch != cfg.Epoch {
		s.epoch, s.counts, s.samples = cfg.Epoch, policystore.ShadowCounts{}, nil
	}
	s.mu.Unlock()
}

// Config returns the shadow configuration in effect; the zero value when none.
func (s *Shadow) Config() policystore.ShadowConfig {
	if r := s.run.Load(); r != nil {
		return r.cfg
	}
	return policystore.ShadowConfig{}
}

// Observe evaluates the candidate on in when the event falls in the shadow share, and counts
// how its answer differs from active, the answer given. It reads in and active and changes
// neither. A nil Shadow observes nothing.
func (s *Shadow) Observe(ctx context.Context, in *decision.Input, active *decision.Result) {
	if s == nil {
		return
	}
	r := s.run.Load()
	if r == nil || shadowBucket(in.Event.ID) >= r.threshold {
		return
	}
	// A shallow copy: the candidate reads the same event, customer, state and time, but can
	// not touch the caller's Input, and does no explanation work.
	sin := *in
	sin.Explain = false
	res, err := r.policy.Decide(ctx, &sin)
	if err != nil {
		s.evaluations.Add(ctx, 1, s.resultAttrs[shadowError])
		s.add(r.cfg.Epoch, policystore.ShadowCounts{Evaluated: 1, Errors: 1}, nil)
		return
	}
	activeCodes, shadowCodes := reasonCodes(active.Reasons), reasonCodes(res.Reasons)
	added, removed := decision.CodeChanges(activeCodes, shadowCodes)
	changed := changedFields(active, res)
	if len(changed) == 0 && len(added) == 0 && len(removed) == 0 {
		s.evaluations.Add(ctx, 1, s.resultAttrs[shadowSame])
		s.add(r.cfg.Epoch, policystore.ShadowCounts{Evaluated: 1}, nil)
		return
	}
	s.evaluations.Add(ctx, 1, s.resultAttrs[shadowDifferent])
	c := policystore.ShadowCounts{
		Evaluated: 1, Different: 1,
		Actions: map[policystore.ActionPair]int64{{Active: active.Action, Shadow: res.Action}: 1},
	}
	for _, code := range added {
		if c.ReasonsAdded == nil {
			c.ReasonsAdded = map[string]int64{}
		}
		c.ReasonsAdded[code]++
	}
	for _, code := range removed {
		if c.ReasonsRemoved == nil {
			c.ReasonsRemoved = map[string]int64{}
		}
		c.ReasonsRemoved[code]++
	}
	sample := &policystore.ShadowSample{
		EventID: in.Event.ID, EventType: in.Event.Type,
		ActiveAction: active.Action, ActiveReasons: activeCodes,
		ShadowAction: res.Action, ShadowReasons: shadowCodes,
		ChangedFields: changed,
		At:            in.Now,
	}
	s.add(r.cfg.Epoch, c, sample)
}

// add merges one evaluation into the pending counts of run epoch.
func (s *Shadow) add(epoch string, c policystore.ShadowCounts, sample *policystore.ShadowSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch {
		return // the run changed while this evaluation ran
	}
	s.counts.Add(c)
	if sample != nil {
		if len(s.samples) >= shadowSamplesPending {
			s.samples = slices.Delete(s.samples, 0, 1)
		}
		s.samples = append(s.samples, *sample)
	}
}

// Flush sends the pending counts to sink and clears them. Counts the sink refuses because
// the run changed are dropped; on an error they are kept for the next flush.
func (s *Shadow) Flush(ctx context.Context, sink ShadowSink) error {
	s.mu.Lock()
	epoch, counts, samples := s.epoch, s.counts, s.samples
	s.counts, s.samples = policystore.ShadowCounts{}, nil
	s.mu.Unlock()
	if epoch == "" || counts.IsZero() {
		return nil
	}
	if _, err := sink.AddShadowResults(ctx, epoch, counts, samples); err != nil {
		s.mu.Lock()
		if s.epoch == epoch {
			s.counts.Add(counts)
			s.samples = append(samples, s.samples...)
			if n := len(s.samples); n > shadowSamplesPending {
				s.samples = s.samples[n-shadowSamplesPending:]
			}
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

// shadowBucket maps an event id to one of shadowBuckets buckets (FNV-1a).
func shadowBucket(eventID string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(eventID); i++ {
		h ^= uint32(eventID[i])
		h *= 16777619
	}
	return h % shadowBuckets
}

// reasonCodes returns the codes of rs, in order.
func reasonCodes(rs []decision.Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Code
	}
	return out
}

// changedFields names the parts of the action that differ between active and shadow: the
// action itself, and for the same action its detail (channel, template, send_at; queue,
// priority; acquirer, not_before). Nil means the whole action is the same.
func changedFields(active, shadow *decision.Result) []string {
	if active.Action != shadow.Action {
		return []string{"action"}
	}
	var out []string
	add := func(differs bool, name string) {
		if differs {
			out = append(out, name)
		}
	}
	if a, b := active.Message, shadow.Message; a != nil && b != nil {
		add(a.Channel != b.Channel, "channel")
		add(a.TemplateID != b.TemplateID, "template")
		add(!a.SendAt.Equal(b.SendAt), "send_at")
	} else {
		add((a == nil) != (b == nil), "message")
	}
	if a, b := active.Escalate, shadow.Escalate; a != nil && b != nil {
		add(a.Queue != b.Queue, "queue")
		add(a.Priority != b.Priority, "priority")
	} else {
		add((a == nil) != (b == nil), "escalate")
	}
	if a, b := active.Retry, shadow.Retry; a != nil && b != nil {
		add(a.Acquirer != b.Acquirer, "acquirer")
		add(!a.NotBefore.Equal(b.NotBefore), "not_before")
	} else {
		add((a == nil) != (b == nil), "retry")
	}
	return out
}

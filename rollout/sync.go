package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/policystore"
)

// Source is where a replica finds the policy the fleet should serve: the active version,
// the shadow configuration, their bundles and a notification of changes. Both featurestore
// policy stores satisfy it.
type Source interface {
	ActivePolicy(ctx context.Context) (string, error)
	ShadowPolicy(ctx context.Context) (policystore.ShadowConfig, error)
	Bundle(ctx context.Context, version string) (policystore.Bundle, error)
	WatchPolicy(ctx context.Context) (<-chan struct{}, error)
	ShadowSink
}

var (
	_ Source = (*policystore.Redis)(nil)
	_ Source = (*policystore.Memory)(nil)
)

// Sync keeps one replica's Holder on the version activated in a Source, and
// its Shadow on the shadow version. It re-reads the source on every change notification and,
// as a safety net for lost notifications, every interval (default 500 ms), so a replica
// switches within a second of an activation.
//
// A version is compiled once. A replica that cannot compile the active version keeps serving
// the last good one, logs once, counts the failure in arbiter.policy.sync.failures and says so
// in Status (and /readyz). Before the first activation in the source, the holder keeps the
// policy it was given (the file or default policy).
type Sync struct {
	src    Source
	holder *Holder
	shadow *Shadow
	opts   syncOptions

	failures metric.Int64Counter

	mu      sync.Mutex
	status  SyncStatus
	failed  map[string]error // versions that did not compile, by version
	cand    *decision.Policy // the compiled shadow candidate
	applied *decision.Policy // the last version this sync stored in the holder
}

// SyncStatus is what a replica serves compared with what the fleet should serve.
type SyncStatus struct {
	// Active is the version activated in the source; empty before the first activation.
	Active string
	// Serving names the policy the replica serves.
	Serving decision.PolicyRef
	// Err says why Serving is not Active (the version did not compile, or the source could
	// not be read); nil when the replica is in line.
	Err error
	// Shadow is the shadow version in effect on this replica; empty for none.
	Shadow string
}

// SyncOption configures a Sync.
type SyncOption func(*syncOptions)

type syncOptions struct {
	interval      time.Duration
	logger        *slog.Logger
	meterProvider metric.MeterProvider
}

// WithSyncInterval sets the period of the safety-net check (default 500 ms).
func WithSyncInterval(d time.Duration) SyncOption {
	return func(o *syncOptions) {
		if d > 0 {
			o.interval = d
		}
	}
}

// WithSyncLogger sets the logger of policy switches and failures (default: discard).
func WithSyncLogger(l *slog.Logger) SyncOption { return func(o *syncOptions) { o.logger = l } }

// WithSyncMeterProvider sets the provider of the sync's metrics (default: no-op):
// arbiter.policy.serving{policy,version,digest} (1 for the served policy) and
// arbiter.policy.sync.failures.
func WithSyncMeterProvider(mp metric.MeterProvider) SyncOption {
	return func(o *syncOptions) { o.meterProvider = mp }
}

// NewSync returns a sync of holder (and of shadow, which may be nil) on src.
func NewSync(src Source, holder *Holder, shadow *Shadow, opts ...SyncOption) *Sync {
	o := syncOptions{interval: 500 * time.Millisecond, logger: slog.New(slog.DiscardHandler), meterProvider: metricnoop.NewMeterProvider()}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Sync{src: src, holder: holder, shadow: shadow, opts: o, failed: map[string]error{}}
	m := o.meterProvider.Meter(instrumentationName)
	var err error
	if s.failures, err = m.Int64Counter("arbiter.policy.sync.failures",
		metric.WithDescription("Policy versions this replica could not compile or read; it kept serving the last good one."),
		metric.WithUnit("{failure}")); err != nil {
		s.failures, _ = metricnoop.NewMeterProvider().Meter(instrumentationName).Int64Counter("arbiter.policy.sync.failures")
	}
	// Zero from the start, so that it is scraped before the first failure; a measurement's
	// context only carries exemplars and baggage.
	s.failures.Add(context.Background(), 0)
	_, err = m.Int64ObservableGauge("arbiter.policy.serving",
		metric.WithDescription("1 for the policy version this replica serves, labelled with its id, version and digest."),
		metric.WithInt64Callback(func(_ context.Context, obs metric.Int64Observer) error {
			if p := holder.Load(); p != nil {
				ref := p.Ref()
				obs.Observe(1, metric.WithAttributes(attribute.String("policy", ref.ID),
					attribute.String("version", ref.Version), attribute.String("digest", ref.Digest)))
			}
			return nil
		}))
	if err != nil {
		o.logger.Error("create policy serving gauge", "err", err)
	}
	return s
}

// Status returns what the replica serves and why it differs from the active version.
func (s *Sync) Status() SyncStatus {
	s.mu.Lock()
	st := s.status
	s.mu.Unlock()
	if p := s.holder.Load(); p != nil {
		st.Serving = p.Ref()
	}
	return st
}

// Run syncs, then re-syncs on every notification and every interval, and flushes the shadow
// counts every interval, until ctx is done. It returns nil then. It never gives up on a source
// that fails: the replica keeps serving what it has.
func (s *Sync) Run(ctx context.Context) error {
	var notes <-chan struct{}
	subscribe := func() {
		ch, err := s.src.WatchPolicy(ctx)
		if err != nil {
			s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "watch policy changes", slog.Any("err", err))
			return
		}
		notes = ch
	}
	subscribe()
	s.Sync(ctx)
	tick := time.NewTicker(s.opts.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last flush with a short deadline of its own: the run's context is done.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			s.flush(fctx)
			cancel()
			return nil
		case _, ok := <-notes:
			if !ok {
				notes = nil
				continue
			}
			s.Sync(ctx)
		case <-tick.C:
			if notes == nil {
				subscribe()
			}
			s.Sync(ctx)
			s.flush(ctx)
		}
	}
}

func (s *Sync) flush(ctx context.Context) {
	if s.shadow == nil {
		return
	}
	if err := s.shadow.Flush(ctx, s.src); err != nil {
		s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "flush shadow counts", slog.Any("err", err))
	}
}

// Sync reads the active and shadow versions once and brings the replica in line. It returns
// the error that keeps it from being in line, also recorded in Status.
func (s *Sync) Sync(ctx context.Context) error {
	err := errors.Join(s.syncActive(ctx), s.syncShadow(ctx))
	return err
}

func (s *Sync) syncActive(ctx context.Context) error {
	active, err := s.src.ActivePolicy(ctx)
	if err != nil {
		return s.setStatus(func(st *SyncStatus) { st.Err = fmt.Errorf("read active policy: %w", err) }, err)
	}
	if active == "" {
		return s.setStatus(func(st *SyncStatus) { st.Active, st.Err = "", nil }, nil)
	}
	s.mu.Lock()
	applied := s.applied
	s.mu.Unlock()
	if applied != nil && applied.Ref().Version == active && s.holder.Load() == applied {
		return s.setStatus(func(st *SyncStatus) { st.Active, st.Err = active, nil }, nil)
	}
	p := applied
	if p == nil || p.Ref().Version != active {
		if p, err = s.compile(ctx, active); err != nil {
			return s.setStatus(func(st *SyncStatus) { st.Active, st.Err = active, err }, err)
		}
	}
	from := ""
	if old := s.holder.Load(); old != nil {
		from = old.Ref().Version
	}
	s.holder.Store(p)
	s.mu.Lock()
	s.applied = p
	s.mu.Unlock()
	s.opts.logger.LogAttrs(ctx, slog.LevelInfo, "policy switched",
		slog.String("from", from), slog.String("to", active), slog.String("digest", p.Ref().Digest))
	return s.setStatus(func(st *SyncStatus) { st.Active, st.Err = active, nil }, nil)
}

func (s *Sync) syncShadow(ctx context.Context) error {
	if s.shadow == nil {
		return nil
	}
	cfg, err := s.src.ShadowPolicy(ctx)
	if err != nil {
		return fmt.Errorf("read shadow policy: %w", err)
	}
	cur := s.shadow.Config()
	if cfg == cur {
		return nil
	}
	if cfg.Version == "" {
		s.shadow.Set(cfg, nil)
		s.setStatus(func(st *SyncStatus) { st.Shadow = "" }, nil)
		return nil
	}
	s.mu.Lock()
	cand := s.cand
	s.mu.Unlock()
	if cand == nil || cand.Ref().Version != cfg.Version {
		if cand, err = s.compile(ctx, cfg.Version); err != nil {
			s.shadow.Set(policystore.ShadowConfig{}, nil)
			return fmt.Errorf("shadow: %w", err)
		}
		s.mu.Lock()
		s.cand = cand
		s.mu.Unlock()
	}
	s.shadow.Set(cfg, cand)
	s.setStatus(func(st *SyncStatus) { st.Shadow = cfg.Version }, nil)
	return nil
}

// compile reads and compiles a version, once: a version that failed is not retried.
func (s *Sync) compile(ctx context.Context, version string) (*decision.Policy, error) {
	s.mu.Lock()
	ferr, failed := s.failed[version]
	s.mu.Unlock()
	if failed {
		return nil, ferr
	}
	b, err := s.src.Bundle(ctx, version)
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", version, err)
	}
	p, err := decision.ParsePolicy(b.Files)
	if err == nil && p.Ref().Version != version {
		err = fmt.Errorf("bundle declares version %q", p.Ref().Version)
	}
	if err != nil {
		err = fmt.Errorf("policy %s does not compile on this replica: %w", version, err)
		s.mu.Lock()
		s.failed[version] = err
		s.mu.Unlock()
		s.failures.Add(ctx, 1)
		s.opts.logger.LogAttrs(ctx, slog.LevelError, "policy version rejected; serving the last good one",
			slog.String("version", version), slog.Any("err", err))
		return nil, err
	}
	return p, nil
}

func (s *Sync) setStatus(f func(*SyncStatus), err error) error {
	s.mu.Lock()
	f(&s.status)
	s.mu.Unlock()
	return err
}

// Problem says in one line why the replica does not serve the active version; "" when it
// does. Store errors are summarised without their internals.
func (st SyncStatus) Problem() string {
	switch {
	case st.Err == nil:
		return ""
	case errors.Is(st.Err, policystore.ErrUnavailable):
		return "policy store unavailable; serving the last good version"
	}
	return st.Err.Error()
}

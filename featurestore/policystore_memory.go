package featurestore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
)

// MemoryPolicyStore keeps policy versions and their governance in the process, for the
// embedded mode (one replica, no Redis). It behaves as RedisPolicyStore does. The zero value
// is not usable: call NewMemoryPolicyStore. It is safe for concurrent use.
type MemoryPolicyStore struct {
	mu       sync.Mutex
	bundles  map[string]PolicyBundle
	active   string
	history  []string // activated versions, oldest first; the last is active
	changes  []PolicyChange
	shadow   ShadowConfig
	report   ShadowReport // counts and samples of the current shadow run
	watchers map[chan struct{}]struct{}
}

// NewMemoryPolicyStore returns an empty in-process policy store.
func NewMemoryPolicyStore() *MemoryPolicyStore {
	return &MemoryPolicyStore{bundles: make(map[string]PolicyBundle), watchers: make(map[chan struct{}]struct{})}
}

// PublishPolicy is RedisPolicyStore.PublishPolicy.
func (s *MemoryPolicyStore) PublishPolicy(ctx context.Context, b PolicyBundle) (PolicyVersion, bool, error) {
	if err := ctx.Err(); err != nil {
		return PolicyVersion{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.bundles[b.Version]; ok {
		if old.Digest != b.Digest {
			return PolicyVersion{}, false, fmt.Errorf("publish policy %s: %w", b.Version, ErrVersionExists)
		}
		return old.PolicyVersion, false, nil
	}
	b.CreatedAt = b.CreatedAt.UTC()
	files := make(map[string][]byte, len(b.Files))
	for k, v := range b.Files {
		files[k] = slices.Clone(v)
	}
	b.Files = files
	s.bundles[b.Version] = b
	s.appendChange(PolicyChange{Kind: ChangePublish, Actor: b.Author, At: b.CreatedAt, To: b.Version, Comment: b.Comment})
	return b.PolicyVersion, true, nil
}

// PolicyVersions is RedisPolicyStore.PolicyVersions.
func (s *MemoryPolicyStore) PolicyVersions(ctx context.Context) ([]PolicyVersion, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PolicyVersion
	for _, b := range s.bundles {
		out = append(out, b.PolicyVersion)
	}
	sortVersions(out)
	return out, nil
}

// PolicyBundle is RedisPolicyStore.PolicyBundle.
func (s *MemoryPolicyStore) PolicyBundle(ctx context.Context, version string) (PolicyBundle, error) {
	if err := ctx.Err(); err != nil {
		return PolicyBundle{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[version]
	if !ok {
		return PolicyBundle{}, fmt.Errorf("policy %s: %w", version, ErrNotFound)
	}
	files := make(map[string][]byte, len(b.Files))
	for k, v := range b.Files {
		files[k] = slices.Clone(v)
	}
	b.Files = files
	return b, nil
}

// ActivePolicy is RedisPolicyStore.ActivePolicy.
func (s *MemoryPolicyStore) ActivePolicy(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active, nil
}

// ActivatePolicy is RedisPolicyStore.ActivatePolicy.
func (s *MemoryPolicyStore) ActivatePolicy(ctx context.Context, c PolicyChange) (PolicyChange, error) {
	if err := ctx.Err(); err != nil {
		return PolicyChange{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bundles[c.To]; !ok {
		return PolicyChange{}, fmt.Errorf("activate policy %s: %w", c.To, ErrNotFound)
	}
	if s.active == c.To {
		return PolicyChange{}, fmt.Errorf("activate policy %s: %w", c.To, ErrAlreadyActive)
	}
	c.Kind, c.From, c.ShadowShare = ChangeActivate, s.active, 0
	s.active = c.To
	s.history = append(s.history, c.To)
	if len(s.history) > activationHistory {
		s.history = slices.Delete(s.history, 0, len(s.history)-activationHistory)
	}
	c = s.appendChange(c)
	s.notify()
	return c, nil
}

// RollbackPolicy is RedisPolicyStore.RollbackPolicy.
func (s *MemoryPolicyStore) RollbackPolicy(ctx context.Context, c PolicyChange) (PolicyChange, error) {
	if err := ctx.Err(); err != nil {
		return PolicyChange{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.history) < 2 {
		return PolicyChange{}, fmt.Errorf("roll back policy: %w", ErrNoPrevious)
	}
	s.history = s.history[:len(s.history)-1]
	c.Kind, c.From, c.To, c.ShadowShare = ChangeRollback, s.active, s.history[len(s.history)-1], 0
	s.active = c.To
	c = s.appendChange(c)
	s.notify()
	return c, nil
}

// SetShadowPolicy is RedisPolicyStore.SetShadowPolicy.
func (s *MemoryPolicyStore) SetShadowPolicy(ctx context.Context, c PolicyChange) (PolicyChange, error) {
	if err := ctx.Err(); err != nil {
		return PolicyChange{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.To == "" {
		c.ShadowShare = 0
	} else if _, ok := s.bundles[c.To]; !ok {
		return PolicyChange{}, fmt.Errorf("shadow policy %s: %w", c.To, ErrNotFound)
	}
	c.Kind, c.From = ChangeShadow, s.shadow.Version
	c = s.appendChange(c)
	s.shadow = ShadowConfig{}
	if c.To != "" {
		s.shadow = ShadowConfig{Version: c.To, Share: c.ShadowShare, Epoch: c.ID, Since: c.At}
	}
	s.report = ShadowReport{}
	s.notify()
	return c, nil
}

// ShadowPolicy is RedisPolicyStore.ShadowPolicy.
func (s *MemoryPolicyStore) ShadowPolicy(ctx context.Context) (ShadowConfig, error) {
	if err := ctx.Err(); err != nil {
		return ShadowConfig{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shadow, nil
}

// PolicyChanges is RedisPolicyStore.PolicyChanges.
func (s *MemoryPolicyStore) PolicyChanges(ctx context.Context, limit int) ([]PolicyChange, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultChangeLimit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PolicyChange, 0, min(limit, len(s.changes)))
	for i := len(s.changes) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, s.changes[i])
	}
	return out, nil
}

// AddShadowResults is RedisPolicyStore.AddShadowResults.
func (s *MemoryPolicyStore) AddShadowResults(ctx context.Context, epoch string, counts ShadowCounts, samples []ShadowSample) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shadow.Epoch == "" || s.shadow.Epoch != epoch {
		return false, nil
	}
	s.report.Counts.Add(counts)
	for _, sm := range samples {
		sm.At = sm.At.UTC()
		s.report.Samples = slices.Insert(s.report.Samples, 0, sm)
	}
	if len(s.report.Samples) > ShadowSamplesKept {
		s.report.Samples = s.report.Samples[:ShadowSamplesKept]
	}
	return true, nil
}

// ShadowReport is RedisPolicyStore.ShadowReport.
func (s *MemoryPolicyStore) ShadowReport(ctx context.Context) (ShadowReport, error) {
	if err := ctx.Err(); err != nil {
		return ShadowReport{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := ShadowReport{Config: s.shadow}
	if s.shadow.Epoch == "" {
		return rep, nil
	}
	rep.Counts = ShadowCounts{
		Evaluated: s.report.Counts.Evaluated, Different: s.report.Counts.Different, Errors: s.report.Counts.Errors,
		Actions: maps.Clone(s.report.Counts.Actions), ReasonsAdded: maps.Clone(s.report.Counts.ReasonsAdded),
		ReasonsRemoved: maps.Clone(s.report.Counts.ReasonsRemoved),
	}
	rep.Samples = slices.Clone(s.report.Samples)
	return rep, nil
}

// WatchPolicy is RedisPolicyStore.WatchPolicy: the channel receives a value after every
// activation, rollback or shadow change, and is closed when ctx is done.
func (s *MemoryPolicyStore) WatchPolicy(ctx context.Context) (<-chan struct{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := make(chan struct{}, 1)
	out := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[in] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				s.mu.Lock()
				delete(s.watchers, in)
				s.mu.Unlock()
				return
			case <-in:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

// appendChange assigns c the next id, records it and returns it. s.mu is held.
func (s *MemoryPolicyStore) appendChange(c PolicyChange) PolicyChange {
	c.ID = strconv.Itoa(len(s.changes) + 1)
	c.At = c.At.UTC()
	s.changes = append(s.changes, c)
	return c
}

// notify wakes every watcher without blocking. s.mu is held.
func (s *MemoryPolicyStore) notify() {
	for w := range s.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

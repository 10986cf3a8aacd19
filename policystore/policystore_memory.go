package policystore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
)

// Memory keeps policy versions and their governance in the process, for the
// embedded mode (one replica, no Redis). It behaves as Redis does. The zero value
// is not usable: call NewMemory. It is safe for concurrent use.
type Memory struct {
	mu       sync.Mutex
	bundles  map[string]Bundle
	active   string
	history  []string // activated versions, oldest first; the last is active
	changes  []Change
	shadow   ShadowConfig
	report   ShadowReport // counts and samples of the current shadow run
	watchers map[chan struct{}]struct{}
}

// NewMemory returns an empty in-process policy store.
func NewMemory() *Memory {
	return &Memory{bundles: make(map[string]Bundle), watchers: make(map[chan struct{}]struct{})}
}

// PublishPolicy is Redis.PublishPolicy.
func (s *Memory) PublishPolicy(ctx context.Context, b Bundle) (PolicyVersion, bool, error) {
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
	s.appendChange(Change{Kind: ChangePublish, Actor: b.Author, At: b.CreatedAt, To: b.Version, Comment: b.Comment})
	return b.PolicyVersion, true, nil
}

// PolicyVersions is Redis.PolicyVersions.
func (s *Memory) PolicyVersions(ctx context.Context) ([]PolicyVersion, error) {
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

// Bundle is Redis.Bundle.
func (s *Memory) Bundle(ctx context.Context, version string) (Bundle, error) {
	if err := ctx.Err(); err != nil {
		return Bundle{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[version]
	if !ok {
		return Bundle{}, fmt.Errorf("policy %s: %w", version, ErrNotFound)
	}
	files := make(map[string][]byte, len(b.Files))
	for k, v := range b.Files {
		files[k] = slices.Clone(v)
	}
	b.Files = files
	return b, nil
}

// ActivePolicy is Redis.ActivePolicy.
func (s *Memory) ActivePolicy(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active, nil
}

// ActivatePolicy is Redis.ActivatePolicy.
func (s *Memory) ActivatePolicy(ctx context.Context, c Change) (Change, error) {
	if err := ctx.Err(); err != nil {
		return Change{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bundles[c.To]; !ok {
		return Change{}, fmt.Errorf("activate policy %s: %w", c.To, ErrNotFound)
	}
	if s.active == c.To {
		return Change{}, fmt.Errorf("activate policy %s: %w", c.To, ErrAlreadyActive)
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

// ApprovePolicy is Redis.ApprovePolicy.
func (s *Memory) ApprovePolicy(ctx context.Context, c Change) (Change, error) {
	if err := ctx.Err(); err != nil {
		return Change{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bundles[c.To]; !ok {
		return Change{}, fmt.Errorf("approve policy %s: %w", c.To, ErrNotFound)
	}
	c.Kind, c.From, c.ShadowShare = ChangeApprove, "", 0
	return s.appendChange(c), nil
}

// RollbackPolicy is Redis.RollbackPolicy.
func (s *Memory) RollbackPolicy(ctx context.Context, c Change) (Change, error) {
	if err := ctx.Err(); err != nil {
		return Change{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.history) < 2 {
		return Change{}, fmt.Errorf("roll back policy: %w", ErrNoPrevious)
	}
	s.history = s.history[:len(s.history)-1]
	c.Kind, c.From, c.To, c.ShadowShare = ChangeRollback, s.active, s.history[len(s.history)-1], 0
	s.active = c.To
	c = s.appendChange(c)
	s.notify()
	return c, nil
}

// SetShadowPolicy is Redis.SetShadowPolicy.
func (s *Memory) SetShadowPolicy(ctx context.Context, c Change) (Change, error) {
	if err := ctx.Err(); err != nil {
		return Change{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.To == "" {
		c.ShadowShare = 0
	} else if _, ok := s.bundles[c.To]; !ok {
		return Change{}, fmt.Errorf("shadow policy %s: %w", c.To, ErrNotFound)
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

// ShadowPolicy is Redis.ShadowPolicy.
func (s *Memory) ShadowPolicy(ctx context.Context) (ShadowConfig, error) {
	if err := ctx.Err(); err != nil {
		return ShadowConfig{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shadow, nil
}

// PolicyChanges is Redis.PolicyChanges.
func (s *Memory) PolicyChanges(ctx context.Context, limit int) ([]Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultChangeLimit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Change, 0, min(limit, len(s.changes)))
	for i := len(s.changes) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, s.changes[i])
	}
	return out, nil
}

// AddShadowResults is Redis.AddShadowResults.
func (s *Memory) AddShadowResults(ctx context.Context, epoch string, counts ShadowCounts, samples []ShadowSample) (bool, error) {
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

// ShadowReport is Redis.ShadowReport.
func (s *Memory) ShadowReport(ctx context.Context) (ShadowReport, error) {
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

// WatchPolicy is Redis.WatchPolicy: the channel receives a value after every
// activation, rollback or shadow change, and is closed when ctx is done.
func (s *Memory) WatchPolicy(ctx context.Context) (<-chan struct{}, error) {
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
func (s *Memory) appendChange(c Change) Change {
	c.ID = strconv.Itoa(len(s.changes) + 1)
	c.At = c.At.UTC()
	s.changes = append(s.changes, c)
	return c
}

// notify wakes every watcher without blocking. s.mu is held.
func (s *Memory) notify() {
	for w := range s.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

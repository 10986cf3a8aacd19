package featurestore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
)

// Memory is the embedded store: the same keys, values and semantics as Redis, held in maps
// under one mutex, with expiry on an injectable clock. It is used when no Redis is configured
// and keeps nothing across restarts. It is safe for concurrent use.
type Memory struct {
	opts options

	mu        sync.Mutex
	closed    bool
	keys      map[string]*memValue
	audit     [256][]auditEntry
	lastSweep time.Time
}

// memValue is one key of the embedded keyspace; kind says which field holds the value.
type memValue struct {
	kind     memKind
	expireAt time.Time // zero: no expiry
	str      string
	hash     map[string]string
	zset     map[string]int64
	list     []string
}

type memKind uint8

const (
	memString memKind = iota + 1
	memHash
	memZset
	memList
)

type auditEntry struct {
	decisionID string
	record     []byte
	at         time.Time // when it was appended, by the store's clock
}

// sweepEvery is how often Memory drops expired keys that nobody reads.
const sweepEvery = time.Minute

var errClosed = errors.New("store closed")

// NewMemory returns an empty embedded store. Options: WithClock (expiry clock), WithRetention.
func NewMemory(opts ...Option) *Memory {
	return &Memory{opts: newOptions(opts), keys: make(map[string]*memValue)}
}

// lock takes the mutex unless the context is done or the store closed.
func (m *Memory) lock(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, errClosed)
	}
	return nil
}

// get returns the live value at key, nil when absent or expired, and ErrCorrupt when the key
// holds another kind (Redis's WRONGTYPE).
func (m *Memory) get(key string, kind memKind) (*memValue, error) {
	v := m.keys[key]
	if v == nil {
		return nil, nil
	}
	if !v.expireAt.IsZero() && !m.opts.clock().Before(v.expireAt) {
		delete(m.keys, key)
		return nil, nil
	}
	if v.kind != kind {
		return nil, corrupt(key, "wrong key type")
	}
	return v, nil
}

// put returns the value at key, creating it when absent.
func (m *Memory) put(key string, kind memKind) *memValue {
	v, _ := m.get(key, kind) // callers checked the type
	if v == nil {
		v = &memValue{kind: kind}
		switch kind {
		case memHash:
			v.hash = make(map[string]string)
		case memZset:
			v.zset = make(map[string]int64)
		}
		m.keys[key] = v
	}
	return v
}

// check returns ErrCorrupt when key exists with another kind.
func (m *Memory) check(key string, kind memKind) error {
	_, err := m.get(key, kind)
	return err
}

func (m *Memory) expire(v *memValue, ttl time.Duration) {
	v.expireAt = m.opts.clock().Add(ttl)
}

// dropEmpty deletes a container key left empty, as Redis does.
func (m *Memory) dropEmpty(key string) {
	v := m.keys[key]
	if v != nil && ((v.kind == memHash && len(v.hash) == 0) || (v.kind == memZset && len(v.zset) == 0) || (v.kind == memList && len(v.list) == 0)) {
		delete(m.keys, key)
	}
}

// zrange returns the members with score >= since as flat member, score pairs in Redis order
// (score, then member), at most limit members.
func (m *Memory) zrange(key string, since int64, limit int) ([]string, error) {
	v, err := m.get(key, memZset)
	if v == nil || err != nil {
		return nil, err
	}
	sel := sortedMembers(v, since)
	if len(sel) > limit {
		sel = sel[:limit]
	}
	out := make([]string, 0, 2*len(sel))
	for _, e := range sel {
		out = append(out, e.m, itoa(e.s))
	}
	return out, nil
}

// scored is a zset member and its score.
type scored struct {
	m string
	s int64
}

// sortedMembers returns v's members with a score of at least since in Redis's order: by
// score, then by member.
func sortedMembers(v *memValue, since int64) []scored {
	sel := make([]scored, 0, len(v.zset))
	for mem, s := range v.zset {
		if s >= since {
			sel = append(sel, scored{mem, s})
		}
	}
	slices.SortFunc(sel, func(a, b scored) int {
		if c := cmp.Compare(a.s, b.s); c != 0 {
			return c
		}
		return cmp.Compare(a.m, b.m)
	})
	return sel
}

// popMin removes the n members with the lowest scores (as Redis's ZPOPMIN) and returns them.
func popMin(v *memValue, n int) []scored {
	if n <= 0 {
		return nil
	}
	all := sortedMembers(v, math.MinInt64)
	all = all[:min(n, len(all))]
	for _, d := range all {
		delete(v.zset, d.m)
	}
	return all
}

// setStop sets field of the stops hash h to value, unless the stop in place lasts longer: a
// stop is never shortened. Both values were validated.
func setStop(key string, h *memValue, field, value string) {
	if cur, ok := h.hash[field]; ok {
		old, _, _ := stopUntil(key, cur)
		until, _, _ := stopUntil(key, value)
		if !old.Before(until) {
			return
		}
	}
	h.hash[field] = value
}

// trim removes zset members with score below min.
func trim(v *memValue, min int64) {
	for mem, s := range v.zset {
		if s < min {
			delete(v.zset, mem)
		}
	}
}

func (m *Memory) hgetall(key string) ([]string, error) {
	v, err := m.get(key, memHash)
	if v == nil || err != nil {
		return nil, err
	}
	out := make([]string, 0, 2*len(v.hash))
	for f, val := range v.hash {
		out = append(out, f, val)
	}
	return out, nil
}

// replay returns the stored record of an event that was decided, or nil.
func (m *Memory) replay(k *customerKeys, eventKey string) ([]byte, error) {
	ev, err := m.get(eventKey, memString)
	if ev == nil || err != nil {
		return nil, err
	}
	rk := key(keyDecision, k.bucket, "", ev.str)
	rec, err := m.get(rk, memString)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.str == "" {
		return nil, corrupt(eventKey, "event decided but its record is missing")
	}
	if len(rec.str) > maxRecordBytes {
		return nil, corrupt(rk, "record is %d bytes", len(rec.str))
	}
	return []byte(rec.str), nil
}

func (m *Memory) raw(k *customerKeys, now time.Time) (rawState, error) {
	var r rawState
	var err error
	since := ms(now.Add(-loadWindow))
	if r.features, err = m.hgetall(k.features); err != nil {
		return r, err
	}
	if len(r.features) > 2*maxFeatures {
		return r, corrupt(k.features, "%d fields", len(r.features)/2)
	}
	if r.messages, err = m.zrange(k.messages, since, maxMembers+1); err != nil {
		return r, err
	}
	if r.ledger, err = m.zrange(k.ledger, since, maxMembers+1); err != nil {
		return r, err
	}
	if r.stops, err = m.hgetall(k.stops); err != nil {
		return r, err
	}
	if r.failing, err = m.hgetall(k.failing); err != nil {
		return r, err
	}
	lst, err := m.get(k.recent, memList)
	if err != nil {
		return r, err
	}
	if lst != nil {
		r.recent = slices.Clone(lst.list[:min(len(lst.list), recentLen)])
	}
	return r, nil
}

// Load implements the store's Load: the stored record when eventID was decided before, else
// the customer's state at now.
func (m *Memory) Load(ctx context.Context, customerID, eventID string, now time.Time) (Loaded, error) {
	return m.load(ctx, customerID, eventID, now, nil)
}

// LoadNarrow implements the store's LoadNarrow (see Redis.LoadNarrow).
func (m *Memory) LoadNarrow(ctx context.Context, customerID, eventID string, now time.Time, n Narrowing) (Loaded, error) {
	return m.load(ctx, customerID, eventID, now, &n)
}

func (m *Memory) load(ctx context.Context, customerID, eventID string, now time.Time, n *Narrowing) (Loaded, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return Loaded{}, err
	}
	if err := checkID("event id", eventID, true); err != nil {
		return Loaded{}, err
	}
	if err := m.lock(ctx, "load"); err != nil {
		return Loaded{}, err
	}
	defer m.mu.Unlock()
	k := keysOf(customerID)
	rec, err := m.replay(&k, key(keyEvent, k.bucket, customerID, eventID))
	if err != nil {
		return Loaded{}, fmt.Errorf("load: %w", err)
	}
	if rec != nil {
		return Loaded{Record: rec}, nil
	}
	raw, err := m.raw(&k, now)
	if err != nil {
		return Loaded{}, fmt.Errorf("load: %w", err)
	}
	var st decision.State
	if n != nil {
		st, err = raw.decodeNarrow(&k, now, *n)
	} else {
		st, err = raw.decode(&k, now)
	}
	if err != nil {
		return Loaded{}, fmt.Errorf("load: %w", err)
	}
	return Loaded{State: st}, nil
}

// State implements the store's State: the customer's live state at now.
func (m *Memory) State(ctx context.Context, customerID string, now time.Time) (decision.State, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return decision.State{}, err
	}
	if err := m.lock(ctx, "state"); err != nil {
		return decision.State{}, err
	}
	defer m.mu.Unlock()
	k := keysOf(customerID)
	raw, err := m.raw(&k, now)
	if err != nil {
		return decision.State{}, fmt.Errorf("state: %w", err)
	}
	st, err := raw.decode(&k, now)
	if err != nil {
		return decision.State{}, fmt.Errorf("state: %w", err)
	}
	return st, nil
}

// Commit implements the store's Commit: replay, checks, then every effect, atomically.
func (m *Memory) Commit(ctx context.Context, c *Commit) (Committed, error) {
	a, err := prepareCommit(c)
	if err != nil {
		return Committed{}, err
	}
	if err := m.lock(ctx, "commit"); err != nil {
		return Committed{}, err
	}
	defer m.mu.Unlock()
	res, err := m.commit(c, &a)
	if err != nil {
		return Committed{}, fmt.Errorf("commit: %w", err)
	}
	m.sweep()
	return res, nil
}

func (m *Memory) commit(c *Commit, a *commitArgs) (Committed, error) {
	k := &a.keys
	// (1) Replay.
	rec, err := m.replay(k, a.event)
	if err != nil {
		return Committed{}, err
	}
	if rec != nil {
		return Committed{Record: rec}, nil
	}
	// (2) Read and check everything before the first write.
	// The type of every key the apply step writes, as the Redis script checks them.
	e := &c.Effects
	for _, kk := range []struct {
		key   string
		kind  memKind
		write bool
	}{
		{k.recent, memList, true}, {k.messages, memZset, a.message != ""}, {k.ledger, memZset, len(a.ledger) > 0},
		{k.stops, memHash, len(a.stops) > 0}, {k.features, memHash, len(a.features) > 0},
	} {
		if !kk.write {
			continue
		}
		if err := m.check(kk.key, kk.kind); err != nil {
			return Committed{}, err
		}
	}
	// A commit that may take the ledger past LedgerCap writes stops for the entries it drops.
	trimming := false
	if len(a.ledger) > 0 {
		z, _ := m.get(k.ledger, memZset) // type checked above
		trimming = z != nil && len(z.zset)+len(a.ledger) > LedgerCap
	}
	if trimming && len(a.stops) == 0 {
		if err := m.check(k.stops, memHash); err != nil {
			return Committed{}, err
		}
	}
	if len(e.CapChecks) > 0 {
		since := e.CapChecks[0].Since
		for _, cc := range e.CapChecks {
			since = minTime(since, cc.Since)
		}
		flat, err := m.zrange(k.messages, ms(since), maxMembers+1)
		if err != nil {
			return Committed{}, err
		}
		msgs, err := decodeMessages(k.messages, flat)
		if err != nil {
			return Committed{}, err
		}
		for _, cc := range e.CapChecks {
			if cc.Count(msgs) >= cc.Limit {
				return Committed{Conflict: cc.Name}, nil
			}
		}
	}
	if len(e.LedgerChecks) > 0 {
		since := e.LedgerChecks[0].Since
		for _, lc := range e.LedgerChecks {
			since = minTime(since, lc.Since)
		}
		flat, err := m.zrange(k.ledger, ms(since), maxMembers+1)
		if err != nil {
			return Committed{}, err
		}
		entries, err := decodeLedger(k.ledger, flat)
		if err != nil {
			return Committed{}, err
		}
		for _, lc := range e.LedgerChecks {
			if lc.Count(entries) >= lc.Limit {
				return Committed{Conflict: lc.Name}, nil
			}
		}
	}
	if len(a.stops) > 0 || len(e.StopChecks) > 0 || trimming {
		stops, err := m.get(k.stops, memHash)
		if err != nil {
			return Committed{}, err
		}
		if stops != nil {
			for _, v := range stops.hash {
				if _, _, err := stopUntil(k.stops, v); err != nil {
					return Committed{}, err
				}
			}
		}
		// Stop checks: a card-wide stop or one for the merchant, in force at the check's time
		// (decision.StopCheck.Blocks), as the Redis script reads them.
		for i := range e.StopChecks {
			sc := &e.StopChecks[i]
			if stops == nil {
				break
			}
			for _, f := range [2]string{stopKey(sc.CardRef, ""), stopKey(sc.CardRef, sc.MerchantID)} {
				if v, ok := stops.hash[f]; ok {
					if until, _, _ := stopUntil(k.stops, v); ms(until) > ms(sc.At) {
						return Committed{Conflict: sc.Name}, nil
					}
				}
			}
		}
	}

	// (3) Apply.
	now := ms(c.Now)
	keepMin := ms(c.Now.Add(-keepWindow))
	rv := m.put(a.record, memString)
	rv.str = string(c.Record)
	m.expire(rv, m.opts.retention)
	ev := m.put(a.event, memString)
	ev.str = c.DecisionID
	m.expire(ev, m.opts.retention)
	if a.message != "" {
		z := m.put(k.messages, memZset)
		z.zset[a.message] = ms(e.Message.At)
		trim(z, keepMin)
		m.expire(z, keepWindow)
		m.dropEmpty(k.messages)
	}
	// Stops first: those of the ledger entries the cap drops extend them.
	var stops *memValue
	if len(a.stops) > 0 || trimming {
		stops = m.put(k.stops, memHash)
		for _, fv := range a.stops {
			setStop(k.stops, stops, fv[0], fv[1])
		}
	}
	if len(a.ledger) > 0 {
		z := m.put(k.ledger, memZset)
		for i, mem := range a.ledger {
			z.zset[mem] = ms(e.Ledger[i].At)
		}
		trim(z, keepMin)
		if trimming {
			for _, d := range popMin(z, len(z.zset)-LedgerCap) {
				var f [8]string
				if splitFields(d.m, f[:]) == len(f) {
					setStop(k.stops, stops, stopKey(f[2], ""), ledgerStop(d.s))
				}
			}
		}
		m.expire(z, keepWindow)
		m.dropEmpty(k.ledger)
	}
	if stops != nil {
		m.expireHash(k.stops, stops, now, func(v string) int64 {
			t, _, _ := stopUntil(k.stops, v)
			return ms(t)
		})
	}
	if len(a.features) > 0 {
		h := m.put(k.features, memHash)
		for i, fv := range a.features {
			if a.delete[i] {
				delete(h.hash, fv[0])
			} else {
				h.hash[fv[0]] = fv[1]
			}
		}
		m.dropEmpty(k.features)
	}
	l := m.put(k.recent, memList)
	l.list = slices.Insert(l.list, 0, a.summary)
	if len(l.list) > recentLen {
		l.list = l.list[:recentLen]
	}
	m.expire(l, recentTTL)
	m.appendAudit(k.bucket, c.DecisionID, c.Record)
	return Committed{}, nil
}

// expireHash drops the fields whose until (read by untilOf) is not after now and expires the
// hash at its latest until.
func (m *Memory) expireHash(key string, h *memValue, now int64, untilOf func(string) int64) {
	latest := int64(0)
	for f, v := range h.hash {
		u := untilOf(v)
		if u <= now {
			delete(h.hash, f)
			continue
		}
		latest = max(latest, u)
	}
	if len(h.hash) == 0 {
		delete(m.keys, key)
		return
	}
	m.expire(h, time.Duration(latest-now)*time.Millisecond)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// sweep drops expired keys at most once per sweepEvery.
func (m *Memory) sweep() {
	now := m.opts.clock()
	if now.Sub(m.lastSweep) < sweepEvery {
		return
	}
	m.lastSweep = now
	for k, v := range m.keys {
		if !v.expireAt.IsZero() && !now.Before(v.expireAt) {
			delete(m.keys, k)
		}
	}
}

// GetDecision implements the store's GetDecision.
func (m *Memory) GetDecision(ctx context.Context, decisionID string) ([]byte, []StoredOutcome, error) {
	b, err := bucketOfDecisionID(decisionID)
	if err != nil {
		return nil, nil, fmt.Errorf("get decision: %w", err)
	}
	if err := m.lock(ctx, "get decision"); err != nil {
		return nil, nil, err
	}
	defer m.mu.Unlock()
	rk := key(keyDecision, b, "", decisionID)
	rec, err := m.get(rk, memString)
	if err != nil {
		return nil, nil, fmt.Errorf("get decision: %w", err)
	}
	if rec == nil {
		return nil, nil, fmt.Errorf("get decision: %w", ErrNotFound)
	}
	if len(rec.str) > maxRecordBytes {
		return nil, nil, fmt.Errorf("get decision: %w", corrupt(rk, "record is %d bytes", len(rec.str)))
	}
	ok := key(keyOutcomes, b, "", decisionID)
	flat, err := m.hgetall(ok)
	if err != nil {
		return nil, nil, fmt.Errorf("get decision: %w", err)
	}
	outs, err := decodeOutcomes(ok, flat)
	if err != nil {
		return nil, nil, fmt.Errorf("get decision: %w", err)
	}
	return []byte(rec.str), outs, nil
}

// RecordOutcome implements the store's RecordOutcome.
func (m *Memory) RecordOutcome(ctx context.Context, o *OutcomeCommit) (bool, error) {
	a, err := prepareOutcome(o)
	if err != nil {
		return false, err
	}
	if err := m.lock(ctx, "record outcome"); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	dup, err := m.recordOutcome(o, &a)
	if err != nil {
		return false, fmt.Errorf("record outcome: %w", err)
	}
	return dup, nil
}

func (m *Memory) recordOutcome(o *OutcomeCommit, a *outcomeArgs) (bool, error) {
	k := &a.keys
	rec, err := m.get(a.record, memString)
	if err != nil {
		return false, err
	}
	if rec == nil && !o.Archived {
		return false, ErrNotFound
	}
	for _, kk := range []struct {
		key  string
		kind memKind
	}{{a.outcomes, memHash}, {k.messages, memZset}, {k.failing, memHash}, {k.ledger, memZset}, {k.features, memHash}} {
		if err := m.check(kk.key, kk.kind); err != nil {
			return false, err
		}
	}
	outs, _ := m.get(a.outcomes, memHash)
	if outs != nil {
		if _, ok := outs.hash[a.field]; ok {
			return true, nil
		}
	}
	failing, _ := m.get(k.failing, memHash)
	if a.failCh != "" && failing != nil {
		for _, v := range failing.hash {
			if _, err := parseMS(k.failing, "failing until", v); err != nil {
				return false, err
			}
		}
	}
	var resets []string
	if a.resetRef != "" {
		if z, _ := m.get(k.ledger, memZset); z != nil {
			for mem, s := range z.zset {
				e, err := decodeLedgerEntry(k.ledger, mem, s)
				if err != nil {
					return false, err
				}
				if e.CardRef == a.resetRef {
					resets = append(resets, mem)
				}
			}
		}
	}

	h := m.put(a.outcomes, memHash)
	h.hash[a.field] = a.value
	m.expire(h, m.opts.retention)
	if a.release != "" {
		if z, _ := m.get(k.messages, memZset); z != nil {
			delete(z.zset, a.release)
			m.dropEmpty(k.messages)
		}
	}
	if a.failCh != "" {
		f := m.put(k.failing, memHash)
		f.hash[a.failCh] = itoa(a.failTill)
		m.expireHash(k.failing, f, ms(o.Now), func(v string) int64 {
			t, _ := parseMS(k.failing, "", v)
			return ms(t)
		})
	}
	if len(resets) > 0 {
		z := m.keys[k.ledger]
		for _, mem := range resets {
			delete(z.zset, mem)
		}
		m.dropEmpty(k.ledger)
	}
	if o.Effects.OptOut {
		f := m.put(k.features, memHash)
		f.hash["opted_out"] = "true"
		f.expireAt = time.Time{}
	}
	return false, nil
}

// PutFeatures implements the store's PutFeatures: merge features into the customer's, delete
// those with a nil value, and expire the hash after ttl when ttl > 0 (else remove its expiry).
func (m *Memory) PutFeatures(ctx context.Context, customerID string, features map[string]any, ttl time.Duration) error {
	return m.PutFeaturesBatch(ctx, []FeatureRecord{{CustomerID: customerID, Features: features, TTL: ttl}})
}

// PutFeaturesBatch implements the store's PutFeaturesBatch. Invalid items are refused before
// anything is written.
func (m *Memory) PutFeaturesBatch(ctx context.Context, items []FeatureRecord) error {
	enc := make([]encodedFeatures, len(items))
	for i := range items {
		var err error
		if enc[i], err = encodeFeatures(&items[i]); err != nil {
			return fmt.Errorf("put features: %w", err)
		}
	}
	if err := m.lock(ctx, "put features"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for i := range enc {
		fk := enc[i].key
		if err := m.check(fk, memHash); err != nil {
			return fmt.Errorf("put features: %w", err)
		}
		h := m.put(fk, memHash)
		for _, fv := range enc[i].set {
			h.hash[fv[0]] = fv[1]
		}
		for _, f := range enc[i].del {
			delete(h.hash, f)
		}
		if items[i].TTL > 0 {
			m.expire(h, items[i].TTL)
		} else {
			h.expireAt = time.Time{}
		}
		m.dropEmpty(fk)
	}
	return nil
}

// encodedFeatures is one FeatureRecord ready to write.
type encodedFeatures struct {
	key string
	set [][2]string
	del []string
}

// checkFeatures validates r without encoding it.
func checkFeatures(r *FeatureRecord) error {
	if err := checkID("customer id", r.CustomerID, true); err != nil {
		return err
	}
	for name, v := range r.Features {
		if err := checkID("feature name", name, true); err != nil {
			return err
		}
		if v == nil {
			continue
		}
		if _, err := featureValue(name, v); err != nil {
			return err
		}
	}
	return nil
}

func encodeFeatures(r *FeatureRecord) (encodedFeatures, error) {
	if err := checkID("customer id", r.CustomerID, true); err != nil {
		return encodedFeatures{}, err
	}
	e := encodedFeatures{key: key(keyFeatures, bucketOf(r.CustomerID), r.CustomerID, ""), set: make([][2]string, 0, len(r.Features))}
	for name, v := range r.Features {
		if v == nil {
			if err := checkID("feature name", name, true); err != nil {
				return encodedFeatures{}, err
			}
			e.del = append(e.del, name)
			continue
		}
		s, err := featureValue(name, v)
		if err != nil {
			return encodedFeatures{}, err
		}
		e.set = append(e.set, [2]string{name, s})
	}
	return e, nil
}

// ScanAudit implements the store's ScanAudit: fn sees every audit entry, bucket by bucket,
// oldest first. It is called without the store's lock held.
func (m *Memory) ScanAudit(ctx context.Context, fn func(decisionID string, record []byte) error) error {
	if err := m.lock(ctx, "scan audit"); err != nil {
		return err
	}
	var all []auditEntry
	for b := range m.audit {
		all = append(all, m.audit[b]...)
	}
	m.mu.Unlock()
	for _, e := range all {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scan audit: %w: %w", ErrUnavailable, err)
		}
		if err := fn(e.decisionID, slices.Clone(e.record)); err != nil {
			return err
		}
	}
	return nil
}

// Ping reports ErrUnavailable once the store is closed.
func (m *Memory) Ping(ctx context.Context) error {
	if err := m.lock(ctx, "ping"); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// Close closes the store; later calls fail with ErrUnavailable.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.keys = nil
	return nil
}

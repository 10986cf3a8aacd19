package featurestore

import (
	"context"
	"fmt"
	"slices"
)

// Decided is a decision that was answered without the store (degraded: the store was down or
// too slow) and is recorded afterwards with AppendDecision, from the server's audit spool.
type Decided struct {
	CustomerID string
	EventID    string
	DecisionID string
	// Record is the encoded arbiterv1.DecisionRecord.
	Record []byte
}

// decidedArgs are the keys of a Decided.
type decidedArgs struct {
	bucket bucket
	record string // decision key
}

func prepareDecided(d *Decided) (decidedArgs, error) {
	var a decidedArgs
	if err := checkID("customer id", d.CustomerID, true); err != nil {
		return a, err
	}
	if err := checkID("event id", d.EventID, true); err != nil {
		return a, err
	}
	b, err := bucketOfDecisionID(d.DecisionID)
	if err != nil {
		return a, fmt.Errorf("%w: decision id %q is not one NewDecisionID makes", ErrInvalid, d.DecisionID)
	}
	if b != bucketOf(d.CustomerID) {
		return a, fmt.Errorf("%w: decision id %q is not of the customer's bucket", ErrInvalid, d.DecisionID)
	}
	if len(d.Record) == 0 || len(d.Record) > maxRecordBytes {
		return a, fmt.Errorf("%w: record is %d bytes, want 1 to %d", ErrInvalid, len(d.Record), maxRecordBytes)
	}
	return decidedArgs{bucket: b, record: key(keyDecision, b, "", d.DecisionID)}, nil
}

// AppendDecision records a decision made without the store, atomically: its record (kept for
// the retention from now, as Commit keeps records) and its audit entry in the bucket's audit
// stream (so the audit exporter and the archive relay deliver it like any other). It does not
// make the decision its event's idempotent answer: a degraded answer was made without the
// customer's state, and the event resent is decided anew. It writes no state (the decision had
// no effects) and nothing to the customer's recent decisions. When the decision's record is stored already (it was
// appended before), it writes nothing and returns duplicate true, so appending again is safe.
func (r *Redis) AppendDecision(ctx context.Context, d *Decided) (duplicate bool, err error) {
	a, err := prepareDecided(d)
	if err != nil {
		return false, fmt.Errorf("append decision: %w", err)
	}
	keys := []string{a.record, key(keyAudit, a.bucket, "", "")}
	_, status, err := r.runStatus(ctx, appendScript, "append decision", a.record, keys, d.Record, d.DecisionID,
		r.retentionArg, r.retentionArg)
	if err != nil {
		return false, err
	}
	switch status {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("append decision %s: unexpected status %d", a.record, status)
}

// AppendDecision implements the store's AppendDecision (see Redis.AppendDecision).
func (m *Memory) AppendDecision(ctx context.Context, d *Decided) (duplicate bool, err error) {
	a, err := prepareDecided(d)
	if err != nil {
		return false, fmt.Errorf("append decision: %w", err)
	}
	if err := m.lock(ctx, "append decision"); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	if m.exists(a.record) {
		return true, nil
	}
	rv := m.put(a.record, memString)
	rv.str = string(d.Record)
	m.expire(rv, m.opts.retention)
	m.appendAudit(a.bucket, d.DecisionID, d.Record)
	return false, nil
}

// exists reports whether key holds a live value of any kind (Redis's EXISTS).
func (m *Memory) exists(key string) bool {
	v := m.keys[key]
	if v != nil && !v.expireAt.IsZero() && !m.opts.clock().Before(v.expireAt) {
		delete(m.keys, key)
		return false
	}
	return v != nil
}

// appendAudit adds an entry to bucket b's audit trail and drops the entries older than the
// retention, as the Redis store's streams do.
func (m *Memory) appendAudit(b bucket, decisionID string, record []byte) {
	now := m.opts.clock()
	au := &m.audit[b]
	old := 0
	for old < len(*au) && now.Sub((*au)[old].at) > m.opts.retention {
		old++
	}
	if old > 0 {
		clear((*au)[:old]) // the records, for the collector
		*au = (*au)[old:]
	}
	*au = append(*au, auditEntry{decisionID: decisionID, record: slices.Clone(record), at: now})
}

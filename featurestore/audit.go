package featurestore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The audit stream entry fields. The commit script writes the decision id only: the record
// itself is the decision key's value, written in the same script, so Redis holds each record
// once. Entries written by earlier versions also carry the record ("r").
//
// An outcome reported for a decision is an entry of its own, with the outcome ("o") and its
// times ("v", as the outcomes hash stores them): the archive takes outcomes from the same
// outbox.
const (
	auditFieldDecisionID = "d"
	auditFieldRecord     = "r"
	auditFieldOutcome    = "o"
	auditFieldOutcomeAt  = "v"
)

// Audit export defaults.
const (
	// DefaultAuditGroup is the consumer group of the audit exporter.
	DefaultAuditGroup = "arbiter-audit-export"
	// DefaultAuditConsumer is the consumer name inside the group. A restarted exporter with
	// the same name gets its own unacknowledged entries again.
	DefaultAuditConsumer = "exporter"
	// DefaultAuditBatch is how many entries the exporter reads from each bucket stream at once.
	DefaultAuditBatch = 500
	// DefaultAuditPoll is how long Run waits between passes that found nothing.
	DefaultAuditPoll = 200 * time.Millisecond
	// DefaultAuditClaimIdle is how long an entry delivered to another consumer of the group
	// stays unacknowledged before the exporter claims it.
	DefaultAuditClaimIdle = time.Minute
)

// auditBuckets is the number of bucket streams, "{b:00}:audit" to "{b:ff}:audit".
const auditBuckets = 256

// AuditEntry is one entry of the audit trail: the decision id and the encoded
// arbiterv1.DecisionRecord that the decision's commit wrote, or, for an outcome reported
// later, the decision id and the Outcome (Record is then nil).
type AuditEntry struct {
	DecisionID string
	Record     []byte
	Outcome    *StoredOutcome
}

// AuditSink receives exported audit entries. WriteAudit must have made the entries durable
// when it returns nil: the exporter then acknowledges them and they are not delivered again.
// Entries can be delivered more than once (after a crash between the write and the
// acknowledgement), so a sink deduplicates by decision id.
type AuditSink interface {
	WriteAudit(ctx context.Context, entries []AuditEntry) error
}

// AuditStats counts what an export did.
type AuditStats struct {
	// Delivered is the number of entries handed to the sink (re-deliveries included).
	Delivered int
	// Lost is the number of entries that were delivered to the group before but trimmed from
	// the stream before they were acknowledged. Streams drop only the entries older than the
	// store's retention (WithRetention), so a non-zero value means the export fell behind by
	// more than the retention.
	Lost int
	// Expired is the number of entries whose decision record had expired (the store's
	// retention, WithRetention) before the entry was exported: the record is gone. A non-zero
	// value means the exporter fell behind the retention.
	Expired int
	// Erased is the number of entries whose decision was erased (EraseCustomer) before the
	// entry was exported: the record is gone by design, and nothing is delivered for it.
	Erased int
	// Trimmed is the number of exported entries removed from the streams by the retention.
	Trimmed int
}

// AuditExporter ships the audit trail from Redis to a sink, at least once. It reads every
// bucket's audit stream with a Redis consumer group (XREADGROUP), hands each batch to the sink,
// and acknowledges it (XACK) only after the sink wrote it; so it resumes where it stopped, and
// entries that were delivered but not acknowledged (the exporter died) are delivered again.
// It works on a single Redis and on a Redis Cluster: each bucket stream lives in one slot.
type AuditExporter struct {
	rdb  redis.UniversalClient
	sink AuditSink
	o    auditOptions

	// pending[b] is true while bucket b's own unacknowledged entries (history id "0") have
	// not all been re-read.
	pending  [auditBuckets]bool
	ready    bool
	lastTrim time.Time
}

// AuditOption configures an AuditExporter.
type AuditOption func(*auditOptions)

type auditOptions struct {
	group     string
	consumer  string
	batch     int64
	poll      time.Duration
	claimIdle time.Duration
	retention time.Duration
	now       func() time.Time
	drop      bool
}

// WithAuditGroup sets the consumer group name (default DefaultAuditGroup). Exporters with
// different groups each receive every entry.
func WithAuditGroup(name string) AuditOption {
	return func(o *auditOptions) {
		if name != "" {
			o.group = name
		}
	}
}

// WithAuditConsumer sets the consumer name (default DefaultAuditConsumer).
func WithAuditConsumer(name string) AuditOption {
	return func(o *auditOptions) {
		if name != "" {
			o.consumer = name
		}
	}
}

// WithAuditBatch sets how many entries are read from each bucket stream per round trip
// (default 500).
func WithAuditBatch(n int) AuditOption {
	return func(o *auditOptions) {
		if n > 0 {
			o.batch = int64(n)
		}
	}
}

// WithAuditPoll sets how long Run waits after a pass that found nothing (default 200 ms).
func WithAuditPoll(d time.Duration) AuditOption {
	return func(o *auditOptions) {
		if d > 0 {
			o.poll = d
		}
	}
}

// WithAuditRetention removes exported entries older than d from the streams (XTRIM MINID),
// never an entry the group has not acknowledged. Zero (the default) keeps them until the
// store drops them, once they are older than its record retention.
func WithAuditRetention(d time.Duration) AuditOption {
	return func(o *auditOptions) { o.retention = max(d, 0) }
}

// WithAuditDropRecords makes the exporter delete each exported decision's record from the
// store once the sink has it and the entry is acknowledged: for a sink that is the system of
// record (the archive), so that Redis keeps, within the replay window, only the event's
// decision id. Load and Commit then report a repeated event's decision as Loaded.ArchivedID /
// Committed.ArchivedID, and GetDecision finds no record: the caller reads the archive. Use it
// with one sink only: another group's exporter would find the records gone.
func WithAuditDropRecords() AuditOption { return func(o *auditOptions) { o.drop = true } }

// WithAuditClaimIdle sets how long entries delivered to another consumer of the group stay
// unacknowledged before this exporter claims them (default DefaultAuditClaimIdle).
func WithAuditClaimIdle(d time.Duration) AuditOption {
	return func(o *auditOptions) {
		if d > 0 {
			o.claimIdle = d
		}
	}
}

// WithAuditClock sets the clock used for retention (default time.Now).
func WithAuditClock(now func() time.Time) AuditOption {
	return func(o *auditOptions) { o.now = now }
}

// AuditExporter returns an exporter of r's audit trail into sink (see NewAuditExporter).
func (r *Redis) AuditExporter(sink AuditSink, opts ...AuditOption) *AuditExporter {
	return NewAuditExporter(r.client, sink, opts...)
}

// NewAuditExporter returns an exporter reading the audit streams through rdb (a *redis.Client
// or *redis.ClusterClient) into sink.
func NewAuditExporter(rdb redis.UniversalClient, sink AuditSink, opts ...AuditOption) *AuditExporter {
	o := auditOptions{
		group:     DefaultAuditGroup,
		consumer:  DefaultAuditConsumer,
		batch:     DefaultAuditBatch,
		poll:      DefaultAuditPoll,
		claimIdle: DefaultAuditClaimIdle,
		now:       time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	e := &AuditExporter{rdb: rdb, sink: sink, o: o}
	e.rereadPending()
	return e
}

// auditStreamKey is bucket b's audit stream.
func auditStreamKey(b int) string { return key(keyAudit, bucket(b), "", "") }

// Run exports until ctx ends, polling the streams, and returns the totals. It returns nil when
// ctx ends and an error wrapping ErrUnavailable when Redis fails; the caller may call Run again.
func (e *AuditExporter) Run(ctx context.Context) (AuditStats, error) {
	var total AuditStats
	for {
		s, err := e.Drain(ctx)
		total.Delivered += s.Delivered
		total.Lost += s.Lost
		total.Expired += s.Expired
		total.Erased += s.Erased
		total.Trimmed += s.Trimmed
		if ctx.Err() != nil {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		t := time.NewTimer(e.o.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return total, nil
		case <-t.C:
		}
	}
}

// Drain exports every entry that is in the streams when it starts, then returns. It first
// re-reads the entries this consumer was given but did not acknowledge, then claims entries
// that other consumers of the group left unacknowledged for a minute, then reads new entries,
// batch by batch, until every bucket is read up to the last entry it held when Drain began.
// Entries appended while Drain runs may be exported too, but Drain does not chase them: under
// traffic that appends faster than the sink writes, it still returns.
func (e *AuditExporter) Drain(ctx context.Context) (AuditStats, error) {
	var st AuditStats
	if err := e.ensureGroups(ctx); err != nil {
		return st, err
	}
	if err := e.claim(ctx, &st); err != nil {
		return st, err
	}
	until, err := e.lastIDs(ctx)
	if err != nil {
		return st, err
	}
	var done [auditBuckets]bool
	for {
		more, err := e.pass(ctx, &st, &until, &done)
		if err != nil {
			return st, err
		}
		if !more {
			break
		}
	}
	if err := e.trim(ctx, &st); err != nil {
		return st, err
	}
	return st, nil
}

// lastIDs returns the id of each bucket stream's last entry ("" when the stream is empty or
// missing): where a Drain that starts now stops.
func (e *AuditExporter) lastIDs(ctx context.Context) ([auditBuckets]string, error) {
	var last [auditBuckets]string
	cmds, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range auditBuckets {
			p.XRevRangeN(ctx, auditStreamKey(b), "+", "-", 1)
		}
		return nil
	})
	if err != nil && len(cmds) == 0 {
		return last, auditErr("read audit stream ends", err)
	}
	for b, c := range cmds {
		msgs, err := c.(*redis.XMessageSliceCmd).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return last, auditErr("read audit stream ends", err)
		}
		if len(msgs) > 0 {
			last[b] = msgs[0].ID
		}
	}
	return last, nil
}

// ensureGroups creates the consumer group on every bucket stream (from the stream's start,
// creating empty streams), once per exporter, or again after Redis lost them.
func (e *AuditExporter) ensureGroups(ctx context.Context) error {
	if e.ready {
		return nil
	}
	cmds, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range auditBuckets {
			p.XGroupCreateMkStream(ctx, auditStreamKey(b), e.o.group, "0")
		}
		return nil
	})
	for _, c := range cmds {
		if err := c.Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return auditErr("create consumer groups", err)
		}
	}
	if err != nil && len(cmds) == 0 {
		return auditErr("create consumer groups", err)
	}
	e.ready = true
	return nil
}

// pass reads one batch from every bucket stream that is not done in one pipeline, writes it to
// the sink and acknowledges it, and reports whether another pass is needed. A bucket is done
// once its own unacknowledged entries are re-read and a read of new entries returned less
// than a batch or reached until[b], the bucket's last entry when the Drain began.
func (e *AuditExporter) pass(ctx context.Context, st *AuditStats, until *[auditBuckets]string, done *[auditBuckets]bool) (bool, error) {
	var buckets []int
	cmds, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range auditBuckets {
			if done[b] {
				continue
			}
			buckets = append(buckets, b)
			id := ">"
			if e.pending[b] {
				id = "0"
			}
			p.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group:    e.o.group,
				Consumer: e.o.consumer,
				Streams:  []string{auditStreamKey(b), id},
				Count:    e.o.batch,
				Block:    -1,
			})
		}
		return nil
	})
	if err != nil && len(cmds) == 0 {
		return false, auditErr("read audit streams", err)
	}
	var entries []AuditEntry
	acks := make([][]string, auditBuckets)
	read := 0
	for i, c := range cmds {
		b := buckets[i]
		streams, err := c.(*redis.XStreamSliceCmd).Result()
		switch {
		case errors.Is(err, redis.Nil):
			streams = nil
		case isNoGroup(err):
			// The stream or its group is gone (Redis restarted without persistence, or
			// someone deleted it): create it again and read the bucket on the next pass.
			e.ready = false
			continue
		case err != nil:
			return false, auditErr("read audit streams", err)
		}
		got, last := 0, ""
		for _, s := range streams {
			for _, m := range s.Messages {
				got++
				last = m.ID
				acks[b] = append(acks[b], m.ID)
				if m.Values == nil { // trimmed away while pending
					st.Lost++
					continue
				}
				entry, err := auditEntryOf(m)
				if err != nil {
					return false, err
				}
				entries = append(entries, entry)
			}
		}
		switch {
		case e.pending[b]:
			// The bucket's history is re-read when a read of it comes back empty; its new
			// entries are read from the next pass on.
			e.pending[b] = got > 0
		case int64(got) < e.o.batch || (until[b] != "" && !streamIDLess(last, until[b])):
			done[b] = true
		}
		read += got
	}
	entries, err = fetchRecords(ctx, e.rdb, entries, st)
	if err != nil {
		e.rereadPending()
		return false, err
	}
	if len(entries) > 0 {
		if err := e.sink.WriteAudit(ctx, entries); err != nil {
			// The entries stay pending in the group: read them again from the history.
			e.rereadPending()
			return false, fmt.Errorf("audit sink: %w", err)
		}
		st.Delivered += len(entries)
	}
	if read > 0 {
		if err := e.ack(ctx, acks); err != nil {
			e.rereadPending()
			return false, err
		}
	}
	if e.o.drop && len(entries) > 0 {
		if err := e.dropRecords(ctx, entries); err != nil {
			return false, err
		}
	}
	if !e.ready {
		if err := e.ensureGroups(ctx); err != nil {
			return false, err
		}
	}
	for b := range done {
		if !done[b] {
			return true, nil
		}
	}
	return false, nil
}

// dropRecords deletes the records of the decisions among entries, which the sink has and
// which are acknowledged (a crash before this leaves them to expire with the replay window).
func (e *AuditExporter) dropRecords(ctx context.Context, entries []AuditEntry) error {
	_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, en := range entries {
			if en.Outcome != nil {
				continue
			}
			if b, err := bucketOfDecisionID(en.DecisionID); err == nil {
				p.Unlink(ctx, key(keyDecision, b, "", en.DecisionID))
			}
		}
		return nil
	})
	if err != nil {
		return auditErr("drop archived records", err)
	}
	return nil
}

// rereadPending makes the next pass read every bucket's unacknowledged entries first.
func (e *AuditExporter) rereadPending() {
	for b := range e.pending {
		e.pending[b] = true
	}
}

func (e *AuditExporter) ack(ctx context.Context, acks [][]string) error {
	_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b, ids := range acks {
			if len(ids) > 0 {
				p.XAck(ctx, auditStreamKey(b), e.o.group, ids...)
			}
		}
		return nil
	})
	if err != nil {
		return auditErr("acknowledge audit entries", err)
	}
	return nil
}

// claim moves to this consumer the entries that other consumers of the group have held
// unacknowledged for longer than the claim idle time; the next pass re-reads them. Pending
// entries that were trimmed from the stream are dropped by Redis and counted as lost.
func (e *AuditExporter) claim(ctx context.Context, st *AuditStats) error {
	cmds, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range auditBuckets {
			p.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
				Stream: auditStreamKey(b), Group: e.o.group, Consumer: e.o.consumer,
				MinIdle: e.o.claimIdle, Start: "0", Count: e.o.batch,
			})
		}
		return nil
	})
	if err != nil && len(cmds) == 0 {
		return auditErr("claim idle audit entries", err)
	}
	for b, c := range cmds {
		msgs, _, deleted, err := c.(*redis.XAutoClaimWithDeletedCmd).Result()
		// Redis drops from the group's pending list the entries that were trimmed away.
		st.Lost += len(deleted)
		switch {
		case err == nil && len(msgs) > 0:
			e.pending[b] = true
		case err != nil && !errors.Is(err, redis.Nil) && !isNoGroup(err):
			return auditErr("claim idle audit entries", err)
		}
	}
	return nil
}

// trim applies the retention: at most once a minute, each stream drops the entries older than
// the retention that the group has acknowledged.
func (e *AuditExporter) trim(ctx context.Context, st *AuditStats) error {
	now := e.o.now()
	if e.o.retention == 0 || now.Sub(e.lastTrim) < time.Minute {
		return nil
	}
	cutoff := now.Add(-e.o.retention).UnixMilli()
	infos, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range auditBuckets {
			p.XPending(ctx, auditStreamKey(b), e.o.group)
			p.XInfoGroups(ctx, auditStreamKey(b))
		}
		return nil
	})
	if err != nil && len(infos) == 0 {
		return auditErr("read audit groups", err)
	}
	var trims []*redis.IntCmd
	_, err = e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range auditBuckets {
			minID := strconv.FormatInt(cutoff, 10) + "-0"
			if pend, err := infos[2*b].(*redis.XPendingCmd).Result(); err == nil && pend.Count > 0 {
				minID = minStreamID(minID, pend.Lower)
			}
			groups, err := infos[2*b+1].(*redis.XInfoGroupsCmd).Result()
			if err != nil {
				continue // no stream: nothing to trim
			}
			found := false
			for _, g := range groups {
				// Never trim past what any group of the stream has not read.
				minID = minStreamID(minID, nextStreamID(g.LastDeliveredID))
				if g.Name == e.o.group {
					found = true
				}
			}
			if found {
				trims = append(trims, p.XTrimMinID(ctx, auditStreamKey(b), minID))
			}
		}
		return nil
	})
	if err != nil {
		return auditErr("trim audit streams", err)
	}
	for _, c := range trims {
		st.Trimmed += int(c.Val())
	}
	e.lastTrim = now
	return nil
}

// auditEntryOf returns the entry of a stream message: its decision id, and its record when the
// message carries it (entries of earlier versions); fetchRecords reads the others'.
func auditEntryOf(m redis.XMessage) (AuditEntry, error) {
	id, ok := m.Values[auditFieldDecisionID].(string)
	if !ok || id == "" {
		return AuditEntry{}, fmt.Errorf("%w: audit entry %s: no decision id", ErrCorrupt, m.ID)
	}
	e := AuditEntry{DecisionID: id}
	if o, ok := m.Values[auditFieldOutcome].(string); ok {
		v, _ := m.Values[auditFieldOutcomeAt].(string)
		outs, err := decodeOutcomes("audit entry "+m.ID, []string{o, v})
		if err != nil {
			return AuditEntry{}, err
		}
		e.Outcome = &outs[0]
		return e, nil
	}
	if rec, ok := m.Values[auditFieldRecord].(string); ok {
		if len(rec) > maxRecordBytes {
			return AuditEntry{}, fmt.Errorf("%w: audit entry %s: record of %d bytes", ErrCorrupt, m.ID, len(rec))
		}
		e.Record = []byte(rec)
	} else if _, err := bucketOfDecisionID(id); err != nil {
		// The record is read from the decision key, which the id names.
		return AuditEntry{}, fmt.Errorf("%w: audit entry %s: decision id %q", ErrCorrupt, m.ID, id)
	}
	return e, nil
}

// fetchRecords reads, in one pipeline, the decision records of the entries that do not carry
// theirs, and returns the entries that have a record: an entry whose record is gone is dropped
// and counted in st.Erased when its decision was erased (the bucket's erased set names it; one
// more round trip, only when records are missing), else in st.Expired.
func fetchRecords(ctx context.Context, rdb redis.UniversalClient, entries []AuditEntry, st *AuditStats) ([]AuditEntry, error) {
	var need []int
	for i := range entries {
		if entries[i].Record == nil && entries[i].Outcome == nil {
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return entries, nil
	}
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range need {
			b, _ := bucketOfDecisionID(entries[i].DecisionID) // checked by auditEntryOf
			p.Get(ctx, key(keyDecision, b, "", entries[i].DecisionID))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, auditErr("read decision records", err)
	}
	var gone []int
	for k, i := range need {
		rec, err := cmds[k].(*redis.StringCmd).Result()
		switch {
		case errors.Is(err, redis.Nil):
			gone = append(gone, i)
			continue
		case err != nil:
			return nil, auditErr("read decision records", err)
		case len(rec) > maxRecordBytes:
			return nil, fmt.Errorf("%w: decision record %s of %d bytes", ErrCorrupt, entries[i].DecisionID, len(rec))
		}
		entries[i].Record = []byte(rec)
	}
	if len(gone) > 0 {
		if err := countGone(ctx, rdb, entries, gone, st); err != nil {
			return nil, err
		}
	}
	out := entries[:0]
	for _, e := range entries {
		if e.Record != nil || e.Outcome != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// countGone counts the entries at gone, whose records are gone, as erased or expired.
func countGone(ctx context.Context, rdb redis.UniversalClient, entries []AuditEntry, gone []int, st *AuditStats) error {
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range gone {
			b, _ := bucketOfDecisionID(entries[i].DecisionID) // checked by auditEntryOf
			p.ZScore(ctx, key(keyErased, b, "", ""), entries[i].DecisionID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return auditErr("read erased decisions", err)
	}
	for _, c := range cmds {
		switch err := c.Err(); {
		case err == nil:
			st.Erased++
		case errors.Is(err, redis.Nil):
			st.Expired++
		default:
			return auditErr("read erased decisions", err)
		}
	}
	return nil
}

// minStreamID returns the smaller of two stream ids "ms-seq".
func minStreamID(a, b string) string {
	if streamIDLess(b, a) {
		return b
	}
	return a
}

// nextStreamID returns the id right after id.
func nextStreamID(id string) string {
	ms, seq := splitStreamID(id)
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
}

// streamIDLess reports whether stream id a comes before stream id b.
func streamIDLess(a, b string) bool {
	am, as := splitStreamID(a)
	bm, bs := splitStreamID(b)
	return am < bm || (am == bm && as < bs)
}

func splitStreamID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}

func isNoGroup(err error) bool { return redis.HasErrorPrefix(err, "NOGROUP") }

// auditErr wraps a Redis failure as ErrUnavailable.
func auditErr(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

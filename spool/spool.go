package spool

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// File name extensions of a spool's segments.
const (
	// SegmentExt ends the name of a segment whose records wait for the store.
	SegmentExt = ".seg"
	// RejectedExt ends the name of a segment kept aside because the store refused a record.
	RejectedExt = ".rejected"
)

// ReadDir returns the records waiting in the segments of the spool in dir, oldest first, as
// the drain would read them, without opening the spool: for operators' tools and tests.
func ReadDir(dir string) ([][]byte, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+SegmentExt))
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out [][]byte
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		frames, _ := parseFrames(data)
		out = append(out, frames...)
	}
	return out, nil
}

// Spool defaults.
const (
	// DefaultSegmentBytes is the size at which the spool starts a new segment.
	DefaultSegmentBytes = 8 << 20
	// DefaultDrainInterval is how often the drain looks for spooled records.
	DefaultDrainInterval = time.Second
	// DefaultMaxBytes is the most bytes of records the spool holds for the store: at a
	// few KB per record, hundreds of thousands of degraded decisions.
	DefaultMaxBytes = 1 << 30
)

const (
	spoolFrameHeader = 8
	// spoolMaxRecord is the largest record the spool takes: the store's own limit.
	spoolMaxRecord = 1 << 20
	// spoolMaxWaiting bounds the bytes of records waiting for the disk; beyond it Append
	// refuses at once.
	spoolMaxWaiting = 32 << 20
	// spoolDrainBatch is how many records the drain stores before it pauses for
	// spoolDrainPause, so that it never holds more than one of the store's connections for
	// long.
	spoolDrainBatch = 64
	spoolDrainPause = 10 * time.Millisecond
	// spoolDrainCallTimeout bounds one store call of the drain.
	spoolDrainCallTimeout = time.Second
)

// errSpoolClosed is Append's error after Close.
var errSpoolClosed = errors.New("audit spool closed")

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// DecisionAppender is what the spool's drain needs from the store: featurestore.Redis and
// featurestore.Memory satisfy it.
type DecisionAppender interface {
	AppendDecision(ctx context.Context, d *featurestore.Decided) (duplicate bool, err error)
}

var (
	_ DecisionAppender = (*featurestore.Redis)(nil)
	_ DecisionAppender = (*featurestore.Memory)(nil)
)

// DrainInterval is how often the owner of the spool should call Drain (WithDrainInterval).
func (sp *Spool) DrainInterval() time.Duration { return sp.opts.drainInterval }

// Spool is the audit spool: an append-only, fsynced log of the records of degraded decisions
// in a local directory, and the drain that ships them into the store's audit trail once the
// store is back (see Server.RunSpoolDrain). Appends are group-committed: one writer goroutine
// writes everything appended since its last write and fsyncs once, and each Append waits for
// the fsync of its own record. It is safe for concurrent use; open it with Open and
// close it with Close.
type Spool struct {
	dir  string
	opts options
	lock *os.File // LOCK, flocked while the spool is open

	mu      sync.Mutex
	batch   *spoolBatch // records waiting for the writer
	closed  bool
	spare   []byte        // the writer's previous batch buffer, reused
	wake    chan struct{} // capacity 1: a batch is waiting
	quit    chan struct{} // closed by Close
	stopped chan struct{} // closed when the writer returned

	fileMu  sync.Mutex // the active segment and the segment list, for the writer and the drain
	active  *os.File   // nil until the next write
	name    string     // active segment's file name
	size    int64      // active segment's bytes written and synced
	seq     uint64     // last segment sequence used
	sealed  []segment  // segments no longer written to, oldest first
	drainMu sync.Mutex // one drain at a time
	// done is how far the drain got in the oldest sealed segment, so that a drain that stopped
	// part way resumes without sending those records again.
	done struct {
		name           string
		next, rejected int
	}

	pending atomic.Int64 // bytes of records not drained yet
	metrics spoolMetrics
}

// segment is a sealed segment: its file name and the bytes it counts in the pending gauge.
type segment struct {
	name  string
	bytes int64
}

// spoolBatch is the records one write of the writer puts on disk; its waiters learn the
// result when done is closed.
type spoolBatch struct {
	buf  []byte
	n    int
	done chan struct{}
	err  error
}

type spoolMetrics struct {
	spooled metric.Int64Counter // arbiter.audit.spool.records
	drained metric.Int64Counter // arbiter.audit.spool.drained
	errors  metric.Int64Counter // arbiter.audit.spool.errors{op}

	opWrite, opRead, opDrain, opReject metric.MeasurementOption
}

// Option configures a Spool.
type Option func(*options)

type options struct {
	meterProvider metric.MeterProvider
	logger        *slog.Logger
	segmentBytes  int64
	drainInterval time.Duration
	maxBytes      int64
}

// WithMeterProvider sets the provider of the spool's instruments (default: no metrics):
// the counters arbiter.audit.spool.records (records spooled), arbiter.audit.spool.drained
// (records now in the store's audit trail) and arbiter.audit.spool.errors (attribute "op":
// write, read, drain, reject), and the gauge arbiter.audit.spool.pending (bytes of records
// not drained yet).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithLogger sets the logger of the spool and its drain (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithSegmentBytes sets the size at which the spool starts a new segment (default
// DefaultSegmentBytes). Values under 1 are ignored.
func WithSegmentBytes(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.segmentBytes = n
		}
	}
}

// WithMaxBytes sets the most bytes of records the spool holds until the store takes them
// (default DefaultMaxBytes). A full spool refuses records, so the degraded decisions
// that need one are answered UNAVAILABLE, as when the disk is full, but before it is: the
// spool does not take the host's disk. Values under 1 are ignored.
func WithMaxBytes(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxBytes = n
		}
	}
}

// WithDrainInterval sets how often Server.RunSpoolDrain looks for spooled records
// (default DefaultDrainInterval). Values under 1 are ignored.
func WithDrainInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.drainInterval = d
		}
	}
}

// Open opens the spool in dir, creating the directory (mode 0700) when it does not exist.
// It fails when dir cannot be written or another process has the spool open. Records spooled
// before (by an earlier process) are kept for the drain; the torn tail of the newest segment,
// left by a crash in the middle of a write, is cut off.
func Open(dir string, opts ...Option) (*Spool, error) {
	o := options{
		meterProvider: metricnoop.NewMeterProvider(),
		logger:        slog.New(slog.DiscardHandler),
		segmentBytes:  DefaultSegmentBytes,
		drainInterval: DefaultDrainInterval,
		maxBytes:      DefaultMaxBytes,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if dir == "" {
		return nil, errors.New("audit spool: no directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool %s is not writable: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit spool %s is not writable: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("audit spool %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("audit spool %s: lock: %w", dir, err)
	}
	sp := &Spool{
		dir: dir, opts: o, lock: lock,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{}),
	}
	sp.batch = &spoolBatch{done: make(chan struct{})}
	if err := sp.probe(); err != nil {
		sp.unlock()
		return nil, err
	}
	if err := sp.recover(); err != nil {
		sp.unlock()
		return nil, err
	}
	if err := sp.newMetrics(); err != nil {
		sp.unlock()
		return nil, err
	}
	go sp.run()
	return sp, nil
}

// probe checks that a file can be created, written and synced in the spool's directory.
func (sp *Spool) probe() error {
	name := filepath.Join(sp.dir, ".probe")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		_, err = f.Write([]byte{0})
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(name); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("audit spool %s is not writable: %w", sp.dir, err)
	}
	return nil
}

// recover lists the segments an earlier process left, removes empty ones and cuts the torn
// tail of the newest.
func (sp *Spool) recover() error {
	entries, err := os.ReadDir(sp.dir)
	if err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	var names []string
	for _, e := range entries {
		seq, ok := segmentSeq(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		sp.seq = max(sp.seq, seq)
		names = append(names, e.Name())
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(a, b) })
	for i, name := range names {
		path := filepath.Join(sp.dir, name)
		info, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("audit spool: %w", err)
		}
		size := info.Size()
		if i == len(names)-1 && size > 0 {
			if size, err = sp.cutTornTail(path, size); err != nil {
				return err
			}
		}
		if size == 0 {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("audit spool: %w", err)
			}
			continue
		}
		sp.sealed = append(sp.sealed, segment{name, size})
		sp.pending.Add(size)
	}
	return syncDir(sp.dir)
}

// cutTornTail truncates the segment at path after its last whole frame and returns its new
// size.
func (sp *Spool) cutTornTail(path string, size int64) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("audit spool: %w", err)
	}
	_, good := parseFrames(data)
	if int64(good) == size {
		return size, nil
	}
	sp.opts.logger.Warn("audit spool: cutting the torn tail of a segment (a write interrupted by a crash)",
		slog.String("segment", filepath.Base(path)), slog.Int("kept_bytes", good), slog.Int64("cut_bytes", size-int64(good)))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("audit spool: %w", err)
	}
	err = f.Truncate(int64(good))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("audit spool: cut torn tail: %w", err)
	}
	return int64(good), nil
}

func (sp *Spool) newMetrics() error {
	m := sp.opts.meterProvider.Meter(instrumentationName)
	var err error
	ms := &sp.metrics
	if ms.spooled, err = m.Int64Counter("arbiter.audit.spool.records",
		metric.WithDescription("Records of degraded decisions written to the local audit spool."), metric.WithUnit("{record}")); err != nil {
		return fmt.Errorf("audit spool metrics: %w", err)
	}
	if ms.drained, err = m.Int64Counter("arbiter.audit.spool.drained",
		metric.WithDescription("Spooled records now in the store's audit trail."), metric.WithUnit("{record}")); err != nil {
		return fmt.Errorf("audit spool metrics: %w", err)
	}
	if ms.errors, err = m.Int64Counter("arbiter.audit.spool.errors",
		metric.WithDescription("Audit spool failures, by operation: write (a degraded decision not recorded), read (a torn or corrupt segment), drain (the store refused or failed), reject (a record the store can never take)."),
		metric.WithUnit("{error}")); err != nil {
		return fmt.Errorf("audit spool metrics: %w", err)
	}
	if _, err = m.Int64ObservableGauge("arbiter.audit.spool.pending",
		metric.WithDescription("Bytes of spooled records not yet in the store's audit trail."), metric.WithUnit("By"),
		metric.WithInt64Callback(func(_ context.Context, obs metric.Int64Observer) error {
			obs.Observe(sp.pending.Load())
			return nil
		})); err != nil {
		return fmt.Errorf("audit spool metrics: %w", err)
	}
	op := func(name string) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("op", name)))
	}
	ms.opWrite, ms.opRead, ms.opDrain, ms.opReject = op("write"), op("read"), op("drain"), op("reject")
	// The counters start at zero, so that they are scraped from the start; a measurement's
	// context only carries exemplars and baggage.
	ctx := context.Background()
	ms.spooled.Add(ctx, 0)
	ms.drained.Add(ctx, 0)
	for _, o := range [...]metric.MeasurementOption{ms.opWrite, ms.opRead, ms.opDrain, ms.opReject} {
		ms.errors.Add(ctx, 0, o)
	}
	return nil
}

// Dir returns the spool's directory.
func (sp *Spool) Dir() string { return sp.dir }

// PendingBytes returns the bytes of spooled records not yet in the store's audit trail.
func (sp *Spool) PendingBytes() int64 { return sp.pending.Load() }

// Append writes record (an encoded arbiterv1.DecisionRecord) to the spool and returns once it
// is on disk (fsynced), or with ctx's error when ctx ends first: the record may then still be
// written. It fails at once when the record is empty or larger than the store takes (1 MiB),
// when the spool is closed, when more than 32 MiB of records already wait for the disk, or
// when the record would take the spool past its size limit (WithMaxBytes).
func (sp *Spool) Append(ctx context.Context, record []byte) error {
	if len(record) == 0 || len(record) > spoolMaxRecord {
		return fmt.Errorf("audit spool: record of %d bytes, want 1 to %d", len(record), spoolMaxRecord)
	}
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return errSpoolClosed
	}
	b := sp.batch
	if len(b.buf)+spoolFrameHeader+len(record) > spoolMaxWaiting {
		sp.mu.Unlock()
		sp.metrics.errors.Add(ctx, 1, sp.metrics.opWrite)
		return errors.New("audit spool: too many records waiting for the disk")
	}
	if held := sp.pending.Load() + int64(len(b.buf)+spoolFrameHeader+len(record)); held > sp.opts.maxBytes {
		sp.mu.Unlock()
		sp.metrics.errors.Add(ctx, 1, sp.metrics.opWrite)
		return fmt.Errorf("audit spool: full: %d bytes of records wait for the store, the limit is %d", held-int64(spoolFrameHeader+len(record)), sp.opts.maxBytes)
	}
	b.buf = appendFrame(b.buf, record)
	b.n++
	sp.mu.Unlock()
	select {
	case sp.wake <- struct{}{}:
	default: // the writer is woken already
	}
	select {
	case <-b.done:
		if b.err != nil {
			sp.metrics.errors.Add(ctx, 1, sp.metrics.opWrite)
			return b.err
		}
		sp.metrics.spooled.Add(ctx, 1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the writer: it writes each batch with one fsync until Close.
func (sp *Spool) run() {
	defer close(sp.stopped)
	for {
		select {
		case <-sp.wake:
			sp.flush()
		case <-sp.quit:
			sp.flush()
			return
		}
	}
}

// flush writes the waiting batch, if any, and tells its waiters.
func (sp *Spool) flush() {
	sp.mu.Lock()
	b := sp.batch
	if b.n == 0 {
		sp.mu.Unlock()
		return
	}
	sp.batch = &spoolBatch{buf: sp.spare[:0], done: make(chan struct{})}
	sp.mu.Unlock()

	b.err = sp.write(b.buf)
	if b.err != nil {
		sp.opts.logger.Error("audit spool write failed: degraded decisions are refused until it works",
			slog.Int("records", b.n), slog.Any("err", b.err))
	}
	if cap(b.buf) <= 1<<20 {
		sp.spare = b.buf
	} else {
		sp.spare = nil
	}
	close(b.done)
}

// write appends buf, whole frames, to the active segment and fsyncs it, starting a new segment
// when there is none. After a failed write the segment is cut back to its synced size and
// sealed: the next write starts a new one.
func (sp *Spool) write(buf []byte) error {
	sp.fileMu.Lock()
	defer sp.fileMu.Unlock()
	if sp.active == nil {
		if err := sp.openSegment(); err != nil {
			return err
		}
	}
	_, err := sp.active.Write(buf)
	if err == nil {
		err = sp.active.Sync()
	}
	if err != nil {
		_ = sp.active.Truncate(sp.size) // best effort: a torn frame is ignored when read anyway
		sp.seal()
		return fmt.Errorf("audit spool: write %s: %w", sp.name, err)
	}
	sp.size += int64(len(buf))
	sp.pending.Add(int64(len(buf)))
	if sp.size >= sp.opts.segmentBytes {
		sp.seal()
	}
	return nil
}

// openSegment creates the next segment and makes its name durable.
func (sp *Spool) openSegment() error {
	name := fmt.Sprintf("%016d%s", sp.seq+1, SegmentExt)
	f, err := os.OpenFile(filepath.Join(sp.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool: create segment: %w", err)
	}
	if err := syncDir(sp.dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("audit spool: create segment: %w", err)
	}
	sp.seq++
	sp.active, sp.name, sp.size = f, name, 0
	return nil
}

// seal closes the active segment; one that holds records joins the sealed list. fileMu held.
func (sp *Spool) seal() {
	if sp.active == nil {
		return
	}
	_ = sp.active.Close() // written data was synced; nothing is lost by a failed close
	if sp.size > 0 {
		sp.sealed = append(sp.sealed, segment{sp.name, sp.size})
	} else {
		_ = os.Remove(filepath.Join(sp.dir, sp.name))
	}
	sp.active, sp.name, sp.size = nil, "", 0
}

// Close stops the writer after it wrote the records waiting for it, and releases the
// directory. Later Appends fail. Close does not drain.
func (sp *Spool) Close() error {
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return nil
	}
	sp.closed = true
	sp.mu.Unlock()
	close(sp.quit)
	<-sp.stopped
	sp.fileMu.Lock()
	sp.seal()
	sp.fileMu.Unlock()
	return sp.unlock()
}

func (sp *Spool) unlock() error {
	return sp.lock.Close() // closing the descriptor releases the flock
}

// Drain stores every spooled record in dst, oldest first, and removes each segment once all
// its records are stored: at least once, as a crash before the removal stores them again
// (AppendDecision then writes nothing). It pauses after every 64 records and stops at the
// first store error, returning it with the number of records stored. A record that dst refuses
// as invalid (featurestore.ErrInvalid), or that does not decode, can never be stored: it is
// logged and counted, and its segment is kept as "<name>.rejected" instead of removed.
func (sp *Spool) Drain(ctx context.Context, dst DecisionAppender) (int, error) {
	sp.drainMu.Lock()
	defer sp.drainMu.Unlock()
	total, sealedActive := 0, false
	for {
		sp.fileMu.Lock()
		if len(sp.sealed) == 0 && sp.size > 0 && !sealedActive {
			// The older segments are all stored: take the active one's records too (once,
			// so that a steady stream of appends cannot keep the drain going).
			sp.seal()
			sealedActive = true
		}
		var seg segment
		if len(sp.sealed) > 0 {
			seg = sp.sealed[0]
		}
		sp.fileMu.Unlock()
		if seg.name == "" {
			return total, nil
		}
		n, err := sp.drainSegment(ctx, seg, dst)
		total += n
		if err != nil {
			return total, err
		}
	}
}

// drainSegment stores the records of the oldest sealed segment and then removes it.
func (sp *Spool) drainSegment(ctx context.Context, seg segment, dst DecisionAppender) (int, error) {
	name := seg.name
	path := filepath.Join(sp.dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		sp.metrics.errors.Add(ctx, 1, sp.metrics.opRead)
		return 0, fmt.Errorf("audit spool: read segment: %w", err)
	}
	records, good := parseFrames(data)
	if good != len(data) {
		sp.metrics.errors.Add(ctx, 1, sp.metrics.opRead)
		sp.opts.logger.Error("audit spool: segment has a torn or corrupt frame; the bytes after it are skipped",
			slog.String("segment", name), slog.Int("records", len(records)), slog.Int("skipped_bytes", len(data)-good))
	}
	start, rejected := 0, 0
	if sp.done.name == name {
		start, rejected = sp.done.next, sp.done.rejected
	}
	stored := 0
	for i := start; i < len(records); i++ {
		if i > start && (i-start)%spoolDrainBatch == 0 {
			t := time.NewTimer(spoolDrainPause)
			select {
			case <-ctx.Done():
				t.Stop()
				return stored, ctx.Err()
			case <-t.C:
			}
		}
		err := sp.store(ctx, dst, records[i])
		switch {
		case errors.Is(err, featurestore.ErrInvalid):
			rejected++
			sp.metrics.errors.Add(ctx, 1, sp.metrics.opReject)
			sp.opts.logger.Error("audit spool: the store refused a spooled record; its segment is kept as rejected",
				slog.String("segment", name), slog.Int("record", i), slog.Any("err", err))
		case err != nil:
			sp.metrics.errors.Add(ctx, 1, sp.metrics.opDrain)
			sp.done.name, sp.done.next, sp.done.rejected = name, i, rejected
			return stored, err
		default:
			stored++
			sp.metrics.drained.Add(ctx, 1)
		}
	}
	if rejected > 0 {
		err = os.Rename(path, path+RejectedExt)
	} else {
		err = os.Remove(path)
	}
	if err == nil {
		err = syncDir(sp.dir)
	}
	if err != nil {
		sp.metrics.errors.Add(ctx, 1, sp.metrics.opDrain)
		return stored, fmt.Errorf("audit spool: remove drained segment: %w", err)
	}
	sp.fileMu.Lock()
	sp.sealed = sp.sealed[1:]
	sp.fileMu.Unlock()
	sp.done.name, sp.done.next, sp.done.rejected = "", 0, 0
	sp.pending.Add(-seg.bytes)
	return stored, nil
}

// store appends one spooled record to dst. A record that does not decode is ErrInvalid.
func (sp *Spool) store(ctx context.Context, dst DecisionAppender, raw []byte) error {
	var rec arbiterv1.DecisionRecord
	if err := proto.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("%w: spooled record: %v", featurestore.ErrInvalid, err)
	}
	cctx, cancel := context.WithTimeout(ctx, spoolDrainCallTimeout)
	defer cancel()
	_, err := dst.AppendDecision(cctx, &featurestore.Decided{
		CustomerID: rec.GetCustomerId(), EventID: rec.GetEventId(), DecisionID: rec.GetDecisionId(), Record: raw,
	})
	return err
}

// appendFrame appends record's frame to buf.
func appendFrame(buf, record []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(record)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(record, crc32c))
	return append(buf, record...)
}

// parseFrames returns the records of a segment up to the first frame that is cut short, of a
// length out of range, or fails its checksum, and the number of bytes they take.
func parseFrames(data []byte) ([][]byte, int) {
	var records [][]byte
	off := 0
	for len(data)-off >= spoolFrameHeader {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || n > spoolMaxRecord || len(data)-off-spoolFrameHeader < n {
			break
		}
		rec := data[off+spoolFrameHeader : off+spoolFrameHeader+n]
		if crc32.Checksum(rec, crc32c) != sum {
			break
		}
		records = append(records, rec)
		off += spoolFrameHeader + n
	}
	return records, off
}

// segmentSeq returns the sequence number of a segment file name.
func segmentSeq(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, SegmentExt)
	if !ok || len(base) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 10, 64)
	return n, err == nil
}

// syncDir fsyncs a directory, making the names created or removed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) { // file systems that cannot sync a directory
		return nil
	}
	return err
}

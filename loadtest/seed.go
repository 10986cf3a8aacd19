package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// FeatureRecord is one customer's features to store.
type FeatureRecord struct {
	CustomerID string
	Features   map[string]any
	// TTL expires the customer's features after this long; zero keeps them.
	TTL time.Duration
}

// Sink stores batches of feature records: directly in Redis with pipelined writes, or through
// FeatureService/PutFeatures. Implementations are safe for concurrent use.
type Sink interface {
	WriteBatch(ctx context.Context, recs []FeatureRecord) error
}

// rpcSink writes through PutFeatures, one call per record, the calls of a batch in parallel.
type rpcSink struct {
	clients []arbiterv1.FeatureServiceClient
	next    atomic.Uint64
}

// RPCSink returns a Sink that calls FeatureService/PutFeatures over conns, spreading the
// calls of a batch over them, at most 32 in flight per batch.
func RPCSink(conns []grpc.ClientConnInterface) Sink {
	s := &rpcSink{}
	for _, c := range conns {
		s.clients = append(s.clients, arbiterv1.NewFeatureServiceClient(c))
	}
	return s
}

func (s *rpcSink) WriteBatch(ctx context.Context, recs []FeatureRecord) error {
	const inFlight = 32
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, inFlight)
	for i := range recs {
		req, err := putRequest(&recs[i])
		if err != nil {
			return err
		}
		sem <- struct{}{}
		client := s.clients[s.next.Add(1)%uint64(len(s.clients))]
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := client.PutFeatures(ctx, req); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("put features of %s: %w", req.GetCustomerId(), err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

func putRequest(r *FeatureRecord) (*arbiterv1.PutFeaturesRequest, error) {
	fs := make(map[string]*structpb.Value, len(r.Features))
	for k, v := range r.Features {
		pv, err := structpb.NewValue(v)
		if err != nil {
			return nil, fmt.Errorf("customer %s feature %q: %w", r.CustomerID, k, err)
		}
		fs[k] = pv
	}
	req := &arbiterv1.PutFeaturesRequest{CustomerId: r.CustomerID, Features: fs}
	if r.TTL > 0 {
		req.Ttl = durationpb.New(r.TTL)
	}
	return req, nil
}

// SeedOptions tune Seed and Import. The zero value is usable.
type SeedOptions struct {
	// Batch is the number of records per WriteBatch. Default 500.
	Batch int
	// Writers is the number of batches written at once. Default 4.
	Writers int
	// Progress, when set, is called after each written batch with the records written so far
	// and, for Import, the input bytes consumed so far. Calls may come from several goroutines
	// but never concurrently.
	Progress func(records, bytes int64)
}

func (o *SeedOptions) defaults() {
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Writers <= 0 {
		o.Writers = 4
	}
}

// batch is a unit of work of Seed and Import: records, and the input bytes they came from.
type batch struct {
	recs  []FeatureRecord
	bytes int64
}

// writeAll writes the batches from in with o.Writers writers and returns the first error.
// On error it cancels the rest and drains in.
func writeAll(ctx context.Context, sink Sink, in <-chan batch, o SeedOptions) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		records, byts int64
	)
	for range o.Writers {
		wg.Go(func() {
			for b := range in {
				if ctx.Err() != nil {
					continue
				}
				if err := sink.WriteBatch(ctx, b.recs); err != nil {
					cancel(err)
					continue
				}
				mu.Lock()
				records += int64(len(b.recs))
				byts += b.bytes
				if o.Progress != nil {
					o.Progress(records, byts)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return records, err
	}
	return records, nil
}

// Seed writes the features of synthetic customers 0..n−1 of seed (see NewProfile) to sink and
// returns how many it wrote.
func Seed(ctx context.Context, sink Sink, seed uint64, n int, o SeedOptions) (int64, error) {
	o.defaults()
	in := make(chan batch, o.Writers)
	go func() {
		defer close(in)
		for start := 0; start < n; start += o.Batch {
			b := batch{recs: make([]FeatureRecord, 0, min(o.Batch, n-start))}
			for i := start; i < min(start+o.Batch, n); i++ {
				p := NewProfile(seed, i)
				b.recs = append(b.recs, FeatureRecord{CustomerID: p.ID, Features: p.Features()})
			}
			select {
			case in <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	written, err := writeAll(ctx, sink, in, o)
	if err == nil {
		err = ctx.Err()
	}
	return written, err
}

// importLine is one line of a features file.
type importLine struct {
	CustomerID string         `json:"customer_id"`
	Features   map[string]any `json:"features"`
	TTL        string         `json:"ttl"`
}

// LineError is an error in one line of an imported file.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// maxImportLine is the longest line Import accepts.
const maxImportLine = 1 << 20

// ParseFeatureLine parses one JSON line of a features file:
// {"customer_id": "...", "features": {...}, "ttl": "720h"} (ttl optional).
func ParseFeatureLine(line []byte) (FeatureRecord, error) {
	var l importLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return FeatureRecord{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return FeatureRecord{}, errors.New("more than one JSON value on the line")
	}
	if l.CustomerID == "" {
		return FeatureRecord{}, errors.New("customer_id is required")
	}
	if len(l.Features) == 0 {
		return FeatureRecord{}, errors.New("features is required and must not be empty")
	}
	rec := FeatureRecord{CustomerID: l.CustomerID, Features: l.Features}
	if l.TTL != "" {
		ttl, err := time.ParseDuration(l.TTL)
		if err != nil || ttl <= 0 {
			return FeatureRecord{}, fmt.Errorf("ttl %q is not a positive duration such as \"720h\"", l.TTL)
		}
		rec.TTL = ttl
	}
	return rec, nil
}

// Import reads JSON lines of customer features from r (see ParseFeatureLine; blank lines are
// skipped) and writes them to sink in batches, several at once. It stops at the first bad
// line with a *LineError, after the batches before it were written, and returns how many
// records were written.
func Import(ctx context.Context, r io.Reader, sink Sink, o SeedOptions) (int64, error) {
	o.defaults()
	in := make(chan batch, o.Writers)
	var parseErr error
	go func() {
		defer close(in)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxImportLine)
		b := batch{recs: make([]FeatureRecord, 0, o.Batch)}
		send := func() bool {
			select {
			case in <- b:
				b = batch{recs: make([]FeatureRecord, 0, o.Batch)}
				return true
			case <-ctx.Done():
				return false
			}
		}
		line := 0
		for sc.Scan() {
			line++
			b.bytes += int64(len(sc.Bytes()) + 1)
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			rec, err := ParseFeatureLine(sc.Bytes())
			if err != nil {
				parseErr = &LineError{Line: line, Err: err}
				break
			}
			b.recs = append(b.recs, rec)
			if len(b.recs) == o.Batch && !send() {
				return
			}
		}
		if parseErr == nil && sc.Err() != nil {
			parseErr = &LineError{Line: line + 1, Err: sc.Err()}
		}
		if len(b.recs) > 0 {
			send()
		}
	}()
	written, err := writeAll(ctx, sink, in, o)
	// writeAll returns after in is closed, so parseErr is settled.
	if err != nil {
		return written, err
	}
	if parseErr != nil {
		return written, parseErr
	}
	return written, ctx.Err()
}

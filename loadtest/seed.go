package loadtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
			if err := putWithRetry(ctx, client, req); err != nil {
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

// putWithRetry calls PutFeatures, retrying UNAVAILABLE (the server's store is down or its
// breaker open) up to three times with a growing back-off.
func putWithRetry(ctx context.Context, client arbiterv1.FeatureServiceClient, req *arbiterv1.PutFeaturesRequest) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := client.PutFeatures(ctx, req)
		if err == nil || status.Code(err) != codes.Unavailable || attempt == 4 {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff *= 2
	}
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

package guard

import (
	"container/list"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/arbiter-dev/arbiter/rpcstatus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// DefaultRateLimitMaxKeys is how many clients a RateLimiter tracks at once by default.
const DefaultRateLimitMaxKeys = 10000

// RateLimiter holds one token bucket per client and refuses requests over a client's rate
// with RESOURCE_EXHAUSTED. A client is the authenticated client (see ClientFromContext), or
// the peer's IP address when the request carries no identity. Memory is bounded: past
// MaxKeys clients the least recently seen one is forgotten (and starts again with a full
// bucket when it comes back). It is safe for concurrent use.
type RateLimiter struct {
	def      RateLimit
	maxKeys  int
	now      func() time.Time
	rejected metric.Int64Counter

	mu      sync.Mutex
	entries map[string]*list.Element // of *rateEntry
	lru     list.List                // front: most recently used
}

type rateEntry struct {
	key     string
	limit   RateLimit
	limiter *rate.Limiter
}

// RateLimitOption configures a RateLimiter.
type RateLimitOption func(*RateLimiter)

// WithRateLimitMaxKeys bounds the number of clients tracked (default DefaultRateLimitMaxKeys).
func WithRateLimitMaxKeys(n int) RateLimitOption {
	return func(r *RateLimiter) { r.maxKeys = n }
}

// WithRateLimitClock sets the clock (default time.Now), for tests.
func WithRateLimitClock(now func() time.Time) RateLimitOption {
	return func(r *RateLimiter) { r.now = now }
}

// NewRateLimiter returns a RateLimiter that applies def to every client without a rate limit
// of its own (ClientConfig.RateLimit). def.PerSecond 0 means such clients are not limited; a
// zero def.Burst defaults to max(1, PerSecond). mp provides the counter
// arbiter.ratelimit.rejected, with attributes client and rpc.method.
func NewRateLimiter(def RateLimit, mp metric.MeterProvider, opts ...RateLimitOption) (*RateLimiter, error) {
	if err := def.validate(); err != nil {
		return nil, fmt.Errorf("default rate limit: %w", err)
	}
	r := &RateLimiter{def: def, maxKeys: DefaultRateLimitMaxKeys, now: time.Now}
	for _, opt := range opts {
		opt(r)
	}
	if r.maxKeys < 1 {
		return nil, fmt.Errorf("rate limit max keys %d: want 1 or more", r.maxKeys)
	}
	r.entries = make(map[string]*list.Element, min(r.maxKeys, 1024))
	var err error
	r.rejected, err = mp.Meter(instrumentationName).Int64Counter("arbiter.ratelimit.rejected",
		metric.WithDescription("RPCs refused because the client was over its rate limit"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("rate limit counter: %w", err)
	}
	return r, nil
}

// Allow takes one token from key's bucket and reports whether there was one. lim is the
// client's own limit, or nil for the default; a limit of 0 per second always allows. When a
// client's limit changes (a reloaded token file), its bucket takes the new rate and burst.
func (r *RateLimiter) Allow(key string, lim *RateLimit) bool {
	l := r.def
	if lim != nil {
		l = *lim
	}
	if l.PerSecond <= 0 {
		return true
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var e *rateEntry
	if el, ok := r.entries[key]; ok {
		r.lru.MoveToFront(el)
		e = el.Value.(*rateEntry)
		if e.limit != l {
			e.limiter.SetLimitAt(now, rate.Limit(l.PerSecond))
			e.limiter.SetBurstAt(now, l.Burst)
			e.limit = l
		}
	} else {
		if len(r.entries) >= r.maxKeys {
			oldest := r.lru.Back()
			r.lru.Remove(oldest)
			delete(r.entries, oldest.Value.(*rateEntry).key)
		}
		e = &rateEntry{key: key, limit: l, limiter: rate.NewLimiter(rate.Limit(l.PerSecond), l.Burst)}
		r.entries[key] = r.lru.PushFront(e)
	}
	return e.limiter.AllowN(now, 1)
}

// Len returns the number of clients tracked.
func (r *RateLimiter) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// rateKey returns the bucket key and the client's own limit for an RPC.
func rateKey(ctx context.Context) (key, client string, lim *RateLimit) {
	if id, ok := ClientFromContext(ctx); ok {
		if id.rateKey == "" {
			id.rateKey = "client:" + id.Name
		}
		return id.rateKey, id.Name, id.RateLimit
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr := p.Addr.String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
		return "peer:" + addr, "", nil
	}
	return "peer:unknown", "", nil
}

// errRateLimited is the error of a call over its client's rate; it is built once.
var errRateLimited = rpcstatus.ResourceExhausted("rate limit exceeded for this client; retry later", time.Second)

// check applies the limit to one RPC.
func (r *RateLimiter) check(ctx context.Context, method string) error {
	key, client, lim := rateKey(ctx)
	if r.Allow(key, lim) {
		return nil
	}
	r.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("client", client), attribute.String("rpc.method", method)))
	return errRateLimited
}

// UnaryInterceptor refuses unary RPCs over the client's rate. Chain it after the
// authentication interceptor so that it sees the client's identity.
func (r *RateLimiter) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := r.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor refuses new streams over the client's rate; a stream counts as one
// request.
func (r *RateLimiter) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := r.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

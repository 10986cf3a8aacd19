package server

import (
	"context"
	"slices"
	"sync/atomic"
	"time"
)

// Budget defaults.
const (
	// DefaultStoreBudgetMax caps the time one request may spend on store calls.
	DefaultStoreBudgetMax = 50 * time.Millisecond
	// DefaultStoreBudgetFraction is the share of the caller's remaining time given to the store.
	DefaultStoreBudgetFraction = 0.75
	// DefaultStoreBudgetReserve is the time always left, after the store budget, to evaluate
	// and answer before the caller's deadline.
	DefaultStoreBudgetReserve = 2 * time.Millisecond
)

// Budget is the time one request may spend on store calls (Load and Commit together), derived
// from the caller's deadline so that a slow store never makes Decide miss it: the budget is
// the smallest of Max, Fraction of the remaining time, and the remaining time less Reserve.
// Without a caller deadline the budget is Max. A budget of zero or less means there is no time
// for the store at all: the request degrades at once.
//
// The zero Budget uses the defaults (50 ms, 0.75, 2 ms). A Budget is a value; copy it freely.
type Budget struct {
	// Max caps the budget; zero means DefaultStoreBudgetMax.
	Max time.Duration
	// Fraction is the share of the remaining time given to the store, in (0, 1]; zero or out
	// of range means DefaultStoreBudgetFraction.
	Fraction float64
	// Reserve is the time kept to answer after the store budget; zero means
	// DefaultStoreBudgetReserve, a negative value means none.
	Reserve time.Duration
	// Min, when set, sizes the budget from the store's measured latency: the server caps it at
	// StoreBudgetHeadroom times the p99 of its recent store calls, but never below Min nor
	// above Max. A healthy store answering in 1 ms then gets a budget of Min, so a stalled one is
	// given up on (and its breaker opened) early, while a busy machine whose store calls take
	// 20 ms still gets up to Max. Zero keeps the budget at Max.
	Min time.Duration
}

// StoreBudgetHeadroom is the multiple of the recent p99 store-call latency a sized budget
// allows (Budget.Min).
const StoreBudgetHeadroom = 4

// sized returns b with Max lowered to StoreBudgetHeadroom×p99 when b.Min is set, p99 is known
// (non-zero) and that is less, but never below Min.
func (b Budget) sized(p99 time.Duration) Budget {
	if b.Min <= 0 || p99 <= 0 {
		return b
	}
	limit := b.Max
	if limit <= 0 {
		limit = DefaultStoreBudgetMax
	}
	b.Max = max(b.Min, min(limit, StoreBudgetHeadroom*p99))
	return b
}

// latencies keeps the latencies of the recent store calls (answered, or cut by their budget)
// and their p99, which
// sizes the store budget (Budget.Min). observe is lock-free; every latencyEvery calls one
// caller recomputes the p99 over the last latencyWindow.
type latencies struct {
	n    atomic.Uint64
	ring [latencyWindow]atomic.Int64
	p99  atomic.Int64
}

const (
	latencyWindow = 512
	latencyEvery  = 128
)

func (l *latencies) observe(d time.Duration) {
	i := l.n.Add(1)
	l.ring[i%latencyWindow].Store(int64(d))
	if i%latencyEvery == 0 {
		var s [latencyWindow]int64
		k := min(i, latencyWindow)
		for j := range k {
			s[j] = l.ring[j].Load()
		}
		slices.Sort(s[:k])
		l.p99.Store(s[k*99/100])
	}
}

// P99 returns the last computed p99, zero before latencyEvery calls.
func (l *latencies) P99() time.Duration { return time.Duration(l.p99.Load()) }

// For returns the store budget of a request whose context is ctx, at time now. It does not
// allocate.
func (b Budget) For(ctx context.Context, now time.Time) time.Duration {
	limit, fraction, reserve := b.Max, b.Fraction, b.Reserve
	if limit <= 0 {
		limit = DefaultStoreBudgetMax
	}
	if fraction <= 0 || fraction > 1 {
		fraction = DefaultStoreBudgetFraction
	}
	if reserve == 0 {
		reserve = DefaultStoreBudgetReserve
	} else if reserve < 0 {
		reserve = 0
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return limit
	}
	remaining := deadline.Sub(now)
	budget := min(limit, time.Duration(float64(remaining)*fraction), remaining-reserve)
	return max(budget, 0)
}

// Context returns a context for the request's store calls that ends when the budget is spent
// (or earlier, with ctx), and its cancel function, which the caller must call when the store
// calls are done. When the budget is zero the returned context is already done with
// context.DeadlineExceeded, so the store call fails at once and the request degrades.
func (b Budget) Context(ctx context.Context, now time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, now.Add(b.For(ctx, now)))
}

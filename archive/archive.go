package archive

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultRetention is how long the archive keeps decisions unless WithRetention says
// otherwise: six years of 365 days.
const DefaultRetention = 6 * 365 * 24 * time.Hour

// DefaultPartitionsAhead is how many days after today EnsurePartitions prepares a partition
// for unless WithPartitionsAhead says otherwise.
const DefaultPartitionsAhead = 3

// Option configures an Archive.
type Option func(*options)

type options struct {
	logger    *slog.Logger
	clock     func() time.Time
	retention time.Duration
	ahead     int
}

// WithLogger sets the logger for what the archive does on its own: migrations applied,
// partitions created and dropped (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithClock sets the clock that decides which days are today and which are past the
// retention (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.clock = now
		}
	}
}

// WithRetention sets how long decisions are kept (default DefaultRetention, six years). A
// day's partition is dropped once the whole day is older than the retention. Values under one
// day are ignored.
func WithRetention(d time.Duration) Option {
	return func(o *options) {
		if d >= day {
			o.retention = d
		}
	}
}

// WithPartitionsAhead sets how many days after today EnsurePartitions prepares (default
// DefaultPartitionsAhead, 3). Negative values are ignored.
func WithPartitionsAhead(n int) Option {
	return func(o *options) {
		if n >= 0 {
			o.ahead = n
		}
	}
}

// Archive is the durable decision archive in PostgreSQL: decisions, their outcomes and the
// policy change log, in schema arbiter. Create it with Open. It is safe for concurrent use,
// also by several processes on one database.
type Archive struct {
	pool      *pgxpool.Pool
	logger    *slog.Logger
	clock     func() time.Time
	retention time.Duration
	ahead     int
	closed    atomic.Bool

	mu    sync.Mutex
	parts map[int64]struct{} // days (unix day numbers) known to have a decisions partition
}

// Open connects to the PostgreSQL database named by dsn (a URL or key=value connection
// string; pool settings such as pool_max_conns are read from it), applies the migrations the
// database lacks, and creates the partitions of today and the days ahead. Concurrent Opens
// on one database, by any number of replicas, are safe: migrations run one at a time under an
// advisory lock, each set in one transaction.
//
// An unparsable dsn is ErrInvalid. A PostgreSQL that cannot be reached is ErrUnavailable: the
// caller may start without the archive and call Open again later.
func Open(ctx context.Context, dsn string, opts ...Option) (*Archive, error) {
	o := options{
		logger:    slog.New(slog.DiscardHandler),
		clock:     time.Now,
		retention: DefaultRetention,
		ahead:     DefaultPartitionsAhead,
	}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w: %w", ErrInvalid, err)
	}
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		// Plan every execution with its values. pgx prepares statements, and PostgreSQL may
		// switch a prepared statement to a generic plan, which must lock and consider every
		// partition (about 2,190 for six years) where a custom plan prunes to the days asked.
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, dbErr("open archive", err)
	}
	a := &Archive{
		pool:      pool,
		logger:    o.logger,
		clock:     o.clock,
		retention: o.retention,
		ahead:     o.ahead,
		parts:     make(map[int64]struct{}),
	}
	if err := a.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := a.EnsurePartitions(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return a, nil
}

// Close closes the connections; calls after it fail with ErrUnavailable. Close waits for
// calls in progress to return their connections.
func (a *Archive) Close() {
	if a.closed.CompareAndSwap(false, true) {
		a.pool.Close()
	}
}

// Ping reports whether PostgreSQL answers, as nil or an error wrapping ErrUnavailable; for a
// readiness check.
func (a *Archive) Ping(ctx context.Context) error {
	if err := a.usable("ping archive"); err != nil {
		return err
	}
	if err := a.pool.Ping(ctx); err != nil {
		return dbErr("ping archive", err)
	}
	return nil
}

// usable returns an error wrapping ErrUnavailable for op once the archive is closed.
func (a *Archive) usable(op string) error {
	if a.closed.Load() {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, errClosed)
	}
	return nil
}

// querier is what the pool and a transaction share for reading.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// rollback ends tx if it is still open. After Commit it does nothing; after a failure the
// error that matters is the one already being returned, and pgx closes a connection whose
// rollback fails.
func rollback(ctx context.Context, tx pgx.Tx) {
	_ = tx.Rollback(ctx)
}

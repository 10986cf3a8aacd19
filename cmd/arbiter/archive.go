package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/relay"
	"github.com/arbiter-dev/arbiter/server"
)

// DefaultReplayWindow is the default of --replay-window.
const DefaultReplayWindow = 72 * time.Hour

// archiveConfig is the decision archive's part of "arbiter serve".
type archiveConfig struct {
	dsn          string
	replayWindow time.Duration
	retention    time.Duration
}

func (c *archiveConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.dsn, "archive", "", "decision archive: a PostgreSQL URL (postgres://user@host:5432/db); every decision and outcome is copied there from Redis, and Redis keeps decision records only for --replay-window; empty: no archive (records live in Redis for --record-retention)")
	fs.DurationVar(&c.replayWindow, "replay-window", DefaultReplayWindow, "with --archive: how long Redis keeps a decision record and its event id, so that a resent event replays its decision; at least 1m")
	fs.DurationVar(&c.retention, "archive-retention", archive.DefaultRetention, "with --archive: how long the archive keeps decisions (whole days are dropped); at least 24h")
}

func (c *archiveConfig) check(redisURL string) error {
	switch {
	case c.dsn == "":
		return nil
	case redisURL == "":
		return errors.New("serve: --archive needs --redis: the relay copies Redis's outbox into the archive")
	case c.replayWindow < time.Minute:
		return fmt.Errorf("serve: --replay-window %v: must be at least 1m", c.replayWindow)
	case c.retention < 24*time.Hour:
		return fmt.Errorf("serve: --archive-retention %v: must be at least 24h", c.retention)
	}
	return nil
}

// redactDSN returns dsn without a password, for logs.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	user := dsn[scheme+3 : at]
	if name, _, ok := strings.Cut(user, ":"); ok {
		return dsn[:scheme+3] + name + ":***" + dsn[at:]
	}
	return dsn
}

// archiving is the archive of a running server: opened in the background (PostgreSQL may be
// down at start; decisions go on and the outbox keeps the records), then relayed into.
type archiving struct {
	cfg    archiveConfig
	store  *featurestore.Redis
	logger *slog.Logger
	mp     metric.MeterProvider

	a     atomic.Pointer[archive.Archive]
	relay atomic.Pointer[relay.Relay]
	wg    sync.WaitGroup
}

var _ server.Archive = (*archiving)(nil)

// Get implements server.Archive; it is unavailable until the archive is open.
func (r *archiving) Get(ctx context.Context, id string) (archive.Record, error) {
	a := r.a.Load()
	if a == nil {
		return archive.Record{}, fmt.Errorf("%w: not open yet", archive.ErrUnavailable)
	}
	return a.Get(ctx, id)
}

// Outcomes implements server.Archive.
func (r *archiving) Outcomes(ctx context.Context, id string) ([]archive.Outcome, error) {
	a := r.a.Load()
	if a == nil {
		return nil, fmt.Errorf("%w: not open yet", archive.ErrUnavailable)
	}
	return a.Outcomes(ctx, id)
}

// CustomerHistory implements server.Archive.
func (r *archiving) CustomerHistory(ctx context.Context, customerID string, since time.Time) ([]archive.Record, error) {
	a := r.a.Load()
	if a == nil {
		return nil, fmt.Errorf("%w: not open yet", archive.ErrUnavailable)
	}
	return a.CustomerHistory(ctx, customerID, since)
}

// OutcomesOf implements server.Archive.
func (r *archiving) OutcomesOf(ctx context.Context, ids []string) ([]archive.Outcome, error) {
	a := r.a.Load()
	if a == nil {
		return nil, fmt.Errorf("%w: not open yet", archive.ErrUnavailable)
	}
	return a.OutcomesOf(ctx, ids)
}

// Erase implements server.Archive.
func (r *archiving) Erase(ctx context.Context, e archive.Erasure) (archive.Erasure, error) {
	a := r.a.Load()
	if a == nil {
		return archive.Erasure{}, fmt.Errorf("%w: not open yet", archive.ErrUnavailable)
	}
	return a.Erase(ctx, e)
}

// Erasures implements server.Archive.
func (r *archiving) Erasures(ctx context.Context, customerID string) ([]archive.Erasure, error) {
	a := r.a.Load()
	if a == nil {
		return nil, fmt.Errorf("%w: not open yet", archive.ErrUnavailable)
	}
	return a.Erasures(ctx, customerID)
}

// status reports the relay's lag and its last error, for /readyz.
func (r *archiving) status() (time.Duration, error) {
	rl := r.relay.Load()
	if rl == nil {
		return 0, errors.New("archive not open")
	}
	return rl.Lag(), rl.Err()
}

// tryOpen opens the archive once, within d: at start, so that the first decisions can rebuild
// and replay from it. On failure run keeps trying in the background.
func (r *archiving) tryOpen(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	a, err := archive.Open(ctx, r.cfg.dsn, archive.WithLogger(r.logger), archive.WithRetention(r.cfg.retention))
	if err != nil {
		return err
	}
	r.a.Store(a)
	return nil
}

// run opens the archive unless tryOpen did, retrying with back-off while PostgreSQL does not
// answer, then relays the outbox into it until ctx ends.
func (r *archiving) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	a := r.a.Load()
	for a == nil {
		var err error
		a, err = archive.Open(ctx, r.cfg.dsn, archive.WithLogger(r.logger), archive.WithRetention(r.cfg.retention))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, archive.ErrUnavailable) {
			r.logger.Error("archive refused: decisions are kept in the outbox until it is fixed", "archive", redactDSN(r.cfg.dsn), "err", err)
		} else {
			r.logger.Warn("archive unavailable: decisions are kept in the outbox", "archive", redactDSN(r.cfg.dsn), "retry_in", backoff.String(), "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	defer a.Close()
	r.a.Store(a)
	host, _ := os.Hostname()
	exp := r.store.AuditExporter(relay.NewSink(a),
		featurestore.WithAuditGroup(relay.Group),
		featurestore.WithAuditConsumer(host+"-"+fmt.Sprint(os.Getpid())),
		featurestore.WithAuditClaimIdle(relay.DefaultClaimIdle),
		// Archived entries leave the outbox within a minute or two, and archived records leave
		// Redis at once: within the replay window Redis keeps only the event's decision id.
		featurestore.WithAuditRetention(time.Minute),
		featurestore.WithAuditDropRecords(),
	)
	rl, err := relay.New(exp, a, relay.WithLogger(r.logger), relay.WithMeterProvider(r.mp))
	if err != nil {
		r.logger.Error("archive relay not started", "err", err)
		return
	}
	r.relay.Store(rl)
	r.logger.Info("archive relay running", "archive", redactDSN(r.cfg.dsn), "replay_window", r.cfg.replayWindow.String())
	rl.Run(ctx)
}

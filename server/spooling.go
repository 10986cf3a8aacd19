package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
	"github.com/arbiter-dev/arbiter/spool"
)

// measuredAppender appends through the server's store with a store span and the store
// latency metric (op append_decision), outside the circuit breakers: the drain must be able to
// find out that the store is back while no decision closes them.
type measuredAppender struct{ s *Server }

func (m measuredAppender) AppendDecision(ctx context.Context, d *featurestore.Decided) (duplicate bool, err error) {
	return storeCall(m.s, ctx, opAppendDecision, nil, func(ctx context.Context) (bool, error) {
		return m.s.store.AppendDecision(ctx, d)
	})
}

// WithAuditSpool makes Decide record degraded decisions in sp before it answers them (default:
// none; a degraded decision is then answered UNAVAILABLE, as it cannot be recorded). The
// caller closes sp after the server stopped.
func WithAuditSpool(sp *spool.Spool) Option { return func(o *options) { o.spool = sp } }

// RunSpoolDrain ships the audit spool's records into the store until ctx ends: at once, then
// every drain interval (WithDrainInterval) while records are pending. Its store calls
// bypass the circuit breakers (decisions may not be there to close them): while the store is
// down a drain costs one failed call per interval. A drain stops at the first store error and
// is tried again at the next interval. It returns when ctx ends, and at once when the server has no spool.
// Run it in one goroutine per server.
func (s *Server) RunSpoolDrain(ctx context.Context) {
	sp := s.opts.spool
	if sp == nil {
		return
	}
	t := time.NewTicker(sp.DrainInterval())
	defer t.Stop()
	for {
		if sp.PendingBytes() > 0 {
			n, err := sp.Drain(ctx, measuredAppender{s})
			if n > 0 {
				s.opts.logger.LogAttrs(ctx, slog.LevelInfo, "audit spool drained into the store",
					slog.Int("records", n), slog.Int64("pending_bytes", sp.PendingBytes()))
			}
			if err != nil && ctx.Err() == nil {
				s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "audit spool drain stopped; trying again later",
					slog.Int64("pending_bytes", sp.PendingBytes()), slog.Any("err", err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// spoolDegraded records a degraded decision in the audit spool before it is answered.
func (s *Server) spoolDegraded(ctx context.Context, c *call, resp *arbiterv1.DecideResponse) error {
	in := &c.in
	rec, err := newRecord(c, resp)
	if err != nil {
		return err
	}
	sp := s.opts.spool
	if sp == nil {
		// No spool: the store takes the record itself, within the caller's deadline rather
		// than the spent store budget. The embedded store always can (it degrades only when
		// a call outlives the budget); a Redis that is down cannot, and the decision is
		// refused.
		if _, err := (measuredAppender{s}).AppendDecision(ctx, &featurestore.Decided{CustomerID: in.Customer.ID,
			EventID: in.Event.ID, DecisionID: resp.GetDecisionId(), Record: rec}); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("%w: no audit spool, and the store: %w", rpcstatus.ErrNotRecorded, err)
		}
		return nil
	}
	if err := sp.Append(ctx, rec); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("%w: %w", rpcstatus.ErrNotRecorded, err)
	}
	return nil
}

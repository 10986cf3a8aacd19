package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric"

	"github.com/arbiter-dev/arbiter/server"
	"github.com/arbiter-dev/arbiter/stream"
)

// natsConfig is the streaming edge's part of the serve configuration (docs/streams.md).
type natsConfig struct {
	url             string
	workers         int
	maxAckPending   int
	ackWait         time.Duration
	duplicateWindow time.Duration
	degraded        bool
	json            bool
}

func (c *natsConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "nats", "", "NATS server with JetStream (nats://host:4222, several comma-separated): decide events from arbiter.events.> and publish decisions to arbiter.decisions.<action> (docs/streams.md); empty: no streams")
	fs.IntVar(&c.workers, "nats-workers", stream.DefaultWorkers, "with --nats: events decided at once")
	fs.IntVar(&c.maxAckPending, "nats-max-ack-pending", stream.DefaultMaxAckPending, "with --nats: the consumers' MaxAckPending, events handed out and not yet acknowledged across all replicas (backpressure)")
	fs.DurationVar(&c.ackWait, "nats-ack-wait", stream.DefaultAckWait, "with --nats: how long JetStream waits for an event's acknowledgement before it redelivers it (after a crash); more than 1s, and more than a decision takes")
	fs.DurationVar(&c.duplicateWindow, "nats-duplicate-window", stream.DefaultDuplicateWindow, "with --nats: duplicate window of the decision streams Arbiter creates; a decision republished within it (after a crash) is dropped")
	fs.BoolVar(&c.degraded, "nats-degraded", false, "with --nats: publish degraded decisions (SUPPRESS or ESCALATE, made without the customer's state) while the store is out, instead of pausing the stream until it is back")
	fs.BoolVar(&c.json, "nats-json", false, "with --nats: publish decisions and revocations in JSON instead of protobuf")
}

func (c *natsConfig) check() error {
	switch {
	case c.url == "":
		return nil
	case c.workers < 1 || c.maxAckPending < 1:
		return fmt.Errorf("serve: --nats-workers %d, --nats-max-ack-pending %d: must be at least 1", c.workers, c.maxAckPending)
	case c.ackWait <= time.Second:
		return fmt.Errorf("serve: --nats-ack-wait %v: must be more than 1s", c.ackWait)
	case c.duplicateWindow < time.Second:
		return fmt.Errorf("serve: --nats-duplicate-window %v: must be at least 1s", c.duplicateWindow)
	}
	return nil
}

// streaming is the running streaming edge of "arbiter serve".
type streaming struct {
	nc   *nats.Conn
	edge *stream.Edge
}

// openStreaming connects to NATS, and creates or checks the streams and consumers. A NATS
// that does not answer stops the start-up: the edge cannot check its streams.
func openStreaming(ctx context.Context, cfg natsConfig, srv *server.Server, logger *slog.Logger, mp metric.MeterProvider) (*streaming, error) {
	name := redactDSN(cfg.url)
	nc, err := nats.Connect(cfg.url, nats.Name("arbiter"), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("NATS disconnected: the stream waits for it", "nats", name, "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { logger.Info("NATS reconnected", "nats", name) }))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", name, err)
	}
	opts := []stream.Option{
		stream.WithLogger(logger), stream.WithMeterProvider(mp),
		stream.WithReady(func(ctx context.Context) error { _, err := srv.Ready(ctx); return err }),
		stream.WithWorkers(cfg.workers), stream.WithMaxAckPending(cfg.maxAckPending),
		stream.WithAckWait(cfg.ackWait),
		stream.WithDuplicateWindow(cfg.duplicateWindow), stream.WithDegraded(cfg.degraded),
	}
	if cfg.json {
		opts = append(opts, stream.WithJSON())
	}
	edge, err := stream.New(nc, srv, opts...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := edge.Setup(sctx); err != nil {
		nc.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("nats %s: JetStream did not answer within 10s (is it enabled: nats-server -js?): %w", name, err)
		}
		return nil, fmt.Errorf("nats %s: %w", name, err)
	}
	logger.Info("streams ready", "nats", name, "in", stream.SubjectEvents, "out", stream.SubjectDecisions+".<action>")
	return &streaming{nc: nc, edge: edge}, nil
}

// close flushes what the edge published and closes the connection.
func (s *streaming) close() {
	_ = s.nc.Drain() // flushes, then closes; the edge has stopped
}

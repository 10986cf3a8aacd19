package featurestore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names the meter of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/featurestore"

// Instrument adds OpenTelemetry instrumentation to a client made by Dial: the client's
// connection-pool metrics through mp (see instrumentPool) and, when spans is true, a span per
// Redis command through tp (redisotel, without the command's arguments, which hold customer
// ids). A span per command costs an allocation-heavy hook on the hot path, so callers ask for
// spans only when they are exported. Command latency is the server's
// arbiter.store.duration, per store call.
func Instrument(client redis.UniversalClient, mp metric.MeterProvider, tp trace.TracerProvider, spans bool) error {
	if spans {
		if err := redisotel.InstrumentTracing(client, redisotel.WithTracerProvider(tp), redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
			return fmt.Errorf("redis tracing: %w", err)
		}
	}
	if err := instrumentPool(client, mp); err != nil {
		return fmt.Errorf("redis metrics: %w", err)
	}
	return nil
}

// instrumentPool registers the metrics of client's connection pool, read from its PoolStats
// at each collection and named as Prometheus expects them: running totals are counters (with
// _total), times in seconds. redisotel's own pool metrics are not used: they report running
// totals as gauges and times in milliseconds and nanoseconds, which `promtool check metrics`
// refuses.
//
//   - arbiter.store.pool.connections{state}: connections in the pool, "idle" or "used";
//   - arbiter.store.pool.hits: requests for a connection that found an idle one;
//   - arbiter.store.pool.misses: requests that found none idle (a new connection or a wait);
//   - arbiter.store.pool.waits: requests that waited for a connection;
//   - arbiter.store.pool.timeouts: requests that timed out waiting for a connection;
//   - arbiter.store.pool.wait.duration: seconds spent waiting for a connection.
func instrumentPool(client redis.UniversalClient, mp metric.MeterProvider) error {
	m := mp.Meter(instrumentationName)
	conns, err := m.Int64ObservableUpDownCounter("arbiter.store.pool.connections",
		metric.WithDescription("Connections in the Redis client's pool, by state (idle, used)."), metric.WithUnit("{connection}"))
	if err != nil {
		return err
	}
	counter := func(name, desc string) (metric.Int64ObservableCounter, error) {
		return m.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit("{request}"))
	}
	hits, err := counter("arbiter.store.pool.hits", "Requests for a Redis connection that found an idle one in the pool.")
	if err != nil {
		return err
	}
	misses, err := counter("arbiter.store.pool.misses", "Requests for a Redis connection that found none idle in the pool.")
	if err != nil {
		return err
	}
	waits, err := counter("arbiter.store.pool.waits", "Requests for a Redis connection that waited for one.")
	if err != nil {
		return err
	}
	timeouts, err := counter("arbiter.store.pool.timeouts", "Requests for a Redis connection that timed out waiting for one.")
	if err != nil {
		return err
	}
	waited, err := m.Float64ObservableCounter("arbiter.store.pool.wait.duration",
		metric.WithDescription("Time spent waiting for a Redis connection from the pool."), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	idle := metric.WithAttributeSet(attribute.NewSet(attribute.String("state", "idle")))
	used := metric.WithAttributeSet(attribute.NewSet(attribute.String("state", "used")))
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := client.PoolStats()
		o.ObserveInt64(conns, int64(st.IdleConns), idle)
		o.ObserveInt64(conns, max(0, int64(st.TotalConns)-int64(st.IdleConns)), used)
		o.ObserveInt64(hits, int64(st.Hits))
		o.ObserveInt64(misses, int64(st.Misses))
		o.ObserveInt64(waits, int64(st.WaitCount))
		o.ObserveInt64(timeouts, int64(st.Timeouts))
		o.ObserveFloat64(waited, float64(st.WaitDurationNs)/1e9)
		return nil
	}, conns, hits, misses, waits, timeouts, waited)
	return err
}

package featurestore

import (
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Instrument adds OpenTelemetry hooks to a client made by Dial: the client's connection-pool
// and command-latency metrics through mp, and, when spans is true, a span per Redis command
// through tp (without the command's arguments, which hold customer ids). A span per command
// costs an allocation-heavy hook on the hot path, so callers ask for spans only when they are
// exported.
func Instrument(client redis.UniversalClient, mp metric.MeterProvider, tp trace.TracerProvider, spans bool) error {
	if spans {
		if err := redisotel.InstrumentTracing(client, redisotel.WithTracerProvider(tp), redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
			return fmt.Errorf("redis tracing: %w", err)
		}
	}
	if err := redisotel.InstrumentMetrics(client, redisotel.WithMeterProvider(mp)); err != nil {
		return fmt.Errorf("redis metrics: %w", err)
	}
	return nil
}

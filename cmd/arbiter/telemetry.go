package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// serviceName is the service.name of Arbiter's telemetry: target_info{service_name="arbiter"}
// in /metrics. OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over it.
const serviceName = "arbiter"

// metricsExport is the meter provider of `arbiter serve` and the /metrics handler that
// serves what it measures.
type metricsExport struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// newMetricsExport returns the meter provider of `arbiter serve`, exported in the Prometheus
// format with the Go runtime and process collectors, as Prometheus's conventions want it:
// names in base units with _total on counters (the OpenTelemetry exporter's translation), no
// otel_scope_* labels on every series, service_name "arbiter" in target_info, and the
// OpenMetrics format for a scraper that asks for it (Accept: application/openmetrics-text).
func newMetricsExport(ctx context.Context) (*metricsExport, error) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	res, err := serviceResource(ctx)
	if err != nil {
		return nil, err
	}
	return &metricsExport{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res)),
		handler:  promhttp.HandlerFor(registry, promhttp.HandlerOpts{EnableOpenMetrics: true}),
	}, nil
}

// serviceResource describes this process to telemetry backends: service.name "arbiter",
// service.version, the SDK, and what OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES set,
// which win.
func serviceResource(ctx context.Context) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", serviceName),
			attribute.String("service.version", serviceVersion())),
		resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	return res, nil
}

// serviceVersion is the binary's version, as "arbiter version" prints it.
func serviceVersion() string {
	info, _ := debug.ReadBuildInfo()
	return readBuildVersion(info).Version
}

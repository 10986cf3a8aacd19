package guard

import (
	"context"
	"sync"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const decideMethod = "/arbiter.v1.DecisionService/Decide"

// TestShedderInterceptor fills the shedder with blocked calls and checks that the next call is
// refused at once with RESOURCE_EXHAUSTED, that health checks still pass, and that capacity
// comes back when the calls finish.
func TestShedderInterceptor(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	s, err := NewShedder(3, WithShedMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	if err != nil {
		t.Fatal(err)
	}
	intercept := s.UnaryServerInterceptor()
	ctx := t.Context()
	call := func(method string, h grpc.UnaryHandler) error {
		_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, h)
		return err
	}
	ok := func(context.Context, any) (any, error) { return "ok", nil }

	release := make(chan struct{})
	var started, done sync.WaitGroup
	for range 3 {
		started.Add(1)
		done.Go(func() {
			err := call(decideMethod, func(context.Context, any) (any, error) {
				started.Done()
				<-release
				return "ok", nil
			})
			if err != nil {
				t.Errorf("admitted call = %v, want nil", err)
			}
		})
	}
	started.Wait()
	if got := s.InFlight(); got != 3 {
		t.Fatalf("InFlight() with 3 blocked calls = %d, want 3", got)
	}
	ran := false
	err = call(decideMethod, func(context.Context, any) (any, error) { ran = true; return nil, nil })
	if got := status.Code(err); got != codes.ResourceExhausted || ran {
		t.Errorf("4th concurrent call = %v (handler ran: %v), want RESOURCE_EXHAUSTED without running the handler", err, ran)
	}
	if err := call(grpc_health_v1.Health_Check_FullMethodName, ok); err != nil {
		t.Errorf("health check while full = %v, want nil (exempt)", err)
	}
	close(release)
	done.Wait()
	if got := s.InFlight(); got != 0 {
		t.Errorf("InFlight() after the calls ended = %d, want 0", got)
	}
	if err := call(decideMethod, ok); err != nil {
		t.Errorf("call after capacity came back = %v, want nil", err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var shed int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, isSum := m.Data.(metricdata.Sum[int64]); isSum && m.Name == "arbiter.requests.shed" {
				for _, p := range d.DataPoints {
					shed += p.Value
				}
			}
		}
	}
	if shed != 1 {
		t.Errorf("arbiter.requests.shed = %d, want 1", shed)
	}
}

func TestShedderPanickingHandlerReleases(t *testing.T) {
	s, err := NewShedder(1)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { _ = recover() }()
		_, _ = s.UnaryServerInterceptor()(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: decideMethod},
			func(context.Context, any) (any, error) { panic("boom") })
	}()
	if got := s.InFlight(); got != 0 {
		t.Errorf("InFlight() after a panicking handler = %d, want 0", got)
	}
}

func TestNewShedderDefaultLimit(t *testing.T) {
	s, err := NewShedder(0)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Limit(); got != DefaultMaxInFlight {
		t.Errorf("NewShedder(0).Limit() = %d, want %d", got, DefaultMaxInFlight)
	}
}

func TestShedderNoAllocs(t *testing.T) {
	s, err := NewShedder(10)
	if err != nil {
		t.Fatal(err)
	}
	intercept := s.UnaryServerInterceptor()
	ctx := t.Context()
	info := &grpc.UnaryServerInfo{FullMethod: decideMethod}
	h := func(context.Context, any) (any, error) { return nil, nil }
	if n := testing.AllocsPerRun(100, func() { _, _ = intercept(ctx, nil, info, h) }); n != 0 {
		t.Errorf("admitted call through the interceptor allocates %v times, want 0", n)
	}
}

func BenchmarkShedderAdmit(b *testing.B) {
	s, err := NewShedder(1 << 20)
	if err != nil {
		b.Fatal(err)
	}
	intercept := s.UnaryServerInterceptor()
	ctx := b.Context()
	info := &grpc.UnaryServerInfo{FullMethod: decideMethod}
	h := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = intercept(ctx, nil, info, h)
		}
	})
}

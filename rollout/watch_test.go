package rollout

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/arbiter-dev/arbiter/decision"
)

func bundleText(version string) string {
	return "id: watch-test\nversion: \"" + version + "\"\nrules:\n  - {id: r, action: SUPPRESS, reasons: [A]}\n"
}

// reloadCounts reads the reload counter by result.
func reloadCounts(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				v, _ := dp.Attributes.Value(attribute.Key("result"))
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWatchPolicy(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "bundle.yaml")
	write := func(s string) {
		t.Helper()
		// Write and rename, as a deployment would.
		tmp := filepath.Join(dir, ".bundle.tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(bundleText("1"))
	p, err := decision.LoadPolicy(dir)
	if err != nil {
		t.Fatal(err)
	}
	holder := NewHolder(p)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	counter, err := mp.Meter("test").Int64Counter("arbiter.policy.reloads")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	w, err := NewWatcher(dir, holder, logger, counter, WithReloadDebounce(50*time.Millisecond))
	if err != nil {
		t.Fatalf("NewWatcher() error = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	// A good change is swapped in.
	write(bundleText("2"))
	waitFor(t, "version 2", func() bool { return holder.Load().Ref().Version == "2" })

	// A broken bundle is rejected: version 2 keeps serving, the failure is logged and counted.
	write("id: watch-test\nversion: \"3\"\nrules:\n  - {id: r, action: SUPPRESS, reasons: [A], when: 'nosuch > 1'}\n")
	waitFor(t, "a failed reload", func() bool { return reloadCounts(t, reader)[ReloadFailed] >= 1 })
	if got := holder.Load().Ref().Version; got != "2" {
		t.Errorf("after a broken bundle, serving version %q, want 2", got)
	}
	if !strings.Contains(logs.String(), "policy reload failed") || !strings.Contains(logs.String(), "undeclared reference") {
		t.Errorf("log = %s\nwant the reload failure with the compile error", logs.String())
	}

	// SIGHUP reloads without a file change.
	write(bundleText("4"))
	waitFor(t, "version 4", func() bool { return holder.Load().Ref().Version == "4" })
	before := reloadCounts(t, reader)[ReloadUnchanged]
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an unchanged reload after SIGHUP", func() bool { return reloadCounts(t, reader)[ReloadUnchanged] > before })

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() error = %v, want nil", err)
	}
	if got := reloadCounts(t, reader)[ReloadSwapped]; got < 2 {
		t.Errorf("swapped reloads = %d, want at least 2", got)
	}
}

func TestNewPolicyWatcherMissingPath(t *testing.T) {
	_, err := NewWatcher(filepath.Join(t.TempDir(), "nope"), NewHolder(nil), slog.Default(), nil)
	if err == nil {
		t.Error("NewWatcher(missing path) error = nil, want an error")
	}
}

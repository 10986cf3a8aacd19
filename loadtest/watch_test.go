package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGrowth(t *testing.T) {
	flat := func(g, h, c int64) ResourceSample {
		return ResourceSample{Goroutines: g, HeapInuse: h, RedisClients: c}
	}
	tests := []struct {
		name    string
		samples func(i int) ResourceSample
		want    int // number of growing resources
	}{
		{"steady", func(i int) ResourceSample { return flat(40, 30<<20, 10) }, 0},
		{"noise around small numbers", func(i int) ResourceSample { return flat(int64(20+i%3*10), 30<<20, int64(5+i%2)) }, 0},
		{"goroutine leak", func(i int) ResourceSample { return flat(int64(40+20*i), 30<<20, 10) }, 1},
		{"heap and connections grow", func(i int) ResourceSample { return flat(40, int64(30+10*i)<<20, int64(10+5*i)) }, 2},
		{"redis not watched", func(i int) ResourceSample { return flat(40, 30<<20, -1) }, 0},
		// A connection pool and the heap filling up in the warm-up quarter, then flat: the
		// first 5-minute runs and most short ones looked like this.
		{"pool and heap warming up", func(i int) ResourceSample {
			return flat(94, int64(min(10+12*i, 50))<<20, int64(min(28+20*i, 93)))
		}, 0},
		{"growth after the warm-up", func(i int) ResourceSample { return flat(94, 30<<20, int64(28+4*max(0, i-5))) }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s []ResourceSample
			for i := range 20 {
				s = append(s, tc.samples(i))
			}
			if got := growth(s); len(got) != tc.want {
				t.Errorf("growth(%s) = %q, want %d growing resources", tc.name, got, tc.want)
			}
		})
	}
	if got := growth(make([]ResourceSample, 7)); got != nil {
		t.Errorf("growth(7 samples) = %q, want nil (too few to tell)", got)
	}
}

func TestWatcher(t *testing.T) {
	var goroutines atomic.Int64
	goroutines.Store(30)
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n"+
			"go_gc_duration_seconds{quantile=\"0\"} 1e-05\n")
	})
	mux.HandleFunc("/debug/pprof/goroutine", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "goroutine profile: total %d\n1 @ 0x1\n", goroutines.Add(25)) // a leak
	})
	mux.HandleFunc("/debug/pprof/heap", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 100\n# HeapInuse = 4194304\n")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	redis := func(ctx context.Context, section string) (string, error) {
		switch section {
		case "clients":
			return "# Clients\r\nconnected_clients:12\r\nblocked_clients:0\r\n", nil
		case "cpu":
			return "# CPU\r\nused_cpu_sys:1.25\r\nused_cpu_user:2.5\r\n", nil
		}
		return "", fmt.Errorf("section %q", section)
	}
	w, err := NewWatcher(srv.URL, redis, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for len(w.Result().Samples) < 12 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	res := w.Result()
	first := res.Samples[0]
	// Goroutines and heap come from pprof (the fake /metrics lacks them), CPU from /metrics.
	if diff := cmp.Diff(ResourceSample{Goroutines: 55, HeapInuse: 4 << 20, RedisClients: 12, ServerCPU: 12.5, RedisCPU: 3.75}, first,
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Second" }, cmp.Ignore())); diff != "" {
		t.Errorf("first sample mismatch (-want +got):\n%s", diff)
	}
	if len(res.Growth) != 1 || !strings.HasPrefix(res.Growth[0], "goroutines grew") {
		t.Errorf("Growth = %q, want the goroutine leak alone", res.Growth)
	}
}

func TestNewWatcherRefusesRemote(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8080", "ftp://127.0.0.1:21", "127.0.0.1:8080"} {
		if _, err := NewWatcher(u, nil, 0); err == nil {
			t.Errorf("NewWatcher(%q) = nil error, want an error", u)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	page := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
go_memstats_heap_inuse_bytes 1.2345e+07
go_gc_duration_seconds{quantile="0.5"} 3e-05
process_cpu_seconds_total 7.25
`
	got, err := parseMetrics(strings.NewReader(page), watchedMetrics)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 42, "go_memstats_heap_inuse_bytes": 12345000, "process_cpu_seconds_total": 7.25}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseMetrics() mismatch (-want +got):\n%s", diff)
	}
}

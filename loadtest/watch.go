package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ResourceSample is one reading of the server's resources during a run.
type ResourceSample struct {
	Second     float64 `json:"second"`
	Goroutines int64   `json:"goroutines"`
	HeapInuse  int64   `json:"heap_inuse_bytes"`
	// RedisClients is Redis's connected_clients; -1 when Redis was not watched.
	RedisClients int64 `json:"redis_clients"`
	// ServerCPU is the server's process_cpu_seconds_total and RedisCPU Redis's used_cpu_user
	// plus used_cpu_sys, in seconds; -1 when unknown.
	ServerCPU float64 `json:"server_cpu_s"`
	RedisCPU  float64 `json:"redis_cpu_s"`
}

// Resources is what a Watcher saw, and its verdict on growth.
type Resources struct {
	Samples []ResourceSample `json:"samples"`
	// Growth names each resource whose last-quarter mean exceeds its first-quarter mean by
	// more than the tolerance (20% and an absolute floor), with the two means.
	Growth   []string `json:"growth,omitempty"`
	Failures int      `json:"failures,omitempty"` // readings that failed
}

// RedisInfo reads a section of Redis's INFO; the go-redis client's Info satisfies it through
// a small adapter in the command.
type RedisInfo func(ctx context.Context, section string) (string, error)

// Watcher samples the server's goroutines, heap and CPU time (from its admin port's /metrics,
// falling back to /debug/pprof, which needs `arbiter serve --pprof`) and Redis's connected
// clients and CPU time while a run goes on.
type Watcher struct {
	admin  *url.URL
	redis  RedisInfo
	every  time.Duration
	client *http.Client

	started time.Time // set once by NewWatcher: samples' seconds count from it

	mu  sync.Mutex
	res Resources
}

// NewWatcher returns a Watcher of the admin HTTP base URL (for example
// "http://127.0.0.1:8080", loopback only) and, when redis is not nil, of Redis, sampling
// every interval (default 5 s).
func NewWatcher(admin string, redis RedisInfo, every time.Duration) (*Watcher, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("admin url %q: want http://HOST:PORT", admin)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":80"
	}
	if err := CheckLoopback(host); err != nil {
		return nil, err
	}
	if every <= 0 {
		every = 5 * time.Second
	}
	return &Watcher{admin: u, redis: redis, every: every, client: &http.Client{Timeout: 2 * time.Second}, started: time.Now()}, nil
}

// Run samples until ctx is done. Call it in its own goroutine; Result returns the samples.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		w.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watcher) sample(ctx context.Context) {
	s, failed := w.read(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if failed {
		w.res.Failures++
		if ctx.Err() != nil {
			return
		}
	}
	w.res.Samples = append(w.res.Samples, s)
}

// Sample reads the resources now, without recording the reading.
func (w *Watcher) Sample(ctx context.Context) ResourceSample {
	s, _ := w.read(ctx)
	return s
}

// read takes one reading; failed reports that some part of it could not be read.
func (w *Watcher) read(ctx context.Context) (s ResourceSample, failed bool) {
	s = ResourceSample{Second: time.Since(w.started).Seconds(), RedisClients: -1, ServerCPU: -1, RedisCPU: -1}
	m, err := w.readMetrics(ctx)
	if err != nil {
		m = map[string]float64{}
	}
	if v, ok := m["go_goroutines"]; ok {
		s.Goroutines = int64(v)
	} else if n, err := w.readPprof(ctx, "goroutine", "goroutine profile: total "); err == nil {
		s.Goroutines = n
	} else {
		failed = true
	}
	if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
		s.HeapInuse = int64(v)
	} else if n, err := w.readPprof(ctx, "heap", "# HeapInuse = "); err == nil {
		s.HeapInuse = n
	} else {
		failed = true
	}
	if v, ok := m["process_cpu_seconds_total"]; ok {
		s.ServerCPU = v
	}
	if w.redis != nil {
		if info, err := w.redis(ctx, "clients"); err == nil {
			s.RedisClients = infoField(info, "connected_clients")
		} else {
			failed = true
		}
		if info, err := w.redis(ctx, "cpu"); err == nil {
			if u, sy := infoFloat(info, "used_cpu_user"), infoFloat(info, "used_cpu_sys"); u >= 0 && sy >= 0 {
				s.RedisCPU = u + sy
			}
		}
	}
	return s, failed
}

// watchedMetrics are the Prometheus samples the Watcher reads from /metrics.
var watchedMetrics = []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_cpu_seconds_total"}

// readMetrics reads the watched samples (those without labels) from the admin /metrics.
func (w *Watcher) readMetrics(ctx context.Context) (map[string]float64, error) {
	u := w.admin.JoinPath("/metrics")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return parseMetrics(resp.Body, watchedMetrics)
}

// parseMetrics returns the values of the named unlabelled samples of a Prometheus text page.
func parseMetrics(r io.Reader, names []string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && want[f[0]] {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out, sc.Err()
}

// readPprof reads /debug/pprof/NAME?debug=1 and returns the number after prefix.
func (w *Watcher) readPprof(ctx context.Context, name, prefix string) (int64, error) {
	u := w.admin.JoinPath("/debug/pprof/", name)
	u.RawQuery = "debug=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s (is the server's --pprof on?)", u, resp.Status)
	}
	return scanNumber(resp.Body, prefix)
}

// scanNumber returns the integer that follows prefix at the start of a line of r.
func scanNumber(r io.Reader, prefix string) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no line starting %q", prefix)
}

// infoField returns the integer field of a Redis INFO text, or -1.
func infoField(info, field string) int64 {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// infoFloat returns the number field of a Redis INFO text, or -1.
func infoFloat(info, field string) float64 {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			if n, err := strconv.ParseFloat(v, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// Result returns the samples so far and the growth verdict.
func (w *Watcher) Result() Resources {
	w.mu.Lock()
	defer w.mu.Unlock()
	res := w.res
	res.Samples = append([]ResourceSample(nil), w.res.Samples...)
	res.Growth = growth(res.Samples)
	return res
}

// growth compares the mean of the second and the last quarter of the samples of each
// resource: the first quarter is the warm-up, where connection pools fill and the heap finds
// its size. It needs at least 8 samples. A resource grew when the last mean exceeds the
// second quarter's by more than 20% and by more than a floor (50 goroutines, 16 MiB of heap,
// 8 Redis clients), so that noise around small numbers is not called growth.
func growth(s []ResourceSample) []string {
	if len(s) < 8 {
		return nil
	}
	q := len(s) / 4
	mean := func(part []ResourceSample, get func(ResourceSample) int64) float64 {
		var sum float64
		for _, x := range part {
			sum += float64(get(x))
		}
		return sum / float64(len(part))
	}
	var out []string
	for _, r := range []struct {
		name  string
		get   func(ResourceSample) int64
		floor float64
	}{
		{"goroutines", func(x ResourceSample) int64 { return x.Goroutines }, 50},
		{"heap_inuse_bytes", func(x ResourceSample) int64 { return x.HeapInuse }, 16 << 20},
		{"redis_clients", func(x ResourceSample) int64 { return x.RedisClients }, 8},
	} {
		first, last := mean(s[q:2*q], r.get), mean(s[len(s)-q:], r.get)
		if first < 0 || last < 0 {
			continue
		}
		if last > 1.2*first && last-first > r.floor {
			out = append(out, fmt.Sprintf("%s grew from %.0f to %.0f (mean of the second and last quarter)", r.name, first, last))
		}
	}
	return out
}

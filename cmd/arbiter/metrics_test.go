package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	"github.com/arbiter-dev/arbiter/stream/natstest"
)

// scrape GETs http://addr/metrics with the Accept header accept ("" for none) and returns the
// body and its content type.
func scrape(t *testing.T, addr, accept string) ([]byte, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	return body, resp.Header.Get("Content-Type")
}

// promtool returns the path of promtool: $ARBITER_PROMTOOL, else promtool on the PATH, else
// bin/promtool (where `make promtool` puts it); "" when there is none.
func promtool() string {
	if p := os.Getenv("ARBITER_PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if p, err := filepath.Abs("../../bin/promtool"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// checkMetrics fails t when the exposition body breaks Prometheus's conventions: the linter
// of client_golang (promlint, which promtool runs too) always, and `promtool check metrics`
// when promtool is installed (in CI, where `make test` installs it, it must be).
func checkMetrics(t *testing.T, what string, body []byte) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint(%s): %v", what, err)
	}
	for _, p := range problems {
		t.Errorf("promlint(%s): %s: %s", what, p.Metric, p.Text)
	}
	tool := promtool()
	if tool == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not found in CI: `make test` installs it (make promtool)")
		}
		t.Logf("promtool not found (make promtool installs it): %s checked with promlint only", what)
		return
	}
	cmd := exec.CommandContext(t.Context(), tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics (%s): %v\n%s", what, err, out)
	}
}

// families returns the metric families of a text exposition: name -> sorted label names (the
// histograms' le aside), and name -> type.
func families(body []byte) (labels map[string][]string, types map[string]string) {
	labels, types = map[string][]string{}, map[string]string{}
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	labelName := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			types[name] = typ
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && types[base] == "histogram" {
				name = base
			}
		}
		var names []string
		for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
			if l[1] != "le" {
				names = append(names, l[1])
			}
		}
		all := append(labels[name], names...)
		sort.Strings(all)
		labels[name] = slices.Compact(all)
	}
	return labels, types
}

// TestServeMetrics scrapes /metrics from a running `arbiter serve`, on the embedded store and
// on Redis: it passes promlint and `promtool check metrics`, carries no otel_scope_* labels,
// names the service "arbiter", has Arbiter's counters from the start (before any decision),
// serves OpenMetrics when asked, and shows what docs/operations.md says it shows.
func TestServeMetrics(t *testing.T) {
	tests := []struct {
		name string
		args func(t *testing.T) []string
		// want are series present at start, before any call.
		want []string
	}{
		{"embedded", func(t *testing.T) []string { return nil }, []string{
			`arbiter_decisions_total{action="message"} 0`,
			`arbiter_decisions_total{action="retry"} 0`,
			`arbiter_decisions_total{action="escalate"} 0`,
			`arbiter_decisions_total{action="suppress"} 0`,
			`arbiter_decisions_degraded_total{reason="STORE_UNAVAILABLE"} 0`,
			`arbiter_decisions_degraded_total{reason="STORE_CORRUPT"} 0`,
			`arbiter_decisions_replayed_total 0`,
			`arbiter_store_conflicts_total 0`,
		}},
		{"redis", func(t *testing.T) []string {
			return []string{"--redis", redistest.Start(t), "--audit-spool", filepath.Join(t.TempDir(), "spool"), "--policy", "../../policies/default"}
		}, []string{
			`arbiter_decisions_total{action="message"} 0`,
			`arbiter_decisions_degraded_total{reason="STORE_UNAVAILABLE"} 0`,
			`arbiter_audit_spool_records_total 0`,
			`arbiter_audit_spool_errors_total{op="write"} 0`,
			`arbiter_policy_reloads_total{result="failed"} 0`,
			`arbiter_policy_sync_failures_total 0`,
			`arbiter_shadow_decisions_total{result="different"} 0`,
			`arbiter_store_pool_timeouts_total 0`,
		}},
		{"nats", func(t *testing.T) []string { return []string{"--nats", natstest.Start(t)} }, []string{
			`arbiter_stream_messages_total{consumer="events",result="decided"} 0`,
			`arbiter_stream_messages_total{consumer="outcomes",result="recorded"} 0`,
			`arbiter_stream_dead_letters_total{reason="card_number"} 0`,
			`arbiter_stream_redelivered_total{consumer="events"} 0`,
			`arbiter_stream_pauses_total{consumer="events"} 0`,
			`arbiter_stream_consumer_lag{consumer="events"} 0`,
			`arbiter_stream_consumer_paused{consumer="events"} 0`,
		}},
	}
	documented := documentedMetrics(t)
	seen := map[string][]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			grpcAddr, httpAddr, stop, _ := startServe(t, tc.args(t)...)

			// At start: the counters are there, at zero.
			body, _ := scrape(t, httpAddr, "")
			for _, want := range tc.want {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(body) {
					t.Errorf("GET /metrics at start lacks %s", want)
				}
			}
			checkMetrics(t, "at start", body)

			// After calls, every instrument has series: the Prometheus conventions hold.
			var out bytes.Buffer
			if err := run(t.Context(), []string{"decide", "--addr", grpcAddr}, func(string) string { return "" }, strings.NewReader(sampleEvent), &out, io.Discard); err != nil {
				t.Fatalf("arbiter decide: %v", err)
			}
			body, ctype := scrape(t, httpAddr, "")
			if !strings.HasPrefix(ctype, "text/plain") {
				t.Errorf("GET /metrics Content-Type = %q, want text/plain", ctype)
			}
			checkMetrics(t, "after a decision", body)
			if bytes.Contains(body, []byte("otel_scope_")) {
				t.Errorf("GET /metrics has otel_scope_* labels:\n%s", grep(body, "otel_scope_"))
			}
			if !regexp.MustCompile(`(?m)^target_info\{.*service_name="arbiter"[,}]`).Match(body) {
				t.Errorf("GET /metrics target_info lacks service_name=\"arbiter\":\n%s", grep(body, "target_info"))
			}
			labels, _ := families(body)
			for name, ls := range labels {
				if !strings.HasPrefix(name, "arbiter_") && !strings.HasPrefix(name, "rpc_") {
					continue
				}
				seen[name] = ls
				doc, ok := documented[name]
				switch {
				case !ok:
					t.Errorf("%s%v is served but not in docs/operations.md's metrics table", name, ls)
				case !slices.Equal(doc, ls):
					t.Errorf("%s: labels %v served, %v in docs/operations.md", name, ls, doc)
				}
			}

			// OpenMetrics, when the scraper asks for it.
			om, ctype := scrape(t, httpAddr, "application/openmetrics-text; version=1.0.0")
			if !strings.HasPrefix(ctype, "application/openmetrics-text") || !bytes.HasSuffix(om, []byte("# EOF\n")) {
				t.Errorf("GET /metrics (Accept: OpenMetrics) = Content-Type %q, ending %q; want OpenMetrics ending in # EOF", ctype, om[max(0, len(om)-20):])
			}
			if err := stop(); err != nil {
				t.Errorf("arbiter serve returned %v after cancel, want nil", err)
			}
		})
	}
	// What the table promises and no test configuration shows needs a configuration this test
	// does not start (an archive, tokens, rate limits, an overload), or a first outcome or
	// experiment decision, whose labels are not known before (server's TestExperimentArmsAcrossReplicas).
	conditional := []string{"arbiter_archive_delivered_total", "arbiter_archive_failures_total", "arbiter_archive_lag_seconds",
		"arbiter_auth_failures_total", "arbiter_ratelimit_rejected_total", "arbiter_requests_shed_total",
		"arbiter_outcomes_total", "arbiter_experiment_decisions_total"}
	for name := range documented {
		if _, ok := seen[name]; !ok && !slices.Contains(conditional, name) && !t.Failed() {
			t.Errorf("docs/operations.md promises %s, which /metrics does not serve", name)
		}
	}
}

// documentedMetrics reads docs/operations.md's metrics table: metric name -> label names.
func documentedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(b), "\n## Metrics\n")
	table, _, _ = strings.Cut(table, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|([^|]*)\\|")
	label := regexp.MustCompile("`([a-z_]+)`")
	out := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		var ls []string
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			ls = append(ls, l[1])
		}
		sort.Strings(ls)
		out[m[1]] = ls
	}
	if len(out) < 20 {
		t.Fatalf("docs/operations.md's metrics table: %d rows found, want the table", len(out))
	}
	return out
}

// grep returns the first five lines of body that contain s.
func grep(body []byte, s string) string {
	var b strings.Builder
	n := 0
	for line := range strings.Lines(string(body)) {
		if strings.Contains(line, s) && n < 5 {
			b.WriteString(line)
			n++
		}
	}
	return b.String()
}

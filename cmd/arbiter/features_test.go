package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	"github.com/arbiter-dev/arbiter/loadtest"
	"github.com/google/go-cmp/cmp"
)

func TestFeaturesImportRedis(t *testing.T) {
	addr := redistest.Start(t)
	file := filepath.Join(t.TempDir(), "customers.jsonl")
	content := `{"customer_id": "c1", "features": {"days_past_due": 12, "vulnerable": true, "timezone": "Europe/Paris"}, "ttl": "720h"}
{"customer_id": "c2", "features": {"risk_score": 0.25}}
{"customer_id": "c1", "features": {"hardship": true}}
`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"features", "import", "--file", file, "--redis", "redis://" + addr, "--writers", "1"}
	if err := run(t.Context(), args, noEnv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	client, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	store := featurestore.NewRedis(client)
	defer store.Close()
	for id, want := range map[string]map[string]any{
		// The second line for c1 merges into the first.
		"c1": {"days_past_due": 12.0, "vulnerable": true, "timezone": "Europe/Paris", "hardship": true},
		"c2": {"risk_score": 0.25},
	} {
		st, err := store.State(t.Context(), id, time.Now())
		if err != nil {
			t.Fatalf("State(%s): %v", id, err)
		}
		if diff := cmp.Diff(want, st.Features); diff != "" {
			t.Errorf("features of %s after import mismatch (-want +got):\n%s", id, diff)
		}
	}
}

func TestLoadtestSeedRedisRefusesRemote(t *testing.T) {
	for _, url := range []string{"redis://10.0.0.5:6379", "redis+cluster://127.0.0.1:7000,10.0.0.6:7001", "redis://user:pw@example.com/0"} {
		if err := checkRedisURL(url); err == nil {
			t.Errorf("checkRedisURL(%q) = nil, want a loopback error", url)
		}
	}
	for _, url := range []string{"redis://127.0.0.1:6379/0", "127.0.0.1:6380", "redis+cluster://127.0.0.1:7000,localhost:7001", "redis://localhost"} {
		if err := checkRedisURL(url); err != nil {
			t.Errorf("checkRedisURL(%q) = %v, want nil", url, err)
		}
	}
}

// BenchmarkFeaturesImportRedis measures `arbiter features import` into a local redis-server:
// JSON-lines parsing plus pipelined writes, reported as customers/s (target ≥ 50,000/s).
func BenchmarkFeaturesImportRedis(b *testing.B) {
	addr := redistest.Start(b)
	sink, closeSink, err := redisSink(b.Context(), "redis://"+addr)
	if err != nil {
		b.Fatal(err)
	}
	defer closeSink()
	const n = 20000
	var file bytes.Buffer
	for i := range n {
		p := loadtest.NewProfile(1, i)
		fmt.Fprintf(&file, `{"customer_id": %q, "features": {"days_past_due": %d, "risk_score": %g, "timezone": %q, "vulnerable": %t, "hardship": %t, "opted_out": %t}, "ttl": "720h"}`+"\n",
			p.ID, p.DaysPastDue, p.RiskScore, p.Timezone, p.Vulnerable, p.Hardship, p.OptedOut)
	}
	b.ReportAllocs()
	var total int64
	start := time.Now()
	for b.Loop() {
		res, err := importFeatures(b.Context(), bytes.NewReader(file.Bytes()), sink, importOptions{batch: 2000, writers: 8})
		if err != nil || res.written != n {
			b.Fatalf("importFeatures() = %d, %v; want %d, nil", res.written, err, n)
		}
		total += res.written
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "customers/s")
}

// TestFeaturesImportBadLines: every bad line is reported with the file and its number, the
// good lines are imported and the command exits 1; with --atomic nothing is imported.
func TestFeaturesImportBadLines(t *testing.T) {
	addr := redistest.Start(t)
	file := filepath.Join(t.TempDir(), "customers.jsonl")
	content := `{"customer_id": "g1", "features": {"days_past_due": 3}, "ttl": "7d"}
{"customer_id": "b2", "features": {"days_past_due": 3}, "ttl": "a week"}
{"customer_id": "g3", "features": {"risk_score": 0.5}}
{"features": {"risk_score": 0.5}}
`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	store := featurestore.NewRedis(client)
	defer store.Close()
	stored := func(id string) bool {
		st, err := store.State(t.Context(), id, time.Now())
		if err != nil {
			t.Fatalf("State(%s): %v", id, err)
		}
		return len(st.Features) > 0
	}

	var stdout, stderr bytes.Buffer
	args := []string{"features", "import", "--file", file, "--redis", "redis://" + addr, "--atomic"}
	err = run(t.Context(), args, noEnv, nil, &stdout, &stderr)
	if exitCode(err) != 1 || !strings.Contains(stdout.String(), "imported nothing (--atomic): 2 of 4 lines are bad") {
		t.Errorf("arbiter %s = %v, printed %q; want nothing imported and exit 1", strings.Join(args, " "), err, stdout.String())
	}
	if stored("g1") || stored("g3") {
		t.Errorf("features stored after an --atomic import with bad lines")
	}

	stdout.Reset()
	stderr.Reset()
	args = args[:len(args)-1]
	err = run(t.Context(), args, noEnv, nil, &stdout, &stderr)
	if exitCode(err) != 1 || err == nil || !strings.Contains(err.Error(), "2 bad lines, the first line 2:") {
		t.Errorf("arbiter %s = %v, want 2 bad lines and exit 1", strings.Join(args, " "), err)
	}
	want := file + `:2: ttl "a week" is not a positive duration such as "720h" or "30d"` + "\n" + file + ":4: customer_id is required\n"
	if stderr.String() != want {
		t.Errorf("arbiter %s reported:\n%s\nwant every bad line:\n%s", strings.Join(args, " "), stderr.String(), want)
	}
	if !strings.Contains(stdout.String(), "imported 2 customers") || !strings.Contains(stdout.String(), "2 of 4 lines were bad and skipped") {
		t.Errorf("arbiter %s printed %q, want 2 imported and 2 skipped", strings.Join(args, " "), stdout.String())
	}
	if !stored("g1") || !stored("g3") {
		t.Errorf("the good lines were not imported")
	}
}

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
		got, err := loadtest.Import(b.Context(), bytes.NewReader(file.Bytes()), sink, loadtest.SeedOptions{Batch: 2000, Writers: 8})
		if err != nil || got != n {
			b.Fatalf("Import = %d, %v; want %d, nil", got, err, n)
		}
		total += got
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "customers/s")
}

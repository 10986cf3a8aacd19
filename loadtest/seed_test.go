package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// memSink keeps what it is given; failAt makes the batch holding that customer fail.
type memSink struct {
	mu      sync.Mutex
	recs    map[string]FeatureRecord
	batches int
	failAt  string
}

func (s *memSink) WriteBatch(ctx context.Context, recs []FeatureRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	for _, r := range recs {
		if r.CustomerID == s.failAt {
			return errors.New("injected write failure")
		}
	}
	for _, r := range recs {
		s.recs[r.CustomerID] = r
	}
	return nil
}

func TestParseFeatureLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    FeatureRecord
		wantErr string
	}{
		{"full", `{"customer_id": "c1", "features": {"days_past_due": 3, "vulnerable": true, "tz": "Europe/Paris", "gone": null}, "ttl": "720h"}`,
			FeatureRecord{CustomerID: "c1", Features: map[string]any{"days_past_due": 3.0, "vulnerable": true, "tz": "Europe/Paris", "gone": nil}, TTL: 720 * time.Hour}, ""},
		{"no ttl", `{"customer_id": "c2", "features": {"risk_score": 0.5}}`,
			FeatureRecord{CustomerID: "c2", Features: map[string]any{"risk_score": 0.5}}, ""},
		{"missing id", `{"features": {"a": 1}}`, FeatureRecord{}, "customer_id is required"},
		{"empty features", `{"customer_id": "c", "features": {}}`, FeatureRecord{}, "features is required"},
		{"negative ttl", `{"customer_id": "c", "features": {"a": 1}, "ttl": "-1h"}`, FeatureRecord{}, "not a positive duration"},
		{"unknown field", `{"customer_id": "c", "feature": {"a": 1}}`, FeatureRecord{}, "invalid JSON"},
		{"two values", `{"customer_id": "c", "features": {"a": 1}} {}`, FeatureRecord{}, "more than one JSON value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFeatureLine([]byte(tc.line))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseFeatureLine(%s) error = %v, want one containing %q", tc.line, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFeatureLine(%s) error = %v", tc.line, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseFeatureLine(%s) mismatch (-want +got):\n%s", tc.line, diff)
			}
		})
	}
}

func TestImport(t *testing.T) {
	var in bytes.Buffer
	for i := range 2500 {
		fmt.Fprintf(&in, `{"customer_id": "c%d", "features": {"n": %d}}`+"\n", i, i)
	}
	sink := &memSink{recs: map[string]FeatureRecord{}}
	var lastRecords, lastBytes int64
	n, err := Import(t.Context(), bytes.NewReader(in.Bytes()), sink, SeedOptions{Batch: 1000, Writers: 3,
		Progress: func(r, b int64) { lastRecords, lastBytes = r, b }})
	if err != nil || n != 2500 {
		t.Fatalf("Import(2500 lines) = %d, %v; want 2500, nil", n, err)
	}
	if len(sink.recs) != 2500 || sink.batches != 3 {
		t.Errorf("sink got %d records in %d batches, want 2500 in 3", len(sink.recs), sink.batches)
	}
	if got := sink.recs["c1234"].Features["n"]; got != 1234.0 {
		t.Errorf("c1234 feature n = %v, want 1234", got)
	}
	if lastRecords != 2500 || lastBytes != int64(in.Len()) {
		t.Errorf("last progress = %d records, %d bytes; want 2500, %d", lastRecords, lastBytes, in.Len())
	}
}

func TestImportStopsAtBadLineAndWriteError(t *testing.T) {
	lines := "{\"customer_id\": \"a\", \"features\": {\"x\": 1}}\n{\"customer_id\": \"b\", \"features\": {\"x\": 1}}\nnot json\n"
	sink := &memSink{recs: map[string]FeatureRecord{}}
	n, err := Import(t.Context(), strings.NewReader(lines), sink, SeedOptions{Batch: 1})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 3 {
		t.Fatalf("Import(bad line 3) error = %v, want a *LineError at line 3", err)
	}
	if n != 2 {
		t.Errorf("Import(bad line 3) wrote %d records, want the 2 before it", n)
	}

	failing := &memSink{recs: map[string]FeatureRecord{}, failAt: "b"}
	if _, err := Import(t.Context(), strings.NewReader(lines[:strings.Index(lines, "not")]), failing, SeedOptions{Batch: 1}); err == nil ||
		!strings.Contains(err.Error(), "injected") {
		t.Errorf("Import with a failing sink error = %v, want the sink's error", err)
	}
}

func TestSeed(t *testing.T) {
	sink := &memSink{recs: map[string]FeatureRecord{}}
	n, err := Seed(t.Context(), sink, 9, 1203, SeedOptions{Batch: 100})
	if err != nil || n != 1203 {
		t.Fatalf("Seed(1203) = %d, %v; want 1203, nil", n, err)
	}
	p := NewProfile(9, 777)
	if diff := cmp.Diff(p.Features(), sink.recs[CustomerID(777)].Features); diff != "" {
		t.Errorf("seeded features of customer 777 mismatch (-profile +seeded):\n%s", diff)
	}
	// The request's customer agrees with the stored features.
	if c := p.Customer(); c.GetVulnerable() != p.Features()["vulnerable"] || c.GetTimezone() != p.Features()["timezone"] {
		t.Errorf("profile 777: request customer %v disagrees with features %v", c, p.Features())
	}
}

func BenchmarkParseFeatureLine(b *testing.B) {
	line := []byte(`{"customer_id": "lt-cust-0000042", "features": {"days_past_due": 12, "risk_score": 0.731, "timezone": "Europe/London", "vulnerable": false, "hardship": false, "opted_out": true}, "ttl": "720h"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseFeatureLine(line); err != nil {
			b.Fatal(err)
		}
	}
}

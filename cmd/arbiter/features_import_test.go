package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/loadtest"
	"github.com/google/go-cmp/cmp"
)

// recordingSink keeps what it is given; it fails every write after failAfter records when
// failAfter > 0.
type recordingSink struct {
	mu        sync.Mutex
	recs      map[string]loadtest.FeatureRecord
	failAfter int
}

func (s *recordingSink) WriteBatch(_ context.Context, recs []loadtest.FeatureRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAfter > 0 && len(s.recs)+len(recs) > s.failAfter {
		return errors.New("store refused the batch")
	}
	for _, r := range recs {
		s.recs[r.CustomerID] = r
	}
	return nil
}

func (s *recordingSink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestImportFeaturesEveryBadLine: every bad line is reported with its number, wherever it is
// in the batches, and the good lines are written; with atomic, nothing is.
func TestImportFeaturesEveryBadLine(t *testing.T) {
	long := `{"customer_id": "long", "features": {"note": "` + strings.Repeat("x", maxFeatureLine) + `"}}`
	lines := []string{
		`{"customer_id": "c1", "features": {"a": 1}, "ttl": "7d"}`, // 1
		`{"customer_id": "c2", "features": `,                       // 2: cut short
		``,                                                         // 3: blank
		`{"features": {"a": 1}}`,                                   // 4: no id
		`{"customer_id": "c5", "features": {"a": 1}, "ttl": "90m"}`,
		long, // 6: too long
		`{"customer_id": "c7", "features": {"a": 1}, "ttl": "soon"}`, // 7: bad ttl
		`{"customer_id": "c8", "features": {"a": 1}}`,
		`{"customer_id": "c9", "features": {"a": 1}}`,
	}
	input := strings.Join(lines, "\n") // no final newline
	wantBad := []int{2, 4, 6, 7}
	for _, batch := range []int{1, 2, 1000} {
		for _, atomic := range []bool{false, true} {
			t.Run(fmt.Sprintf("batch %d atomic %v", batch, atomic), func(t *testing.T) {
				sink := &recordingSink{recs: map[string]loadtest.FeatureRecord{}}
				res, err := importFeatures(context.Background(), strings.NewReader(input), sink, importOptions{batch: batch, writers: 3, atomic: atomic})
				if err != nil {
					t.Fatalf("importFeatures() error = %v", err)
				}
				var bad []int
				for _, le := range res.bad {
					bad = append(bad, le.Line)
				}
				if diff := cmp.Diff(wantBad, bad); diff != "" {
					t.Errorf("bad lines mismatch (-want +got):\n%s", diff)
				}
				if res.lines != 8 {
					t.Errorf("lines = %d, want 8 (the blank line is not counted)", res.lines)
				}
				want := []string{"c1", "c5", "c8", "c9"}
				if atomic {
					want = nil
				}
				if diff := cmp.Diff(want, sink.ids()); diff != "" {
					t.Errorf("written customers mismatch (-want +got):\n%s", diff)
				}
				if res.written != int64(len(want)) {
					t.Errorf("written = %d, want %d", res.written, len(want))
				}
				if !atomic && sink.recs["c1"].TTL != 7*24*time.Hour {
					t.Errorf("TTL of c1 = %v, want 7d (168h)", sink.recs["c1"].TTL)
				}
			})
		}
	}
	t.Run("atomic and all good", func(t *testing.T) {
		sink := &recordingSink{recs: map[string]loadtest.FeatureRecord{}}
		good := strings.Join([]string{lines[0], lines[4], lines[7]}, "\n") + "\n"
		res, err := importFeatures(context.Background(), strings.NewReader(good), sink, importOptions{batch: 1, writers: 2, atomic: true})
		if err != nil || res.written != 3 || len(res.bad) != 0 {
			t.Errorf("importFeatures(atomic, all good) = %+v, %v; want 3 written", res, err)
		}
	})
	t.Run("store error", func(t *testing.T) {
		sink := &recordingSink{recs: map[string]loadtest.FeatureRecord{}, failAfter: 1}
		_, err := importFeatures(context.Background(), strings.NewReader(input), sink, importOptions{batch: 1, writers: 1})
		if err == nil || !strings.Contains(err.Error(), "store refused") {
			t.Errorf("importFeatures() into a failing store = %v, want its error", err)
		}
	})
}

func TestParseFeatureLineTTL(t *testing.T) {
	tests := []struct {
		ttl  string
		want time.Duration
		ok   bool
	}{
		{`"720h"`, 720 * time.Hour, true},
		{`"30d"`, 30 * 24 * time.Hour, true},
		{`"0d"`, 0, false},
		{`"-1h"`, 0, false},
		{`"1w"`, 0, false},
	}
	for _, tc := range tests {
		line := `{"customer_id": "c", "features": {"a": 1}, "ttl": ` + tc.ttl + `}`
		rec, err := parseFeatureLine([]byte(line))
		if (err == nil) != tc.ok || rec.TTL != tc.want {
			t.Errorf("parseFeatureLine(ttl %s) = %v, %v; want %v, ok %v", tc.ttl, rec.TTL, err, tc.want, tc.ok)
		}
	}
}

func BenchmarkParseFeatureLine(b *testing.B) {
	line := []byte(`{"customer_id": "lt-cust-0000042", "features": {"days_past_due": 12, "risk_score": 0.731, "timezone": "Europe/London", "vulnerable": false, "hardship": false, "opted_out": true}, "ttl": "720h"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseFeatureLine(line); err != nil {
			b.Fatal(err)
		}
	}
}

package loadtest

import (
	"context"
	"errors"
	"sync"
	"testing"

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

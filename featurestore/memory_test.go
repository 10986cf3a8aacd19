package featurestore_test

import (
	"context"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/storetest"
)

// memoryStore lets the conformance suite plant malformed data in a Memory.
type memoryStore struct{ *featurestore.Memory }

var _ storetest.Corrupter = memoryStore{}

func (m memoryStore) Corrupt(ctx context.Context, customerID string, c storetest.Corruption, at time.Time) error {
	w, err := corruption(customerID, c, at)
	if err != nil {
		return err
	}
	m.SetRawForTest(w.key, w.value, w.replace)
	return nil
}

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		m := featurestore.NewMemory()
		t.Cleanup(func() { m.Close() })
		return memoryStore{m}
	})
}

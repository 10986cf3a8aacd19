package loadtest_test

import (
	"testing"

	"github.com/arbiter-dev/arbiter/cardnumber"
	"github.com/arbiter-dev/arbiter/loadtest"
)

// TestEventIDsNeverLookLikeCardNumbers guards the load tester's own traffic against the
// server's card-number guard: a run id ending in digits joined to the request number by a
// bare dash once made 10% of a run's requests fail with INVALID_ARGUMENT.
func TestEventIDsNeverLookLikeCardNumbers(t *testing.T) {
	// Run ids as arbiter loadtest makes them (base 36), with the worst case of many
	// trailing digits.
	for _, runID := range []string{"ltabc123456789", "lt0000000", "run", "lt1b2x9kq"} {
		mix, err := loadtest.NewMix(1, runID, 100)
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(0); i < 20000; i++ {
			if id := mix.Request(i).GetEvent().GetId(); cardnumber.Contains(id) {
				t.Fatalf("Request(%d) with run id %q: event id %q looks like a card number", i, runID, id)
			}
		}
	}
}

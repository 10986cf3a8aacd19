package stream_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the edge's workers and
// fetchers must all have returned once Run did and its connection closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

package archive_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/archive/archivetest"
	"go.uber.org/goleak"
)

// exampleDSN names a database of the examples' own, created by TestMain: examples have no
// testing.T to call archivetest.NewDB with.
var exampleDSN string

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	dsn, drop, err := archivetest.CreateDB(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exampleDSN = dsn
	code := m.Run()
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	if err := drop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	cancel()
	if code == 0 {
		// Every Archive a test opened is closed, and the pool's goroutines with it.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

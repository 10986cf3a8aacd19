//go:build !linux

package loadtest

import (
	"context"
	"time"
)

func pinScheduler() (unpin func()) { return func() {} }

// sleepUntil sleeps until t and reports true, or returns false once ctx is done.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

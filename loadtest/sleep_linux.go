package loadtest

import (
	"context"
	"runtime"
	"syscall"
	"time"
)

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// pinScheduler prepares the calling goroutine to be the open loop's scheduler: Go's own
// timers wake up to a millisecond late on Linux, which at 2,000 requests a second would be
// the generator's lag, not the server's latency. So the scheduler owns its OS thread, with a
// 1 ns timer slack, and sleeps in nanosleep(2) (about 50 µs late instead of 1 ms). The
// returned function undoes it.
func pinScheduler() (unpin func()) {
	runtime.LockOSThread()
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	return func() {
		if errno == 0 {
			syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 0, 0) // 0 restores the default
		}
		runtime.UnlockOSThread()
	}
}

// sleepUntil sleeps until t and reports true, or returns false once ctx is done. It sleeps in
// slices of at most 10 ms so that cancellation is noticed promptly.
func sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		ts := syscall.NsecToTimespec(int64(min(d, 10*time.Millisecond)))
		_ = syscall.Nanosleep(&ts, nil) // EINTR just means we look at the clock again
	}
}

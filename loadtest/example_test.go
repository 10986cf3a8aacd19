package loadtest_test

import (
	"fmt"
	"time"

	"github.com/arbiter-dev/arbiter/loadtest"
)

// A schedule at 2,000 requests per second: each intended send time is computed from the
// start, so a late send never delays the next.
func ExampleSchedule() {
	s := loadtest.Schedule{Start: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), Rate: 2000}
	for i := range int64(3) {
		fmt.Println(s.At(i).Format("15:04:05.000000"))
	}
	fmt.Println(s.Count(time.Second), "requests in the first second")
	// Output:
	// 09:00:00.000000
	// 09:00:00.000500
	// 09:00:00.001000
	// 2000 requests in the first second
}

// The same seed, run id and request number always give the same request.
func ExampleMix() {
	mix, err := loadtest.NewMix(42, "run1", 10000, loadtest.WithDuplicates(0))
	if err != nil {
		panic(err)
	}
	a, b := mix.Request(7), mix.Request(7)
	fmt.Println(a.GetEvent().GetId(), a.GetCustomer().GetId() == b.GetCustomer().GetId(), a.GetEvent().GetType() == b.GetEvent().GetType())
	// Output:
	// run1-e7 true true
}

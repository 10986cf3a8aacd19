package loadtest

import (
	"math"
	"os"
	"strconv"
	"strings"
)

// stealWarnPercent is the share of CPU time taken by the hypervisor above which a report
// warns that the machine was shared.
const stealWarnPercent = 5

// CPUStat is a reading of the machine's CPU time so far, from the "cpu" line of /proc/stat,
// in clock ticks: all of it, and the part the hypervisor ran other guests on while this one
// wanted to run (steal).
type CPUStat struct {
	total, steal uint64
	ok           bool
}

// ReadCPUStat reads the machine's CPU time so far; the reading is unknown (StealPercent
// returns -1) where /proc/stat is not there or not understood.
func ReadCPUStat() CPUStat {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUStat{}
	}
	return parseCPUStat(string(b))
}

// parseCPUStat reads the first line of /proc/stat: "cpu user nice system idle iowait irq
// softirq steal guest guest_nice". Guest time is already counted in user and nice.
func parseCPUStat(s string) CPUStat {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return CPUStat{}
	}
	var st CPUStat
	for i, x := range f[1:9] {
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return CPUStat{}
		}
		st.total += n
		if i == 7 {
			st.steal = n
		}
	}
	st.ok = true
	return st
}

// StealPercent returns the share of the machine's CPU time between readings a and b that the
// hypervisor gave to other guests, in percent with one decimal, or -1 when unknown. On a
// shared VM a run with steal measured the machine's neighbours as much as the server.
func StealPercent(a, b CPUStat) float64 {
	if !a.ok || !b.ok || b.total <= a.total || b.steal < a.steal {
		return -1
	}
	return math.Round(1000*float64(b.steal-a.steal)/float64(b.total-a.total)) / 10
}

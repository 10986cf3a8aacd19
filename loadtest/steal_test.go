package loadtest

import (
	"bytes"
	"strings"
	"testing"
)

func TestStealPercent(t *testing.T) {
	// /proc/stat first lines: user nice system idle iowait irq softirq steal guest guest_nice.
	before := parseCPUStat("cpu  1000 0 500 8000 100 0 50 350 0 0\ncpu0 500 0 250 4000 50 0 25 175 0 0\n")
	after := parseCPUStat("cpu  1600 0 800 8400 120 0 80 1000 40 0\n")
	tests := []struct {
		name string
		a, b CPUStat
		want float64
	}{
		// 2,000 ticks passed, 650 of them stolen.
		{"steal", before, after, 32.5},
		{"no time passed", before, before, -1},
		{"unknown before", CPUStat{}, after, -1},
		{"not a cpu line", parseCPUStat("intr 1 2 3 4 5 6 7 8 9\n"), after, -1},
		{"too few fields (old kernel)", parseCPUStat("cpu 1 2 3 4\n"), after, -1},
		{"not a number", parseCPUStat("cpu 1 2 3 x 5 6 7 8\n"), after, -1},
	}
	for _, tc := range tests {
		if got := StealPercent(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: StealPercent() = %v, want %v", tc.name, got, tc.want)
		}
	}
	if s := ReadCPUStat(); s.ok && StealPercent(s, s) != -1 {
		t.Errorf("StealPercent(same reading) = %v, want -1", StealPercent(s, s))
	}
}

// TestWriteSummarySteal: the summary states the stolen share and warns above 5%.
func TestWriteSummarySteal(t *testing.T) {
	tests := []struct {
		steal       float64
		want, avoid []string
	}{
		{32.5, []string{"32.5% of the CPU time stolen by the hypervisor", "WARNING: the hypervisor ran other guests for 32.5%"}, nil},
		{1.2, []string{"1.2% of the CPU time stolen"}, []string{"WARNING: the hypervisor"}},
		{-1, nil, []string{"stolen", "WARNING: the hypervisor"}},
	}
	for _, tc := range tests {
		rep := sampleReport()
		rep.StealPercent = tc.steal
		var buf bytes.Buffer
		if err := rep.WriteSummary(&buf); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("steal %v: WriteSummary() lacks %q; got:\n%s", tc.steal, w, out)
			}
		}
		for _, w := range tc.avoid {
			if strings.Contains(out, w) {
				t.Errorf("steal %v: WriteSummary() has %q; got:\n%s", tc.steal, w, out)
			}
		}
	}
}

package decision

import (
	"testing"
	"time"
)

func TestQuietHoursAcrossZones(t *testing.T) {
	def := quietPeriod{start: quietStartDefault, end: quietEndDefault}
	tests := []struct {
		name      string
		zone      string
		q         quietPeriod
		at        string // UTC
		want      string // UTC
		wantMoved bool
	}{
		// Europe/London: clocks go forward 2026-03-29 01:00 UTC, back 2026-10-25 01:00 UTC.
		{"London before spring forward: the night is 23h", "Europe/London", def,
			"2026-03-28T22:30:00Z", "2026-03-29T07:00:00Z", true}, // 22:30 GMT -> 08:00 BST
		{"London after the change, early morning", "Europe/London", def,
			"2026-03-29T05:30:00Z", "2026-03-29T07:00:00Z", true}, // 06:30 BST -> 08:00 BST
		{"London before fall back: the night is 25h", "Europe/London", def,
			"2026-10-24T22:00:00Z", "2026-10-25T08:00:00Z", true}, // 23:00 BST -> 08:00 GMT
		{"London in the repeated hour", "Europe/London", def,
			"2026-10-25T00:30:00Z", "2026-10-25T08:00:00Z", true}, // 01:30 BST -> 08:00 GMT
		{"London 07:59 GMT is quiet", "Europe/London", def,
			"2026-12-01T07:59:00Z", "2026-12-01T08:00:00Z", true},
		{"London 08:00 BST is not quiet", "Europe/London", def,
			"2026-06-01T07:00:00Z", "2026-06-01T07:00:00Z", false},
		{"London 20:59 BST is not quiet", "Europe/London", def,
			"2026-06-01T19:59:59Z", "2026-06-01T19:59:59Z", false},
		// America/New_York: forward 2026-03-08 07:00 UTC, back 2026-11-01 06:00 UTC.
		{"New York before spring forward", "America/New_York", def,
			"2026-03-08T02:30:00Z", "2026-03-08T12:00:00Z", true}, // 21:30 EST -> 08:00 EDT
		{"New York in the skipped night", "America/New_York", def,
			"2026-03-08T07:30:00Z", "2026-03-08T12:00:00Z", true}, // 03:30 EDT -> 08:00 EDT
		{"New York in the repeated hour (first)", "America/New_York", def,
			"2026-11-01T05:30:00Z", "2026-11-01T13:00:00Z", true}, // 01:30 EDT -> 08:00 EST
		{"New York in the repeated hour (second)", "America/New_York", def,
			"2026-11-01T06:30:00Z", "2026-11-01T13:00:00Z", true}, // 01:30 EST -> 08:00 EST
		{"New York 21:00 EST", "America/New_York", def,
			"2026-01-15T02:00:00Z", "2026-01-15T13:00:00Z", true},
		// Half- and quarter-hour offsets.
		{"Kolkata +05:30", "Asia/Kolkata", def,
			"2026-06-01T15:30:00Z", "2026-06-02T02:30:00Z", true}, // 21:00 IST -> 08:00 IST
		{"Kolkata 20:59 +05:30", "Asia/Kolkata", def,
			"2026-06-01T15:29:00Z", "2026-06-01T15:29:00Z", false},
		{"Kathmandu +05:45", "Asia/Kathmandu", def,
			"2026-06-01T16:00:00Z", "2026-06-02T02:15:00Z", true}, // 21:45 -> 08:00
		{"Adelaide summer +10:30", "Australia/Adelaide", def,
			"2026-01-15T11:00:00Z", "2026-01-15T21:30:00Z", true}, // 21:30 ACDT -> 08:00 ACDT
		{"Adelaide winter +09:30", "Australia/Adelaide", def,
			"2026-06-15T12:00:00Z", "2026-06-15T22:30:00Z", true}, // 21:30 ACST -> 08:00 ACST
		{"Adelaide spring forward (2026-10-04)", "Australia/Adelaide", def,
			"2026-10-03T12:30:00Z", "2026-10-03T21:30:00Z", true}, // 22:00 ACST -> 08:00 ACDT
		{"Adelaide fall back (2026-04-05)", "Australia/Adelaide", def,
			"2026-04-04T11:00:00Z", "2026-04-04T22:30:00Z", true}, // 21:30 ACDT -> 08:00 ACST
		// A custom window.
		{"marketing 20:00 to 09:00", "Europe/London", quietPeriod{start: 20 * 60, end: 9 * 60},
			"2026-06-01T19:15:00Z", "2026-06-02T08:00:00Z", true},
		{"a window that does not wrap", "UTC", quietPeriod{start: 0, end: 6 * 60},
			"2026-06-01T02:00:00Z", "2026-06-01T06:00:00Z", true},
		{"empty window", "UTC", quietPeriod{},
			"2026-06-01T02:00:00Z", "2026-06-01T02:00:00Z", false},
	}
	var lc locationCache
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := lc.load(tt.zone)
			if loc == nil {
				t.Fatalf("load(%q) = nil, want a zone", tt.zone)
			}
			at, want := mustTime(t, tt.at), mustTime(t, tt.want)
			got, moved := tt.q.deferFrom(at, loc)
			if !got.Equal(want) || moved != tt.wantMoved {
				t.Errorf("deferFrom(%s in %s) = %s, %v, want %s, %v", tt.at, tt.zone, got.Format(time.RFC3339), moved, tt.want, tt.wantMoved)
			}
			if l := got.In(loc); tt.q.contains(l.Hour()*60 + l.Minute()) {
				t.Errorf("deferFrom(%s in %s) = %s, which is inside the window", tt.at, tt.zone, l)
			}
		})
	}
}

func TestLocationCache(t *testing.T) {
	var lc locationCache
	for _, name := range []string{"", "Local", "Nowhere/Land", "../../etc/passwd", "Europe/London\x00", "Europe/London ", "Europe/Lon\u00e9"} {
		if l := lc.load(name); l != nil {
			t.Errorf("load(%q) = %v, want nil", name, l)
		}
	}
	before := lc.unknown.Load()
	for range 3 {
		if l := lc.load("Mars/Olympus_Mons"); l != nil {
			t.Errorf("load(Mars/Olympus_Mons) = %v, want nil", l)
		}
	}
	if n := lc.unknown.Load() - before; n != 1 {
		t.Errorf("an unknown zone looked up %d times, want once", n)
	}
	if allocs := testing.AllocsPerRun(100, func() { lc.load("Mars/Olympus_Mons") }); allocs != 0 {
		t.Errorf("cached unknown load allocates %v times, want 0", allocs)
	}
	a, b := lc.load("Asia/Kolkata"), lc.load("Asia/Kolkata")
	if a == nil || a != b {
		t.Errorf("load(Asia/Kolkata) twice = %p, %p, want the same cached zone", a, b)
	}
	if allocs := testing.AllocsPerRun(100, func() { lc.load("Asia/Kolkata") }); allocs != 0 {
		t.Errorf("cached load allocates %v times, want 0", allocs)
	}
}

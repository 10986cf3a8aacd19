package decision

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// quietPeriod is a daily quiet window in local wall-clock minutes after midnight, from start
// (inclusive) to end (exclusive), wrapping midnight when start > end. start == end is empty.
type quietPeriod struct {
	start, end int
}

// contains reports whether the local wall-clock minute m falls in the window.
func (q quietPeriod) contains(m int) bool {
	switch {
	case q.start == q.end:
		return false
	case q.start < q.end:
		return m >= q.start && m < q.end
	default:
		return m >= q.start || m < q.end
	}
}

// defer returns the first instant at or after t that is outside the window in loc, and whether
// t was inside it. The end of the window is the local wall-clock time q.end, so the result is
// right across daylight-saving changes: 08:00 local is 08:00 local whether the night was 23 or
// 25 hours long.
func (q quietPeriod) deferFrom(t time.Time, loc *time.Location) (time.Time, bool) {
	local := t.In(loc)
	m := local.Hour()*60 + local.Minute()
	if !q.contains(m) {
		return t, false
	}
	y, mo, d := local.Date()
	if q.start > q.end && m >= q.start {
		d++ // the window ends tomorrow
	}
	end := time.Date(y, mo, d, q.end/60, q.end%60, 0, 0, loc)
	// When the end wall-clock time does not exist (a spring-forward gap), time.Date moves it
	// forward, which is still outside the window. Guard against any result not after t.
	for !end.After(t) {
		end = end.Add(time.Hour)
	}
	// The instant may still read as inside the window if the gap pushed it back in; step on.
	for i := 0; i < 4; i++ {
		l := end.In(loc)
		if !q.contains(l.Hour()*60 + l.Minute()) {
			break
		}
		end = end.Add(30 * time.Minute)
	}
	return end.In(time.UTC), true
}

// locationCache resolves IANA zone names once and keeps the result. Valid zones are all kept
// (there are about 600); unknown names are remembered too, up to maxUnknownZones of them, so a
// stored bad `timezone` feature does not cost a zoneinfo lookup on every decision, and a
// stream of made-up names cannot grow the cache without bound.
type locationCache struct {
	m       sync.Map // string -> *time.Location (nil: unknown)
	unknown atomic.Int32
}

const maxUnknownZones = 1024

// load returns the location named name, or nil when the name is empty, "Local", malformed
// or unknown.
func (c *locationCache) load(name string) *time.Location {
	if v, ok := c.m.Load(name); ok {
		return v.(*time.Location)
	}
	if !zoneName(name) {
		return nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		if c.unknown.Add(1) <= maxUnknownZones {
			c.m.Store(name, (*time.Location)(nil))
		}
		return nil
	}
	c.m.Store(name, loc)
	return loc
}

// zoneName reports whether name looks like an IANA zone name: 1 to 64 characters of
// [A-Za-z0-9/_+-], not "Local" and without "..".
func zoneName(name string) bool {
	if name == "" || len(name) > 64 || name == "Local" || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '/', c == '_', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}

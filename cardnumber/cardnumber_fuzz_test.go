package cardnumber

import (
	"regexp"
	"strings"
	"testing"
)

// naiveContainsCardNumber is Contains written the slow, obvious way: split s into maximal
// digit groups; try every whole group of 13 to 19 digits that is not a timestamp, every span of
// two or more whole groups of at most 6 digits joined by exactly one space or dash, and every
// substring of 13 to 19 digits of a group of 17 to 19 digits that is not a timestamp.
func naiveContainsCardNumber(s string) bool { return naiveCardScan(s, true) }

// naiveCardScan is naiveContainsCardNumber with the UUID rule on or off.
func naiveCardScan(s string, uuidRule bool) bool {
	type group struct{ start, end int }
	var groups []group
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		groups = append(groups, group{i, j})
		i = j
	}
	timestamp := func(d string) bool {
		return (len(d) == 13 || len(d) == 16 || len(d) == 19) && d[:2] >= "15" && d[:2] <= "20"
	}
	for _, g := range groups {
		d := s[g.start:g.end]
		if len(d) < 13 || len(d) > 19 || timestamp(d) {
			continue
		}
		if luhnValid(d) {
			return true
		}
		if len(d) >= 17 {
			for i := 0; i < len(d); i++ {
				for j := i + 13; j <= len(d) && j-i <= 19; j++ {
					if luhnValid(d[i:j]) {
						return true
					}
				}
			}
		}
	}
	for a := range groups {
		digits := ""
		for b := a; b < len(groups); b++ {
			if groups[b].end-groups[b].start > 6 {
				break
			}
			if b > a {
				gap := s[groups[b-1].end:groups[b].start]
				if len(gap) != 1 || (gap[0] != ' ' && gap[0] != '-') {
					break
				}
			}
			digits += s[groups[b].start:groups[b].end]
			if len(digits) > 19 {
				break
			}
			if len(digits) >= 13 && luhnValid(digits) && !(uuidRule && naiveInUUID(s, groups[a].start, groups[b].end)) {
				return true
			}
		}
	}
	return false
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// naiveInUUID reports whether s[i:j] is inside some 36-byte window of s that is a UUID not
// touching another hex digit.
func naiveInUUID(s string, i, j int) bool {
	isHex := func(c byte) bool { return strings.ContainsRune("0123456789abcdefABCDEF", rune(c)) }
	for st := 0; st+36 <= len(s); st++ {
		if st <= i && j <= st+36 && uuidRE.MatchString(s[st:st+36]) &&
			(st == 0 || !isHex(s[st-1])) && (st+36 == len(s) || !isHex(s[st+36])) {
			return true
		}
	}
	return false
}

func FuzzContainsCardNumber(f *testing.F) {
	for _, s := range []string{"", "4111 1111 1111 1111", "4111-1111-1111-1111", "12 4111111111111111", "4111  1111", "378282246310005", "x-1-2-3-4-5-6-7-8-9-0-1-2-3-y", "3f-01234567-1234-7123-8123-123456789012", "14832423834581860", "evt-1733312345123456789", "1733312345123", "112-1234567-1234567", "4111111111111111123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Contains(s)
		if want := naiveContainsCardNumber(s); got != want {
			t.Errorf("Contains(%q) = %v, want %v", s, got, want)
		}
		if b := Contains([]byte(s)); b != got {
			t.Errorf("Contains([]byte(%q)) = %v, string form %v", s, b, got)
		}
	})
}

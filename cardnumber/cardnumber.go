// Package cardnumber finds payment card numbers (PANs) in text: runs of 13 to 19 digits that
// pass the Luhn check. Arbiter refuses requests and data that hold one, so that card numbers
// never reach its store, its logs or its decision records (PCI DSS scope); see
// docs/security.md. The detector never allocates, so it can guard every request.
package cardnumber

// Lengths of the digit runs the detector considers.
const (
	minDigits = 13 // the shortest card number
	maxDigits = 19 // the longest card number
	// maxSpanGroup is the longest digit group that joins other groups into a card number:
	// cards are printed in groups of 3 to 6 digits (4-4-4-4, 4-6-5, 4-4-4-4-3).
	maxSpanGroup = 6
	// minEmbedding is the shortest group searched for a card number inside it, with extra
	// digits before or after: a 16-digit card with one to three more.
	minEmbedding = 17
)

// Contains reports whether s holds what looks like a card number: 13 to 19 ASCII digits that
// pass the Luhn check, found in one of three ways. A digit group is a maximal run of digits.
//
//   - A whole group of 13 to 19 digits ("4111111111111111").
//   - Two or more whole groups of at most 6 digits each, joined by single spaces or dashes
//     ("4111 1111 1111 1111", "3782-822463-10005"), 13 to 19 digits in all, anywhere in a
//     longer run of such groups ("ref 12 4111 1111 1111 1111 123").
//   - Any 13 to 19 consecutive digits inside a group of 17 to 19 digits: a card number with
//     up to three extra digits before or after it ("14111111111111111").
//
// What is not a card number: a group of more than 19 digits (a long numeric id); a group of
// 13, 16 or 19 digits starting 15 to 20, which is a Unix time in milliseconds, microseconds or
// nanoseconds between July 2017 and July 2036 ("evt-1733312345123456789"; no card number of
// those lengths starts so); groups of 7 to 12 digits joined to others ("112-1234567-1234567",
// "20261125-004213"); digits inside a UUID (8-4-4-4-12 hex digits with dashes), since about 1
// random UUID in 350 would otherwise match. Any character but a digit, or a single space or dash
// between two groups, ends a run. docs/security.md gives the measured false-positive rates. It
// never allocates.
func Contains[T string | []byte](s T) bool {
	n := len(s)
	if n < minDigits {
		return false
	}
	for gs := 0; gs < n; {
		if !isDigit(s[gs]) {
			gs++
			continue
		}
		ge := gs + 1
		for ge < n && isDigit(s[ge]) {
			ge++
		}
		switch l := ge - gs; {
		case l <= maxSpanGroup:
			if cardInSpan(s, gs, ge) {
				return true
			}
		case l >= minDigits && l <= maxDigits && !isTimestamp(s, gs, l):
			if cardInGroup(s, gs, ge) {
				return true
			}
		}
		gs = ge
	}
	return false
}

// luhn adds the digit c to the running Luhn sums of a candidate that has digits digits so far.
// sumEven doubles the digits at even offsets from the candidate's start, sumOdd those at odd
// offsets; which one is the Luhn sum depends on the parity of the final length (the rightmost
// digit is never doubled), see luhnOK.
func luhn(c byte, digits int, sumEven, sumOdd *int) {
	d := int(c - '0')
	dd := d * 2
	if dd > 9 {
		dd -= 9
	}
	if digits%2 == 0 {
		*sumEven += dd
		*sumOdd += d
	} else {
		*sumEven += d
		*sumOdd += dd
	}
}

// luhnOK reports whether a candidate of digits digits with the sums of luhn passes.
func luhnOK(digits, sumEven, sumOdd int) bool {
	if (digits-1)%2 == 1 {
		return sumEven%10 == 0
	}
	return sumOdd%10 == 0
}

// cardInSpan reports whether a card number starts at the group s[gs:ge] (at most maxSpanGroup
// digits) and ends at the end of it or of a later group of the same run, every group of the
// span having at most maxSpanGroup digits.
func cardInSpan[T string | []byte](s T, gs, ge int) bool {
	n := len(s)
	digits, sumEven, sumOdd := 0, 0, 0
	for j := gs; j < n; j++ {
		c := s[j]
		if isDigit(c) {
			luhn(c, digits, &sumEven, &sumOdd)
			digits++
			if digits > maxDigits {
				return false
			}
			groupEnd := j+1 == n || !isDigit(s[j+1])
			if groupEnd && digits >= minDigits && luhnOK(digits, sumEven, sumOdd) && !inUUID(s, gs, j+1) {
				return true
			}
			continue
		}
		// A single separator between two digits continues the run, if the next group is short.
		if (c == ' ' || c == '-') && j > gs && isDigit(s[j-1]) && j+1 < n && isDigit(s[j+1]) {
			k := j + 1
			for k < n && isDigit(s[k]) && k-(j+1) <= maxSpanGroup {
				k++
			}
			if k-(j+1) <= maxSpanGroup {
				continue
			}
		}
		return false
	}
	return false
}

// cardInGroup reports whether the group s[gs:ge] of 13 to 19 digits is a card number, or,
// from minEmbedding digits, holds one anywhere inside it.
func cardInGroup[T string | []byte](s T, gs, ge int) bool {
	l := ge - gs
	lastStart := gs // a short group is a card number only as a whole
	if l >= minEmbedding {
		lastStart = ge - minDigits
	}
	for i := gs; i <= lastStart; i++ {
		digits, sumEven, sumOdd := 0, 0, 0
		for j := i; j < ge; j++ {
			luhn(s[j], digits, &sumEven, &sumOdd)
			digits++
			if digits >= minDigits && (l >= minEmbedding || j+1 == ge) && luhnOK(digits, sumEven, sumOdd) {
				return true
			}
		}
	}
	return false
}

// isTimestamp reports whether the group of l digits at s[gs] reads as a Unix time in
// milliseconds (13 digits), microseconds (16) or nanoseconds (19) from 1.5e9 to 2.1e9 seconds
// (2017-07-14 to 2036-07-18): the first two digits are 15 to 20. No card number of those
// lengths starts with 15 to 20 (card numbers start with 2 to 6, and the 2-series of
// Mastercard and Mir starts at 22).
func isTimestamp[T string | []byte](s T, gs, l int) bool {
	if l != 13 && l != 16 && l != 19 {
		return false
	}
	a, b := s[gs], s[gs+1]
	return a == '1' && b >= '5' || a == '2' && b == '0'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// inUUID reports whether s[i:j] lies inside a UUID: 8-4-4-4-12 hex digits joined by
// dashes, with no hex digit right before or after it. Ids are not card numbers.
func inUUID[T string | []byte](s T, i, j int) bool {
	const uuidLen = 36
	for st := max(0, j-uuidLen); st <= i; st++ {
		end := st + uuidLen
		if end > len(s) {
			return false
		}
		if s[st+8] != '-' || s[st+13] != '-' || s[st+18] != '-' || s[st+23] != '-' {
			continue
		}
		if st > 0 && isHex(s[st-1]) || end < len(s) && isHex(s[end]) {
			continue
		}
		ok := true
		for k := st; k < end && ok; k++ {
			switch k - st {
			case 8, 13, 18, 23:
			default:
				ok = isHex(s[k])
			}
		}
		if ok {
			return true
		}
	}
	return false
}

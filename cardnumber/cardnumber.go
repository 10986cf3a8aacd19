// Package cardnumber finds payment card numbers (PANs) in text: runs of 13 to 19 digits that
// pass the Luhn check. Arbiter refuses requests and data that hold one, so that card numbers
// never reach its store, its logs or its decision records (PCI DSS scope); see
// docs/security.md. The detector never allocates, so it can guard every request.
package cardnumber

// Contains reports whether s holds a sequence of 13 to 19 ASCII digits that passes
// the Luhn check. Digits may be separated by single spaces or dashes ("4111 1111 1111 1111",
// "4111-1111-1111-1111"). A candidate starts at the start of a digit group and ends at the end
// of one, so a card number written inside a longer run of grouped digits is still found, while
// a run of more than 19 digits with no separator (a long numeric id) is not a card number. Any
// other character ends a run. Digits inside a UUID (8-4-4-4-12 hex digits with dashes, such as
// an event or decision id) are not a card number: about 1 random UUID in 350 would otherwise
// match. It never allocates.
func Contains[T string | []byte](s T) bool {
	const minDigits, maxDigits = 13, 19
	n := len(s)
	if n < minDigits {
		return false
	}
	for i := 0; i < n; i++ {
		if !isDigit(s[i]) {
			continue
		}
		// i is the start of a digit group when it follows a non-digit.
		if i > 0 && isDigit(s[i-1]) {
			continue
		}
		// Walk forward from this group start, checking Luhn at every group end. sumEven doubles
		// digits at even offsets from the start, sumOdd those at odd offsets; which one is the
		// Luhn sum depends on the parity of the length.
		digits, sumEven, sumOdd := 0, 0, 0
		for j := i; j < n; j++ {
			c := s[j]
			if isDigit(c) {
				d := int(c - '0')
				dd := d * 2
				if dd > 9 {
					dd -= 9
				}
				if digits%2 == 0 {
					sumEven += dd
					sumOdd += d
				} else {
					sumEven += d
					sumOdd += dd
				}
				digits++
				if digits > maxDigits {
					break
				}
				groupEnd := j+1 == n || !isDigit(s[j+1])
				if groupEnd && digits >= minDigits {
					// The rightmost digit (offset digits-1) is never doubled.
					sum := sumOdd
					if (digits-1)%2 == 1 {
						sum = sumEven
					}
					if sum%10 == 0 && !inUUID(s, i, j+1) {
						return true
					}
				}
				continue
			}
			// A single separator between two digits continues the run.
			if (c == ' ' || c == '-') && j > i && isDigit(s[j-1]) && j+1 < n && isDigit(s[j+1]) {
				continue
			}
			break
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// inUUID reports whether s[i:j] lies inside a UUID: 8-4-4-4-12 hex digits joined by
// dashes, with no hex digit right before or after it. About 1 random UUID in 350 holds a
// Luhn-valid run of digit groups; ids are not card numbers.
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

package cardnumber

import (
	"testing"

	"github.com/google/uuid"
)

func TestContainsCardNumber(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"empty", "", false},
		{"short", "4111", false},
		{"visa", "4111111111111111", true},
		{"visa spaces", "4111 1111 1111 1111", true},
		{"visa dashes", "4111-1111-1111-1111", true},
		{"visa mixed separators", "4111 1111-1111 1111", true},
		{"embedded in text", "card:4111111111111111,exp", true},
		{"after other digit groups", "ref 12 4111 1111 1111 1111", true},
		{"followed by cvv", "4111 1111 1111 1111 123", true},
		{"amex 15", "378282246310005", true},
		{"13 digits", "4222222222222", true},
		{"19 digits", "4000000000000000006", true},
		{"luhn fails", "4111111111111112", false},
		{"12 digits luhn ok", "411111111116", false},
		{"20 contiguous digits", "41111111111111111113", false},
		{"one extra leading digit", "14832423834581860", true},
		{"two extra leading digits", "994111111111111111", true},
		{"three extra leading digits", "2124111111111111111", true},
		{"cvv run on", "4111111111111111123", true},
		{"extra digit in text", "card_number=14832423834581860;", true},
		{"extra digit before a 13-digit group is not searched", "14222222222222", false},
		{"nanosecond timestamp", "evt-1733312345123456789", false},
		{"microsecond timestamp", "evt-1733312345123450", false},
		{"millisecond timestamp", "evt-1733312345122", false},
		{"timestamp era starts 2017", "1499999999991", true},
		{"timestamp era ends 2036", "2112345678909", true},
		{"order number 3-7-7", "112-1234567-1234565", false},
		{"date and sequence", "20261125-004213", false},
		{"short groups then a long one", "4111 1111 1111 1111111", false},
		{"double space breaks the run", "4111  1111  1111  1111", false},
		{"dot separator breaks the run", "4111.1111.1111.1111", false},
		{"letters break the run", "4111a1111b1111c1111", false},
		{"uuid", "123e4567-e89b-12d3-a456-426614174000", false},
		{"trailing separator", "4111111111111111-", true},
		{"leading separator", "-4111111111111111", true},
		{"plain words", "the customer called about a late fee", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Contains(tt.in); got != tt.want {
				t.Errorf("Contains(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if got := Contains([]byte(tt.in)); got != tt.want {
				t.Errorf("Contains([]byte(%q)) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, pan := range TestNumbers {
		if !Contains(pan) {
			t.Errorf("Contains(%q) = false, want true", pan)
		}
	}
}

func TestContainsCardNumberAgreesWithLuhn(t *testing.T) {
	// A contiguous 13..16 digit string that is not a timestamp is a card number exactly when it
	// passes Luhn; a 17..19 digit one when any 13..19 digits of it do.
	base := "8763490127365498127"
	for n := 13; n <= 19; n++ {
		for last := '0'; last <= '9'; last++ {
			s := base[:n-1] + string(last)
			want := luhnValid(s)
			for i := 0; n >= 17 && i < n; i++ {
				for j := i + 13; j <= min(n, i+19); j++ {
					want = want || luhnValid(s[i:j])
				}
			}
			if got := Contains(s); got != want {
				t.Errorf("Contains(%q) = %v, want %v", s, got, want)
			}
		}
	}
}

func TestContainsCardNumberAllocs(t *testing.T) {
	inputs := []string{"evt-1733312345123456789", "112-1234567-1234565", "14832423834581860 x", "4111 1111 1111 1111"}
	var b [32]byte
	if n := testing.AllocsPerRun(100, func() {
		for _, s := range inputs {
			Contains(s)
			Contains(append(b[:0], s...))
		}
	}); n != 0 {
		t.Errorf("Contains allocates %v times per run, want 0", n)
	}
}

func BenchmarkContainsCardNumber(b *testing.B) {
	s := "customer called about invoice 2026-11-25 ref 12345678 and asked for a payment plan"
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		Contains(s)
	}
}

func TestContainsCardNumberUUIDs(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		// UUIDs holding a Luhn-valid span of digit groups (found by sampling): ids.
		{"f2d00630-5323-4565-97cf-bc050a984992", false},
		{"0ad6bcad-2123-4696-9476-2c2c8ba90237", false},
		{"evt-7e8c8168-4481-4992-991a-22eeba954991", false},
		{"3f-dbb94427-8462-4566-846d-46364be72904", false},
		// A card number beside a UUID is still found.
		{"f2d00630-5323-4565-97cf-bc050a984992 4111 1111 1111 1111", true},
		// Not a UUID: one hex digit too many on either side.
		{"ff2d00630-5323-4565-97cf-bc050a984992", true},
		{"f2d00630-5323-4565-97cf-bc050a9849920", true},
		// A card number in 4-4-4-4 form is not UUID-shaped.
		{"4111-1111-1111-1111", true},
	}
	for _, tt := range tests {
		if got := Contains(tt.in); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if !naiveCardScan(tt.in, false) {
			t.Errorf("naiveCardScan(%q, no UUID rule) = false: the case does not test the UUID rule", tt.in)
		}
	}
	// Random UUIDs: without the UUID rule about 1 in 650 would match; with it none does.
	withoutRule := 0
	for range 20000 {
		id := uuid.NewString()
		if naiveCardScan(id, false) {
			withoutRule++
		}
		if Contains(id) {
			t.Fatalf("Contains(uuid %q) = true, want false", id)
		}
	}
	if withoutRule == 0 {
		t.Errorf("no random UUID had a Luhn-valid digit span: the test no longer exercises the UUID rule")
	}
}

// luhnValid is an independent, obviously correct Luhn check used to test the scanner.
func luhnValid(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

package cardnumber

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
)

// idKind is a family of realistic identifiers that are not card numbers, with a generator
// and the most of them Contains may flag.
type idKind struct {
	name string
	gen  func(r *rand.Rand, c *rand.ChaCha8) string
	// maxRate is the highest false-positive rate allowed; -1: measured and reported only.
	maxRate float64
}

// Unix times of the era the timestamp rule covers, and of the ids generated here.
var (
	eraStart = time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)
	eraEnd   = time.Date(2036, 7, 1, 0, 0, 0, 0, time.UTC)
)

func randomTime(r *rand.Rand) time.Time {
	return eraStart.Add(time.Duration(r.Int64N(int64(eraEnd.Sub(eraStart)))))
}

// falsePositiveKinds are the identifier families of docs/security.md's false-positive table.
var falsePositiveKinds = []idKind{
	{"UUID v4 (evt-<uuid>)", func(_ *rand.Rand, c *rand.ChaCha8) string {
		return "evt-" + uuid.Must(uuid.NewRandomFromReader(c)).String()
	}, 0},
	{"UUID v7", func(_ *rand.Rand, c *rand.ChaCha8) string {
		return uuid.Must(uuid.NewV7FromReader(c)).String()
	}, 0},
	{"nanosecond timestamp (evt-<ns>)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("evt-%d", randomTime(r).UnixNano())
	}, 0},
	{"nanosecond timestamp and sequence (<ns>-<seq>)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("%d-%d", randomTime(r).UnixNano(), r.IntN(1000))
	}, 0},
	{"microsecond timestamp (evt-<us>)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("evt-%d", randomTime(r).UnixMicro())
	}, 0},
	{"millisecond timestamp (evt-<ms>)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("evt-%d", randomTime(r).UnixMilli())
	}, 0},
	{"millisecond timestamp and sequence (<ms>-<seq4>)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("%d-%04d", randomTime(r).UnixMilli(), r.IntN(10000))
	}, 0},
	{"order number ORD-<8 digits>", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("ORD-%08d", r.IntN(100_000_000))
	}, 0},
	{"order number 3-7-7 (112-1234567-1234567)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("%03d-%07d-%07d", r.IntN(1000), r.IntN(10_000_000), r.IntN(10_000_000))
	}, 0},
	{"order number <yyyymmdd>-<6 digits>", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return randomTime(r).Format("20060102") + fmt.Sprintf("-%06d", r.IntN(1_000_000))
	}, 0},
	{"order number INV-<yyyy>-<6 digits>-<2 digits>", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("INV-%d-%06d-%02d", 2018+r.IntN(18), r.IntN(1_000_000), r.IntN(100))
	}, 0},
	// Not identifiers to use, reported so the table shows what the rules cost.
	{"random 16-digit number (report only)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("%016d", r.Int64N(1e16))
	}, -1},
	{"random 19-digit number (report only)", func(r *rand.Rand, _ *rand.ChaCha8) string {
		return fmt.Sprintf("%d", 1e18+r.Int64N(8e18))
	}, -1},
}

// TestFalsePositiveRates measures how often realistic identifiers that are not card numbers
// are taken for one: 100,000 of each kind, from a fixed seed. docs/security.md quotes the
// figures this logs (go test ./cardnumber -run TestFalsePositiveRates -v).
func TestFalsePositiveRates(t *testing.T) {
	const perKind = 100_000
	for i, k := range falsePositiveKinds {
		r := rand.New(rand.NewPCG(uint64(i), 19))
		c := rand.NewChaCha8([32]byte{byte(i)})
		flagged, example := 0, ""
		for range perKind {
			id := k.gen(r, c)
			if Contains(id) {
				flagged++
				example = id
			}
		}
		rate := float64(flagged) / perKind
		t.Logf("%-50s %6d of %d flagged (%.3f%%)", k.name, flagged, perKind, 100*rate)
		if k.maxRate >= 0 && rate > k.maxRate {
			t.Errorf("%s: %d of %d flagged as card numbers (for example %q), want at most %.3f%%", k.name, flagged, perKind, example, 100*k.maxRate)
		}
	}
}

// TestNanosecondTimestampIDs checks every era boundary the timestamp rule relies on: event
// ids made of a Unix time in nanoseconds, microseconds or milliseconds from the first second
// of 1.5e9 to the last before 2.1e9 are never card numbers.
func TestNanosecondTimestampIDs(t *testing.T) {
	for _, sec := range []int64{1_500_000_000, 1_733_312_345, 1_999_999_999, 2_000_000_000, 2_099_999_999} {
		for _, frac := range []int64{0, 1, 123_456_789, 999_999_999} {
			ns := sec*1e9 + frac
			for _, id := range []string{
				fmt.Sprintf("evt-%d", ns), fmt.Sprintf("%d", ns/1e3), fmt.Sprintf("evt-%d", ns/1e6),
			} {
				if Contains(id) {
					t.Errorf("Contains(%q) = true, want false (a Unix timestamp)", id)
				}
			}
		}
	}
	// Every last digit, so that some of the candidates pass the Luhn check.
	for d := range int64(10) {
		ns := time.Now().UnixNano()/10*10 + d
		if id := fmt.Sprintf("evt-%d", ns); Contains(id) {
			t.Errorf("Contains(%q) = true, want false (a Unix timestamp of now)", id)
		}
	}
}

// randomPAN returns a Luhn-valid 16-digit number starting with 4 or 5 (Visa, Mastercard).
func randomPAN(r *rand.Rand) string {
	b := make([]byte, 16)
	b[0] = byte('4' + r.IntN(2))
	for i := 1; i < 15; i++ {
		b[i] = byte('0' + r.IntN(10))
	}
	for d := byte('0'); d <= '9'; d++ {
		b[15] = d
		if luhnValid(string(b)) {
			break
		}
	}
	return string(b)
}

func randomDigits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

// TestEmbeddedCardNumbersFound checks that a card number written with extra digits before
// or after it is still found: always with one or two before, or one to three after (a CVV run
// on); with three before, unless they make the run read as a nanosecond timestamp (1 in 17).
func TestEmbeddedCardNumbersFound(t *testing.T) {
	const n = 10_000
	r := rand.New(rand.NewPCG(16, 19))
	cases := []struct {
		name    string
		wrap    func(pan string) string
		minRate float64
	}{
		{"1 digit before", func(p string) string { return randomDigits(r, 1) + p }, 1},
		{"2 digits before", func(p string) string { return randomDigits(r, 2) + p }, 1},
		{"3 digits before", func(p string) string { return randomDigits(r, 3) + p }, 0.93},
		{"1 digit after", func(p string) string { return p + randomDigits(r, 1) }, 1},
		{"3 digits after", func(p string) string { return p + randomDigits(r, 3) }, 1},
		{"1 before, 1 after", func(p string) string { return randomDigits(r, 1) + p + randomDigits(r, 1) }, 1},
	}
	for _, c := range cases {
		found, missed := 0, ""
		for range n {
			s := c.wrap(randomPAN(r))
			if Contains(s) {
				found++
			} else {
				missed = s
			}
		}
		rate := float64(found) / n
		t.Logf("%-20s %5d of %d found (%.2f%%)", c.name, found, n, 100*rate)
		if rate < c.minRate {
			t.Errorf("%s: %d of %d found (missed for example %q), want at least %.0f%%", c.name, found, n, missed, 100*c.minRate)
		}
	}
}

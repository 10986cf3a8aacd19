package guard

import (
	"math"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/cardnumber"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// FuzzCheckCardNumbersDecideRequest decodes arbitrary bytes as a DecideRequest (and as a
// PutFeaturesRequest) and checks that the guard's fast path agrees with the reflection walk,
// that a rejection never echoes a card number, and that nothing panics.
func FuzzCheckCardNumbersDecideRequest(f *testing.F) {
	seed, _ := proto.Marshal(guardDecideRequest())
	f.Add(seed)
	pf, _ := proto.Marshal(&arbiterv1.PutFeaturesRequest{CustomerId: "c1", Features: map[string]*structpb.Value{
		"nick": structpb.NewStringValue("4111 1111 1111 1111"),
	}})
	f.Add(pf)
	num, _ := proto.Marshal(&arbiterv1.PutFeaturesRequest{CustomerId: "c1", Features: map[string]*structpb.Value{
		"card_number": structpb.NewNumberValue(4832423834581860),
	}})
	f.Add(num)
	amount := guardDecideRequest()
	amount.Event.Payment.AmountMinor = 14832423834581860
	am, _ := proto.Marshal(amount)
	f.Add(am)
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []proto.Message{&arbiterv1.DecideRequest{}, &arbiterv1.PutFeaturesRequest{}} {
			if proto.Unmarshal(b, m) != nil {
				continue
			}
			err := CheckCardNumbers(m)
			slow := cardInMessage(m.ProtoReflect(), nil)
			if (err != nil) != slow {
				t.Fatalf("CheckCardNumbers(%T) = %v, reflection walk found %v", m, err, slow)
			}
			if err != nil {
				msg := status.Convert(err).Message()
				if cardnumber.Contains(msg) {
					t.Fatalf("CheckCardNumbers(%T) status message %q holds a card number", m, msg)
				}
			}
			_ = CheckRequestTimes(m, now)
		}
	})
}

// FuzzCardNumbersInNumbers checks the number checks against the string detector on the
// decimal form of the number's integer part: the shortcuts (fewer than 13 digits, more than 19) never change the
// answer, and nothing allocates or panics.
func FuzzCardNumbersInNumbers(f *testing.F) {
	for _, v := range []int64{0, 129900, 4832423834581860, -4111111111111111, 14832423834581860, 1733312345123456789, math.MaxInt64, math.MinInt64} {
		f.Add(v, float64(v), uint64(v))
	}
	f.Add(int64(1e12), 4832423834581860.5, uint64(math.MaxUint64))
	f.Add(int64(999999999999), 1e19, uint64(1e12))
	f.Add(int64(-1), -3.0/7, uint64(0)) // a fraction holding a Luhn-valid run of digits
	f.Fuzz(func(t *testing.T, i int64, x float64, u uint64) {
		if got, want := cardInInt(i), cardnumber.Contains(strconv.FormatInt(i, 10)); got != want {
			t.Errorf("cardInInt(%d) = %v, Contains of its digits %v", i, got, want)
		}
		if got, want := cardInUint(u), cardnumber.Contains(strconv.FormatUint(u, 10)); got != want {
			t.Errorf("cardInUint(%d) = %v, Contains of its digits %v", u, got, want)
		}
		s := strconv.FormatFloat(math.Trunc(x), 'f', -1, 64)
		if got, want := cardInFloat(x, 64), cardnumber.Contains(s); got != want {
			t.Errorf("cardInFloat(%v) = %v, Contains(%q) %v", x, got, s, want)
		}
		s32 := strconv.FormatFloat(math.Trunc(float64(float32(x))), 'f', -1, 32)
		if got, want := cardInFloat(float64(float32(x)), 32), cardnumber.Contains(s32); got != want {
			t.Errorf("cardInFloat(float32 %v) = %v, Contains(%q) %v", float32(x), got, s32, want)
		}
	})
}

package guard

import (
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

package guard

import (
	"errors"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/cardnumber"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// FuzzRequestDecoder feeds arbitrary bytes to the server codec as a DecideRequest and a
// PutFeaturesRequest. It must never fail; a request proto.Unmarshal accepts decodes to the same
// message and passes Check; any other gets a *rpcstatus.FieldError that names a field (never
// the "could not be decoded" fallback) in valid UTF-8 without a card number.
func FuzzRequestDecoder(f *testing.F) {
	good, _ := proto.Marshal(guardDecideRequest())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("\x0a\x05evt-\xff"))
	pf, _ := proto.Marshal(&arbiterv1.PutFeaturesRequest{CustomerId: "c1", Features: map[string]*structpb.Value{
		"n": structpb.NewNumberValue(4832423834581860), "s": structpb.NewStringValue("x"),
	}})
	f.Add(pf)
	f.Add(attributeEntryBytes("4111111111111111", "\xff"))
	d := NewRequestDecoder()
	codec := d.Codec()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, newMsg := range []func() proto.Message{
			func() proto.Message { return &arbiterv1.DecideRequest{} },
			func() proto.Message { return &arbiterv1.PutFeaturesRequest{} },
		} {
			strict, got := newMsg(), newMsg()
			strictErr := proto.UnmarshalOptions{RecursionLimit: MaxMessageDepth}.Unmarshal(b, strict)
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
				t.Fatalf("codec.Unmarshal(%T) = %v, want nil", got, err)
			}
			err := d.Check(got)
			if strictErr == nil {
				if err != nil || !proto.Equal(strict, got) {
					t.Fatalf("%T decodes, but the codec gave %v, Check %v", got, got, err)
				}
				continue
			}
			var fe *rpcstatus.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("%T does not decode (%v), but Check = %v", got, strictErr, err)
			}
			if fe.Field == "request" && fe.Problem == "could not be decoded" {
				t.Fatalf("%T does not decode (%v), and the walk found no reason", got, strictErr)
			}
			if msg := fe.Error(); !utf8.ValidString(msg) || cardnumber.Contains(msg) {
				t.Fatalf("Check(%T) message %q is not clean UTF-8 or holds a card number", got, msg)
			}
		}
	})
}

// attributeEntryBytes is a DecideRequest holding only an event with one attribute whose key
// and value are raw bytes.
func attributeEntryBytes(key, value string) []byte {
	entry := append([]byte{0x0a, byte(len(key))}, key...)
	entry = append(append(entry, 0x12, byte(len(value))), value...)
	ev := append([]byte{0x32, byte(len(entry))}, entry...)
	return append([]byte{0x0a, byte(len(ev))}, ev...)
}

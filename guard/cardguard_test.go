package guard

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/arbiter-dev/arbiter/cardnumber"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

func guardDecideRequest() *arbiterv1.DecideRequest {
	return &arbiterv1.DecideRequest{
		Event: &arbiterv1.Event{
			Id:         "evt-7f3c2a1b-9d4e-4c61-a0b2-5e8f7d6c3b21",
			Type:       arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED,
			OccurredAt: timestamppb.New(time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)),
			Source:     "gateway-eu-1",
			Payment: &arbiterv1.PaymentFailure{
				DeclineCode:        "51",
				Network:            arbiterv1.CardNetwork_CARD_NETWORK_VISA,
				MerchantAdviceCode: "",
				AmountMinor:        129900,
				Currency:           "EUR",
				Acquirer:           "acq-a",
				CardRef:            "tok_9c8b7a6d5e4f3a2b",
				Initiator:          arbiterv1.Initiator_INITIATOR_MERCHANT,
				MerchantId:         "m-1042",
			},
			Attributes: map[string]string{"channel": "web", "plan": "premium"},
		},
		Customer: &arbiterv1.Customer{
			Id:       "cus-000123456",
			Timezone: "Europe/London",
			Consents: []*arbiterv1.Consent{
				{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_SERVICE, Granted: true},
				{Channel: arbiterv1.Channel_CHANNEL_SMS, Purpose: arbiterv1.Purpose_PURPOSE_SERVICE, Granted: true},
			},
			PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_SMS, arbiterv1.Channel_CHANNEL_EMAIL},
			Locale:            "en-GB",
			Segment:           "retail",
		},
	}
}

func TestCardGuardUnaryInterceptor(t *testing.T) {
	called := false
	handler := func(ctx context.Context, req any) (any, error) {
		called = true
		return "ok", nil
	}
	ic := CardGuardUnaryInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: arbiterv1.DecisionService_Decide_FullMethodName}

	bad := guardDecideRequest()
	bad.Event.Source = "4111-1111-1111-1111"
	if _, err := ic(context.Background(), bad, info, handler); status.Code(err) != codes.InvalidArgument {
		t.Errorf("interceptor(bad) code = %v, want InvalidArgument", status.Code(err))
	}
	if called {
		t.Errorf("handler ran for a request holding a card number")
	}
	got, err := ic(context.Background(), guardDecideRequest(), info, handler)
	if err != nil || got != "ok" || !called {
		t.Errorf("interceptor(clean) = %v, %v (handler called %v), want ok, nil, true", got, err, called)
	}
}

func TestCheckCardNumbersAllocs(t *testing.T) {
	// A request with no maps or lists is checked without allocating.
	req := &arbiterv1.GetDecisionRequest{DecisionId: "d-0123456789"}
	if n := testing.AllocsPerRun(100, func() { _ = CheckCardNumbers(req) }); n != 0 {
		t.Errorf("CheckCardNumbers(GetDecisionRequest) allocs = %v, want 0", n)
	}
	s := strings.Repeat("1234 5678 ", 40)
	if n := testing.AllocsPerRun(100, func() { _ = cardnumber.Contains(s) }); n != 0 {
		t.Errorf("cardnumber.Contains allocs = %v, want 0", n)
	}
	// The hot requests take the fast path, which does not allocate either, numbers included.
	dr := guardDecideRequest()
	dr.Event.Payment.AmountMinor = 1733312345122
	if n := testing.AllocsPerRun(100, func() { _ = CheckCardNumbers(dr) }); n != 0 {
		t.Errorf("CheckCardNumbers(typical DecideRequest) allocs = %v, want 0", n)
	}
	pf := &arbiterv1.PutFeaturesRequest{CustomerId: "c1", Features: map[string]*structpb.Value{
		"ms": structpb.NewNumberValue(1733312345122), "score": structpb.NewNumberValue(0.5),
	}}
	if n := testing.AllocsPerRun(100, func() { _ = CheckCardNumbers(pf) }); n != 0 {
		t.Errorf("CheckCardNumbers(PutFeaturesRequest with numbers) allocs = %v, want 0", n)
	}
}

func BenchmarkCheckCardNumbers(b *testing.B) {
	req := guardDecideRequest()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckCardNumbers(req); err != nil {
			b.Fatal(err)
		}
	}
}

// stringSlots returns one mutator per place in a message of type md where a string can be put:
// every string field, list element, map key and map value, at any depth (up to maxDepth
// messages deep, which bounds the recursion of google.protobuf.Value), plus the unknown fields
// of every message. Each mutator, applied to a fresh message, puts val in that one place. The
// guard's fast paths are tested against it, so a string field added to the API later is
// covered by the tests without anyone listing it.
func stringSlots(md protoreflect.MessageDescriptor, val string, maxDepth int) []func(protoreflect.Message) {
	var out []func(protoreflect.Message)
	// Unknown field 1000, a length-delimited string.
	out = append(out, func(m protoreflect.Message) {
		b := protowire.AppendTag(nil, 1000, protowire.BytesType)
		m.SetUnknown(protowire.AppendString(b, val))
	})
	if maxDepth == 0 {
		return out
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			kd, vd := fd.MapKey(), fd.MapValue()
			if kd.Kind() == protoreflect.StringKind {
				out = append(out, func(m protoreflect.Message) {
					mp := m.Mutable(fd).Map()
					k := protoreflect.ValueOfString(val).MapKey()
					if vd.Kind() == protoreflect.MessageKind {
						mp.Mutable(k)
					} else {
						mp.Set(k, vd.Default())
					}
				})
			}
			switch vd.Kind() {
			case protoreflect.StringKind:
				out = append(out, func(m protoreflect.Message) {
					m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString(val))
				})
			case protoreflect.MessageKind:
				for _, sub := range stringSlots(vd.Message(), val, maxDepth-1) {
					out = append(out, func(m protoreflect.Message) {
						sub(m.Mutable(fd).Map().Mutable(protoreflect.ValueOfString("k").MapKey()).Message())
					})
				}
			}
		case fd.IsList():
			switch fd.Kind() {
			case protoreflect.StringKind:
				out = append(out, func(m protoreflect.Message) {
					m.Mutable(fd).List().Append(protoreflect.ValueOfString(val))
				})
			case protoreflect.MessageKind:
				for _, sub := range stringSlots(fd.Message(), val, maxDepth-1) {
					out = append(out, func(m protoreflect.Message) {
						sub(m.Mutable(fd).List().AppendMutable().Message())
					})
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			out = append(out, func(m protoreflect.Message) { m.Set(fd, protoreflect.ValueOfString(val)) })
		case fd.Kind() == protoreflect.MessageKind:
			for _, sub := range stringSlots(fd.Message(), val, maxDepth-1) {
				out = append(out, func(m protoreflect.Message) { sub(m.Mutable(fd).Message()) })
			}
		}
	}
	return out
}

// numberSlots returns one mutator per place in a message of type md where a number of 13
// digits or more can be put, like stringSlots: every 64-bit integer and floating-point field,
// list element and map value, at any depth up to maxDepth.
func numberSlots(md protoreflect.MessageDescriptor, val int64, maxDepth int) []func(protoreflect.Message) {
	if maxDepth == 0 {
		return nil
	}
	value := func(k protoreflect.Kind) (protoreflect.Value, bool) {
		switch k {
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			return protoreflect.ValueOfInt64(val), true
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			return protoreflect.ValueOfUint64(uint64(val)), true
		case protoreflect.DoubleKind:
			return protoreflect.ValueOfFloat64(float64(val)), true
		}
		return protoreflect.Value{}, false
	}
	var out []func(protoreflect.Message)
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			vd := fd.MapValue()
			if v, ok := value(vd.Kind()); ok {
				out = append(out, func(m protoreflect.Message) {
					m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), v)
				})
			} else if vd.Kind() == protoreflect.MessageKind {
				for _, sub := range numberSlots(vd.Message(), val, maxDepth-1) {
					out = append(out, func(m protoreflect.Message) {
						sub(m.Mutable(fd).Map().Mutable(protoreflect.ValueOfString("k").MapKey()).Message())
					})
				}
			}
		case fd.IsList():
			if v, ok := value(fd.Kind()); ok {
				out = append(out, func(m protoreflect.Message) { m.Mutable(fd).List().Append(v) })
			} else if fd.Kind() == protoreflect.MessageKind {
				for _, sub := range numberSlots(fd.Message(), val, maxDepth-1) {
					out = append(out, func(m protoreflect.Message) { sub(m.Mutable(fd).List().AppendMutable().Message()) })
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			for _, sub := range numberSlots(fd.Message(), val, maxDepth-1) {
				out = append(out, func(m protoreflect.Message) { sub(m.Mutable(fd).Message()) })
			}
		default:
			if v, ok := value(fd.Kind()); ok {
				out = append(out, func(m protoreflect.Message) { m.Set(fd, v) })
			}
		}
	}
	return out
}

// TestCheckCardNumbersEveryNumberSlot puts a card number, as a number, in every numeric slot
// of the requests: every one is found, by the fast paths as by reflection.
func TestCheckCardNumbersEveryNumberSlot(t *testing.T) {
	for _, base := range []proto.Message{
		&arbiterv1.DecideRequest{}, &arbiterv1.PutFeaturesRequest{}, &arbiterv1.RecordOutcomeRequest{},
	} {
		md := base.ProtoReflect().Descriptor()
		slots := numberSlots(md, 4111111111111111, 5)
		if len(slots) == 0 {
			t.Fatalf("numberSlots(%s) found no numeric slot", md.FullName())
		}
		for i, set := range slots {
			m := base.ProtoReflect().New()
			set(m)
			if err := CheckCardNumbers(m.Interface()); status.Code(err) != codes.InvalidArgument {
				t.Errorf("CheckCardNumbers(%s number slot %d = card number) = %v, want InvalidArgument", md.FullName(), i, err)
			}
			clean := base.ProtoReflect().New()
			numberSlots(md, 129900, 5)[i](clean)
			if err := CheckCardNumbers(clean.Interface()); err != nil {
				t.Errorf("CheckCardNumbers(%s number slot %d = 129900) = %v, want nil", md.FullName(), i, err)
			}
		}
	}
}

func TestCheckCardNumbersEveryStringSlot(t *testing.T) {
	msgs := []proto.Message{
		&arbiterv1.DecideRequest{},
		&arbiterv1.PutFeaturesRequest{},
		&arbiterv1.RecordOutcomeRequest{},
		&arbiterv1.GetDecisionRequest{},
		&arbiterv1.GetCustomerStateRequest{},
	}
	for _, base := range msgs {
		md := base.ProtoReflect().Descriptor()
		for _, pan := range cardnumber.TestNumbers {
			for i, set := range stringSlots(md, pan, 5) {
				m := base.ProtoReflect().New()
				set(m)
				if err := CheckCardNumbers(m.Interface()); status.Code(err) != codes.InvalidArgument {
					t.Errorf("CheckCardNumbers(%s slot %d = %q) = %v, want InvalidArgument", md.FullName(), i, pan, err)
				}
				// The same slot with a harmless value passes.
				clean := base.ProtoReflect().New()
				stringSlots(md, "harmless-123", 5)[i](clean)
				if err := CheckCardNumbers(clean.Interface()); err != nil {
					t.Errorf("CheckCardNumbers(%s slot %d = harmless) = %v, want nil", md.FullName(), i, err)
				}
			}
		}
	}
}

func TestCheckCardNumbers(t *testing.T) {
	const pan = "4111 1111 1111 1111"
	tests := []struct {
		name      string
		msg       proto.Message
		wantField string // "" means clean
	}{
		{"clean decide request", guardDecideRequest(), ""},
		{"nil message", (*arbiterv1.DecideRequest)(nil), ""},
		{"event id", func() proto.Message {
			r := guardDecideRequest()
			r.Event.Id = "evt-" + pan
			return r
		}(), "event.id"},
		{"card_ref", func() proto.Message {
			r := guardDecideRequest()
			r.Event.Payment.CardRef = "4111111111111111"
			return r
		}(), "event.payment.card_ref"},
		{"attribute value", func() proto.Message {
			r := guardDecideRequest()
			r.Event.Attributes["note"] = "customer said card is " + pan
			return r
		}(), `event.attributes["note"]`},
		{"attribute key", func() proto.Message {
			r := guardDecideRequest()
			r.Event.Attributes[pan] = "x"
			return r
		}(), "event.attributes (a map key)"},
		{"customer locale", func() proto.Message {
			r := guardDecideRequest()
			r.Customer.Locale = pan
			return r
		}(), "customer.locale"},
		{"feature string", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features:   map[string]*structpb.Value{"nickname": structpb.NewStringValue(pan)},
		}, `features["nickname"]`},
		{"feature struct", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features: map[string]*structpb.Value{"profile": structpb.NewStructValue(&structpb.Struct{
				Fields: map[string]*structpb.Value{"card": structpb.NewStringValue(pan)},
			})},
		}, `features["profile"]["card"]`},
		{"feature list", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features: map[string]*structpb.Value{"tags": structpb.NewListValue(&structpb.ListValue{
				Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewStringValue(pan)},
			})},
		}, `features["tags"][1]`},
		{"feature number", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features:   map[string]*structpb.Value{"card_number": structpb.NewNumberValue(4832423834581860)},
		}, `features["card_number"]`},
		{"negative feature number", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features:   map[string]*structpb.Value{"n": structpb.NewNumberValue(-4111111111111111)},
		}, `features["n"]`},
		{"feature number in a struct", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features: map[string]*structpb.Value{"profile": structpb.NewStructValue(&structpb.Struct{
				Fields: map[string]*structpb.Value{"pan": structpb.NewNumberValue(4111111111111111)},
			})},
		}, `features["profile"]["pan"]`},
		{"feature number with an extra digit", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features:   map[string]*structpb.Value{"n": structpb.NewNumberValue(14832423834581860)},
		}, `features["n"]`},
		{"feature numbers that are not card numbers", &arbiterv1.PutFeaturesRequest{
			CustomerId: "c1",
			Features: map[string]*structpb.Value{
				"amount": structpb.NewNumberValue(129900), "ms": structpb.NewNumberValue(1733312345122),
				"score": structpb.NewNumberValue(0.4111111111111111), "big": structpb.NewNumberValue(1e300),
				"ns": structpb.NewNumberValue(1733312345123456789),
			},
		}, ""},
		{"amount", func() proto.Message {
			r := guardDecideRequest()
			r.Event.Payment.AmountMinor = 4832423834581860
			return r
		}(), "event.payment.amount_minor"},
		{"customer id", &arbiterv1.GetCustomerStateRequest{CustomerId: pan}, "customer_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCardNumbers(tt.msg)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("CheckCardNumbers() = %v, want nil", err)
				}
				return
			}
			var cne *rpcstatus.FieldError
			if !errors.As(err, &cne) {
				t.Fatalf("CheckCardNumbers() = %v, want *rpcstatus.FieldError", err)
			}
			if cne.Field != tt.wantField {
				t.Errorf("CheckCardNumbers().Field = %q, want %q", cne.Field, tt.wantField)
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Errorf("status code = %v, want InvalidArgument", st.Code())
			}
			if !strings.Contains(st.Message(), tt.wantField) {
				t.Errorf("status message %q does not name field %q", st.Message(), tt.wantField)
			}
			if strings.Contains(st.Message(), "1111") || strings.Contains(st.Message(), "4111") {
				t.Errorf("status message %q echoes the card number", st.Message())
			}
		})
	}
}

func TestCheckCardNumbersUnknownField(t *testing.T) {
	// A newer client may send a field this server does not know; its bytes would be kept and
	// stored with the request, so the guard scans them too.
	b, err := proto.Marshal(guardDecideRequest())
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	b = protowire.AppendString(b, "4111111111111111")
	var req arbiterv1.DecideRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	err = CheckCardNumbers(&req)
	var cne *rpcstatus.FieldError
	if !errors.As(err, &cne) || cne.Field != "(unknown field)" {
		t.Errorf("CheckCardNumbers(request with unknown PAN field) = %v, want field (unknown field)", err)
	}
}

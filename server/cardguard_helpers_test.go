package server

import (
	"time"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
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

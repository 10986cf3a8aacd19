package stream

import (
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/cardnumber"
	"github.com/arbiter-dev/arbiter/guard"
)

// cardNumberError wraps the card guard's error for a request that holds a card number.
type cardNumberError struct{ err error }

func (e cardNumberError) Error() string { return e.err.Error() }
func (e cardNumberError) Unwrap() error { return e.err }

// checkRequest applies to a request from the stream what the RPC's interceptors apply before
// the handler: the card-number guard and the event-time window. The service validates the rest.
func checkRequest(req proto.Message, now time.Time) error {
	if err := guard.CheckCardNumbers(req); err != nil {
		return cardNumberError{err}
	}
	return guard.CheckRequestTimes(req, now)
}

// deadReasonOf is the dead-letter reason of a checkRequest error.
func deadReasonOf(err error) string {
	if errors.As(err, new(cardNumberError)) {
		return DeadCardNumber
	}
	return DeadInvalid
}

// holdsCardNumber reports whether a raw payload holds what looks like a card number, so that a
// dead letter does not copy it.
func holdsCardNumber(payload []byte) bool { return cardnumber.Contains(payload) }

// deadAttrs are the attributes of arbiter.stream.dead_letters for reason.
func deadAttrs(reason string) metric.AddOption {
	return metric.WithAttributes(attribute.String("reason", reason))
}

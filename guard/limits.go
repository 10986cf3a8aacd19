package guard

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// DefaultMaxRecvMsgSize is the largest request message the server accepts by default: 64 KiB.
// A larger one is refused by gRPC before it is decoded, with RESOURCE_EXHAUSTED ("received
// message larger than max").
const DefaultMaxRecvMsgSize = 64 << 10

// Time limits on request timestamps.
const (
	// MaxEventAge is how far in the past event.occurred_at (and an outcome's occurred_at) may
	// be: an event older than a year is a replayed or corrupt message, not something to act on.
	MaxEventAge = 365 * 24 * time.Hour
	// MaxEventLead is how far in the future a timestamp may be: a day covers any caller's
	// clock skew and time zone mistakes; beyond it the caller's clock or data is wrong.
	MaxEventLead = 24 * time.Hour
)

// MaxRecvMsgSize returns the server option limiting request messages to n bytes, or to
// DefaultMaxRecvMsgSize when n is 0 or less.
func MaxRecvMsgSize(n int) grpc.ServerOption {
	if n <= 0 {
		n = DefaultMaxRecvMsgSize
	}
	return grpc.MaxRecvMsgSize(n)
}

// CheckRequestTimes checks the timestamps of a request against now: event.occurred_at of a
// DecideRequest and occurred_at of a RecordOutcomeRequest must lie between MaxEventAge before
// now and MaxEventLead after it. A timestamp outside that window, or not a valid timestamp, is
// a *rpcstatus.FieldError naming the field (INVALID_ARGUMENT). A missing timestamp and any other request
// type pass: whether a timestamp is required is the request validation's call.
func CheckRequestTimes(req any, now time.Time) error {
	switch r := req.(type) {
	case *arbiterv1.DecideRequest:
		return checkTimeWindow("event.occurred_at", r.GetEvent().GetOccurredAt(), now)
	case *arbiterv1.RecordOutcomeRequest:
		return checkTimeWindow("occurred_at", r.GetOccurredAt(), now)
	}
	return nil
}

func checkTimeWindow(field string, ts *timestamppb.Timestamp, now time.Time) error {
	if ts == nil {
		return nil
	}
	if ts.CheckValid() != nil {
		return rpcstatus.Invalid(field, "not a valid timestamp")
	}
	t := ts.AsTime()
	switch {
	case t.Before(now.Add(-MaxEventAge)):
		return rpcstatus.Invalid(field, "more than 365 days in the past")
	case t.After(now.Add(MaxEventLead)):
		return rpcstatus.Invalid(field, "more than 24 hours in the future")
	}
	return nil
}

// RequestTimesUnaryInterceptor applies CheckRequestTimes with the clock now (time.Now when
// nil) and answers INVALID_ARGUMENT naming the field. It is for servers whose request
// validation does not call CheckRequestTimes itself.
func RequestTimesUnaryInterceptor(now func() time.Time) grpc.UnaryServerInterceptor {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := CheckRequestTimes(req, now()); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

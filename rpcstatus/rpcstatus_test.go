package rpcstatus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/policystore"
)

func TestConvert(t *testing.T) {
	secret := "redis://:hunter2@10.0.0.1:6379 dial tcp: i/o timeout"
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		msg     string
		logged  bool
		noLeaks bool // the message must not hold the internal detail
	}{
		{"field", Invalid("event.payment.currency", "must be 3 upper-case letters (ISO 4217)"), codes.InvalidArgument,
			"invalid event.payment.currency: must be 3 upper-case letters (ISO 4217)", false, false},
		{"wrapped field", fmt.Errorf("validate: %w", Invalid("customer.id", "required")), codes.InvalidArgument,
			"invalid customer.id: required", false, false},
		{"not found names the id", NotFound("decision", "d-1"), codes.NotFound, `decision "d-1" not found`, false, false},
		{"unauthenticated", Unauthenticated("invalid bearer token"), codes.Unauthenticated, "invalid bearer token", false, false},
		{"deadline", fmt.Errorf("load: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline exceeded", false, false},
		{"canceled", context.Canceled, codes.Canceled, "call canceled", false, false},
		{"store unavailable", fmt.Errorf("load k: %w: %s", featurestore.ErrUnavailable, secret), codes.Unavailable,
			"store unavailable; retry with back-off", true, true},
		{"policy store unavailable", fmt.Errorf("%w: %s", policystore.ErrUnavailable, secret), codes.Unavailable,
			"policy store unavailable; retry with back-off", true, true},
		{"store not found", featurestore.ErrNotFound, codes.NotFound, "not found", false, false},
		{"policy version not found", policystore.ErrNotFound, codes.NotFound, "policy version not found", false, false},
		{"corrupt", fmt.Errorf("%w: %s", featurestore.ErrCorrupt, secret), codes.DataLoss, "stored data is malformed", true, true},
		{"not recorded", fmt.Errorf("%w: %s", ErrNotRecorded, secret), codes.Unavailable,
			"store unavailable and the decision could not be recorded; retry with back-off", true, true},
		{"no policy", ErrNoPolicy, codes.Unavailable, "no policy loaded", false, false},
		{"draining", ErrDraining, codes.Unavailable, "server is shutting down", false, false},
		{"library status", status.Error(codes.Aborted, "aborted"), codes.Aborted, "aborted", false, false},
		{"anything else", errors.New(secret), codes.Internal, "internal error", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			err := Convert(t.Context(), logger, "/arbiter.v1.DecisionService/Decide", tt.err)
			st, ok := status.FromError(err)
			if !ok || st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("Convert(%v) = %v, want %v %q", tt.err, err, tt.code, tt.msg)
			}
			if got := logs.Len() > 0; got != tt.logged {
				t.Errorf("Convert(%v) logged %v (%s), want %v", tt.err, got, logs.String(), tt.logged)
			}
			if tt.noLeaks && strings.Contains(st.Message(), "hunter2") {
				t.Errorf("Convert(%v) message %q leaks the internal detail", tt.err, st.Message())
			}
			if code, msg, _ := classify(tt.err); code != tt.code || msg != tt.msg {
				t.Errorf("classify(%v) = %v %q, want %v %q (GRPCStatus and Convert must agree)", tt.err, code, msg, tt.code, tt.msg)
			}
		})
	}
	if err := Convert(t.Context(), nil, "m", nil); err != nil {
		t.Errorf("Convert(nil) = %v, want nil", err)
	}
}

func TestResourceExhaustedRetryInfo(t *testing.T) {
	err := Convert(t.Context(), nil, "m", fmt.Errorf("shed: %w", ResourceExhausted("server overloaded", 100*time.Millisecond)))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("code = %v, want ResourceExhausted", st.Code())
	}
	var got time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			got = ri.GetRetryDelay().AsDuration()
		}
	}
	if got != 100*time.Millisecond {
		t.Errorf("RetryInfo delay = %v, want 100ms", got)
	}
}

func TestSentinelRefusalDoesNotAllocate(t *testing.T) {
	shed := ResourceExhausted("server overloaded", time.Second)
	if n := testing.AllocsPerRun(100, func() { _ = shed.(*Error).GRPCStatus() }); n != 0 {
		t.Errorf("GRPCStatus of a prebuilt refusal allocates %v times, want 0", n)
	}
}

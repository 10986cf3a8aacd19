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
	"google.golang.org/protobuf/types/known/timestamppb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

func TestRequestTimesUnaryInterceptor(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	ic := RequestTimesUnaryInterceptor(func() time.Time { return now })
	handler := func(ctx context.Context, req any) (any, error) { return "ok", nil }
	old := &arbiterv1.DecideRequest{Event: &arbiterv1.Event{OccurredAt: timestamppb.New(now.AddDate(-3, 0, 0))}}
	_, err := ic(context.Background(), old, &grpc.UnaryServerInfo{}, handler)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "invalid event.occurred_at:") {
		t.Errorf("interceptor(3 years old) = %v, want InvalidArgument naming event.occurred_at", err)
	}
	fresh := &arbiterv1.DecideRequest{Event: &arbiterv1.Event{OccurredAt: timestamppb.New(now)}}
	if got, err := ic(context.Background(), fresh, &grpc.UnaryServerInfo{}, handler); err != nil || got != "ok" {
		t.Errorf("interceptor(now) = %v, %v, want ok, nil", got, err)
	}
}

func TestMaxRecvMsgSize(t *testing.T) {
	conn := startSecServer(t, &identityDecisions{}, MaxRecvMsgSize(0))
	client := arbiterv1.NewDecisionServiceClient(conn)
	withAttr := func(n int) *arbiterv1.DecideRequest {
		return &arbiterv1.DecideRequest{Event: &arbiterv1.Event{Attributes: map[string]string{"note": strings.Repeat("x", n)}}}
	}
	if _, err := client.Decide(context.Background(), withAttr(60<<10)); err != nil {
		t.Errorf("Decide(60 KiB request) = %v, want nil", err)
	}
	_, err := client.Decide(context.Background(), withAttr(65<<10))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("Decide(65 KiB request) = %v, want ResourceExhausted", err)
	}
}

func TestCheckRequestTimes(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	decide := func(ts *timestamppb.Timestamp) *arbiterv1.DecideRequest {
		return &arbiterv1.DecideRequest{Event: &arbiterv1.Event{Id: "e1", OccurredAt: ts}}
	}
	tests := []struct {
		name      string
		req       any
		wantField string // "" means it passes
		wantText  string
	}{
		{"now", decide(timestamppb.New(now)), "", ""},
		{"missing", decide(nil), "", ""},
		{"no event", &arbiterv1.DecideRequest{}, "", ""},
		{"just under a year ago", decide(timestamppb.New(now.Add(-MaxEventAge + time.Second))), "", ""},
		{"a year and a second ago", decide(timestamppb.New(now.Add(-MaxEventAge - time.Second))), "event.occurred_at", "in the past"},
		{"epoch", decide(&timestamppb.Timestamp{}), "event.occurred_at", "in the past"},
		{"23h ahead", decide(timestamppb.New(now.Add(23 * time.Hour))), "", ""},
		{"25h ahead", decide(timestamppb.New(now.Add(25 * time.Hour))), "event.occurred_at", "in the future"},
		{"year 9999", decide(timestamppb.New(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))), "event.occurred_at", "in the future"},
		{"invalid nanos", decide(&timestamppb.Timestamp{Seconds: now.Unix(), Nanos: 2e9}), "event.occurred_at", "not a valid"},
		{"beyond year 9999", decide(&timestamppb.Timestamp{Seconds: 1 << 40}), "event.occurred_at", "not a valid"},
		{"outcome now", &arbiterv1.RecordOutcomeRequest{DecisionId: "d", OccurredAt: timestamppb.New(now)}, "", ""},
		{"outcome too old", &arbiterv1.RecordOutcomeRequest{DecisionId: "d", OccurredAt: timestamppb.New(now.AddDate(-2, 0, 0))}, "occurred_at", "in the past"},
		{"outcome in the future", &arbiterv1.RecordOutcomeRequest{DecisionId: "d", OccurredAt: timestamppb.New(now.AddDate(0, 0, 2))}, "occurred_at", "in the future"},
		{"other request", &arbiterv1.GetDecisionRequest{DecisionId: "d"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRequestTimes(tt.req, now)
			if tt.wantField == "" {
				if err != nil {
					t.Errorf("CheckRequestTimes() = %v, want nil", err)
				}
				return
			}
			var fe *rpcstatus.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || !strings.Contains(fe.Problem, tt.wantText) {
				t.Errorf("CheckRequestTimes() = %v, want field %s: ...%s...", err, tt.wantField, tt.wantText)
			}
		})
	}
}

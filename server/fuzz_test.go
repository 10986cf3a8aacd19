package server

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// FuzzDecideRequest decodes arbitrary bytes as a DecideRequest, validates it and, when valid,
// converts and evaluates it under the default policy. Nothing may panic, and a request that
// passes validation must convert to an input with the same ids.
func FuzzDecideRequest(f *testing.F) {
	for _, req := range []*arbiterv1.DecideRequest{overdue("ev-1", "cust-1"), declined("ev-2", "cust-2")} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	pol := decision.DefaultPolicy()
	f.Fuzz(func(t *testing.T, b []byte) {
		var req arbiterv1.DecideRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return
		}
		if err := validateDecide(&req); err != nil {
			if _, ok := err.(*rpcstatus.FieldError); !ok {
				t.Fatalf("validateDecide() error %T %v, want *rpcstatus.FieldError", err, err)
			}
			return
		}
		in := decision.Input{Now: testNow, Explain: true}
		toInput(&req, &in)
		if in.Event.ID != req.GetEvent().GetId() || in.Customer.ID != req.GetCustomer().GetId() {
			t.Fatalf("toInput() ids = %q %q, want %q %q", in.Event.ID, in.Customer.ID, req.GetEvent().GetId(), req.GetCustomer().GetId())
		}
		res, err := pol.Decide(t.Context(), &in)
		if err != nil {
			return
		}
		if _, err := toResponse("00-id", res, testNow); err != nil {
			t.Fatalf("toResponse() error: %v", err)
		}
	})
}

package server

import (
	"math"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// FuzzDecideRequest decodes arbitrary bytes as a DecideRequest, validates it and, when valid,
// converts and evaluates it under the default policy. Nothing may panic, a request that passes
// validation must convert to an input with the same ids, and its amount has at most 12 digits.
func FuzzDecideRequest(f *testing.F) {
	big := declined("ev-3", "cust-3")
	big.Event.Payment.AmountMinor = 4832423834581860
	for _, req := range []*arbiterv1.DecideRequest{overdue("ev-1", "cust-1"), declined("ev-2", "cust-2"), big} {
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
		if a := req.GetEvent().GetPayment().GetAmountMinor(); a > MaxAmountMinor {
			t.Fatalf("validateDecide() accepted amount_minor %d, over %d", a, int64(MaxAmountMinor))
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

// FuzzPutFeaturesRequest decodes arbitrary bytes as a PutFeaturesRequest and validates it:
// nothing may panic, a refusal is a *rpcstatus.FieldError, and an accepted request holds no NaN
// or infinity at any depth (AsInterface would store them as strings).
func FuzzPutFeaturesRequest(f *testing.F) {
	for _, v := range []*structpb.Value{
		structpb.NewNumberValue(1.5), structpb.NewNumberValue(math.NaN()), structpb.NewNumberValue(math.Inf(-1)),
		structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(math.Inf(1))}}),
	} {
		b, err := proto.Marshal(&arbiterv1.PutFeaturesRequest{CustomerId: "c", Features: map[string]*structpb.Value{"f": v}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req arbiterv1.PutFeaturesRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return
		}
		_, _, err := validatePutFeatures(&req)
		if err != nil {
			if _, ok := err.(*rpcstatus.FieldError); !ok {
				t.Fatalf("validatePutFeatures() error %T %v, want *rpcstatus.FieldError", err, err)
			}
			return
		}
		var finite func(v *structpb.Value) bool
		finite = func(v *structpb.Value) bool {
			for _, e := range v.GetListValue().GetValues() {
				if !finite(e) {
					return false
				}
			}
			for _, e := range v.GetStructValue().GetFields() {
				if !finite(e) {
					return false
				}
			}
			n := v.GetNumberValue()
			return !math.IsNaN(n) && !math.IsInf(n, 0)
		}
		for name, v := range req.GetFeatures() {
			if !finite(v) {
				t.Fatalf("validatePutFeatures() accepted features[%q] holding NaN or infinity", name)
			}
		}
	})
}

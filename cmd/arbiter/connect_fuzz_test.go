package main

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/protobuf/reflect/protoregistry"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
)

// FuzzConnectJSON: any body a Connect caller sends decodes into a DecideRequest or fails with
// INVALID_ARGUMENT (never a panic or another code), and what decodes goes through the card
// guard as a protobuf request would.
func FuzzConnectJSON(f *testing.F) {
	for _, seed := range []string{sampleEvent, `{}`, `{"event": 12}`, `{"event": {"id": "\ud800"}}`,
		`{"event": {"source": "4111 1111 1111 1111"}}`, `{"customer": {"features": {"a": [[[[1]]]]}}}`, `[`} {
		f.Add([]byte(seed))
	}
	codec := requestJSONCodec{vanguard.NewJSONCodec(protoregistry.GlobalTypes)}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req arbiterv1.DecideRequest
		err := codec.Unmarshal(body, &req)
		if err != nil {
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
				t.Fatalf("Unmarshal(%q) = %v, want INVALID_ARGUMENT", body, err)
			}
			return
		}
		_ = guard.CheckCardNumbers(&req) // must not panic on anything that decodes
	})
}

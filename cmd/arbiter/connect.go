package main

import (
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/guard"
)

// newConnectHandler returns the HTTP front of gs for the HTTP half of the gRPC port: the
// Connect protocol (JSON or protobuf) and gRPC-Web, transcoded by Vanguard into gRPC calls
// served by gs itself, so that they pass the same interceptors (shedding, authentication,
// decoding, rate limits, card guard, input limits) as native gRPC. In front of the transcoder,
// guard.HTTPHandler checks the token before the body is read and caps the body. Register
// every service on gs first.
func newConnectHandler(gs *grpc.Server, sec *guard.Guard) (http.Handler, error) {
	info := gs.GetServiceInfo()
	services := make([]*vanguard.Service, 0, len(info))
	for name := range info {
		services = append(services, vanguard.NewService(name, gs))
	}
	t, err := vanguard.NewTranscoder(services, vanguard.WithDefaultServiceOptions(
		vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
		vanguard.WithTargetCodecs(vanguard.CodecProto),
		vanguard.WithMaxMessageBufferBytes(uint32(sec.MaxRecvMsgSize()*guard.HTTPBodyFactor)),
	), vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
		return requestJSONCodec{vanguard.NewJSONCodec(res)}
	}))
	if err != nil {
		return nil, fmt.Errorf("connect transcoder: %w", err)
	}
	return sec.HTTPHandler(connectVersionOptional(t)), nil
}

// connectVersionOptional marks a unary POST with a Connect content type (application/json,
// application/proto) as Connect when it lacks the Connect-Protocol-Version header, as
// connect-go servers accept it by default: Vanguard would take it for a REST call, and a plain
// `curl -H 'Content-Type: application/json'` would get 404.
func connectVersionOptional(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" {
			switch ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) {
			case "application/json", "application/proto":
				r.Header.Set("Connect-Protocol-Version", "1")
			}
		}
		h.ServeHTTP(w, r)
	})
}

// requestJSONCodec is Vanguard's JSON codec, but a request that does not decode is
// INVALID_ARGUMENT, as in protobuf (Vanguard answers UNKNOWN).
type requestJSONCodec struct{ *vanguard.JSONCodec }

// Unmarshal decodes b into msg; JSON that does not fit msg is INVALID_ARGUMENT.
func (c requestJSONCodec) Unmarshal(b []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(b, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument,
			fmt.Errorf("invalid request: %s", strings.TrimPrefix(err.Error(), "proto: ")))
	}
	return nil
}

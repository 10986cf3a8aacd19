package guard

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/cardnumber"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// rawCodec is a client codec that sends *rawMessage bytes as they are and receives replies
// into them: a client that can send anything.
type rawCodec struct{}

type rawMessage struct{ b []byte }

func (rawCodec) Name() string { return grpcproto.Name }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMessage).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMessage).b = data.Materialize()
	return nil
}

var _ encoding.CodecV2 = rawCodec{}

// featureStub accepts every PutFeatures.
type featureStub struct {
	arbiterv1.UnimplementedFeatureServiceServer
}

func (featureStub) PutFeatures(context.Context, *arbiterv1.PutFeaturesRequest) (*arbiterv1.PutFeaturesResponse, error) {
	return &arbiterv1.PutFeaturesResponse{}, nil
}

// startRawServer serves the decision and feature services on loopback behind opts and returns
// a connection whose calls send raw bytes.
func startRawServer(t *testing.T, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	arbiterv1.RegisterDecisionServiceServer(srv, &identityDecisions{})
	arbiterv1.RegisterFeatureServiceServer(srv, featureStub{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// withString returns the wire form of m with the string field at path (field names, the last
// a string field) replaced by raw bytes: how a client puts invalid UTF-8 in a field.
func withString(t *testing.T, m proto.Message, raw string, path ...string) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return setRaw(t, b, m.ProtoReflect().Descriptor(), raw, path)
}

func setRaw(t *testing.T, b []byte, md protoreflect.MessageDescriptor, raw string, path []string) []byte {
	fd := md.Fields().ByName(protoreflect.Name(path[0]))
	if fd == nil {
		t.Fatalf("no field %s in %s", path[0], md.FullName())
	}
	var out []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if num != fd.Number() {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	out = protowire.AppendTag(out, fd.Number(), protowire.BytesType)
	if len(path) == 1 {
		return protowire.AppendString(out, raw)
	}
	// Nested: this test only nests into singular messages it rebuilds from scratch.
	return protowire.AppendBytes(out, setRaw(t, nil, fd.Message(), raw, path[1:]))
}

// attributeEntry returns a DecideRequest's wire form with one more event attribute whose key
// and value are raw bytes.
func attributeEntry(t *testing.T, key, value string) []byte {
	t.Helper()
	req := guardDecideRequest()
	ev := req.Event
	req.Event = nil
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	evb, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), key)
	entry = protowire.AppendString(protowire.AppendTag(entry, 2, protowire.BytesType), value)
	evb = protowire.AppendBytes(protowire.AppendTag(evb, 6, protowire.BytesType), entry)
	return protowire.AppendBytes(protowire.AppendTag(b, 1, protowire.BytesType), evb)
}

// TestBadBytesAreInvalidArgument sends requests that do not decode over a real gRPC
// connection to a server with the security layer: each gets INVALID_ARGUMENT naming the field,
// where gRPC's own codec answers INTERNAL.
func TestBadBytesAreInvalidArgument(t *testing.T) {
	sec, err := New(Config{GRPCAddr: "127.0.0.1:0"}, sdkmetric.NewMeterProvider(), nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := startRawServer(t, sec.ServerOptions(nil)...)
	good, err := proto.Marshal(guardDecideRequest())
	if err != nil {
		t.Fatal(err)
	}
	var deep []byte // a feature value of lists nested 100 deep
	for range 100 {
		list := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), deep) // ListValue.values
		deep = protowire.AppendBytes(protowire.AppendTag(nil, 6, protowire.BytesType), list)  // Value.list_value
	}
	deepEntry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "deep")
	deepEntry = protowire.AppendBytes(protowire.AppendTag(deepEntry, 2, protowire.BytesType), deep)
	deepReq := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "c1")
	deepReq = protowire.AppendBytes(protowire.AppendTag(deepReq, 2, protowire.BytesType), deepEntry)
	pan := "4111111111111111"

	tests := []struct {
		name    string
		method  string
		body    []byte
		wantMsg string // the whole status message; "" means OK
	}{
		{"valid request", arbiterv1.DecisionService_Decide_FullMethodName, good, ""},
		{"event.id", arbiterv1.DecisionService_Decide_FullMethodName,
			withString(t, guardDecideRequest(), "evt-\xff\xfe", "event", "id"), "invalid event.id: not valid UTF-8"},
		{"customer.id", arbiterv1.DecisionService_Decide_FullMethodName,
			withString(t, guardDecideRequest(), "cus-\xc3\x28", "customer", "id"), "invalid customer.id: not valid UTF-8"},
		{"attribute value", arbiterv1.DecisionService_Decide_FullMethodName,
			attributeEntry(t, "note", "caf\xe9"), `invalid event.attributes["note"]: not valid UTF-8`},
		{"attribute key", arbiterv1.DecisionService_Decide_FullMethodName,
			attributeEntry(t, "n\xffte", "x"), "invalid event.attributes (a map key): not valid UTF-8"},
		{"attribute key holding a card number is not echoed", arbiterv1.DecisionService_Decide_FullMethodName,
			attributeEntry(t, pan, "\xff"), "invalid event.attributes (a map key): not valid UTF-8"},
		{"feature string", arbiterv1.FeatureService_PutFeatures_FullMethodName, func() []byte {
			b, _ := proto.Marshal(&arbiterv1.PutFeaturesRequest{CustomerId: "c1", Features: map[string]*structpb.Value{
				"nick": structpb.NewStringValue("PLACEHOLDER"),
			}})
			return []byte(strings.Replace(string(b), "PLACEHOLDER", "PLACEHOLDE\xff", 1)) // same length
		}(), `invalid features["nick"]: not valid UTF-8`},
		{"truncated", arbiterv1.DecisionService_Decide_FullMethodName, good[:len(good)-3], "invalid customer: truncated or malformed protobuf"},
		{"garbage", arbiterv1.DecisionService_Decide_FullMethodName, []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), "invalid request: truncated or malformed protobuf"},
		{"nested too deep", arbiterv1.FeatureService_PutFeatures_FullMethodName, deepReq, `invalid features["deep"][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested more than 64 messages deep`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reply rawMessage
			err := conn.Invoke(t.Context(), tt.method, &rawMessage{b: tt.body}, &reply)
			st := status.Convert(err)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("Invoke(%s) = %v, want OK", tt.method, err)
				}
				return
			}
			if st.Code() != codes.InvalidArgument || st.Message() != tt.wantMsg {
				t.Errorf("Invoke(%s) = %v %q, want InvalidArgument %q", tt.method, st.Code(), st.Message(), tt.wantMsg)
			}
			if cardnumber.Contains(st.Message()) {
				t.Errorf("status message %q holds a card number", st.Message())
			}
		})
	}

	// Without the security layer gRPC answers INTERNAL: what the codec is for.
	plain := startRawServer(t)
	var reply rawMessage
	err = plain.Invoke(t.Context(), arbiterv1.DecisionService_Decide_FullMethodName,
		&rawMessage{b: withString(t, guardDecideRequest(), "\xff", "event", "id")}, &reply)
	if status.Code(err) != codes.Internal {
		t.Errorf("plain server: Invoke(invalid UTF-8) = %v, want Internal (gRPC's own codec)", err)
	}
}

// TestRequestDecoderMarkerCannotBeForged checks that a client sending the marker field itself
// gets no say in the answer: without the server's random value it is an ordinary unknown field.
func TestRequestDecoderMarkerCannotBeForged(t *testing.T) {
	d := NewRequestDecoder()
	b, err := proto.Marshal(guardDecideRequest())
	if err != nil {
		t.Fatal(err)
	}
	forged := protowire.AppendBytes(protowire.AppendTag(nil, markerField, protowire.BytesType), append(make([]byte, 16), "x\x00y"...))
	var req arbiterv1.DecideRequest
	if err := d.Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(forged)}, &req); err != nil {
		t.Fatal(err)
	}
	if err := d.Check(&req); err != nil {
		t.Errorf("Check(forged marker) = %v, want nil", err)
	}
	if err := d.Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b[:len(b)-1])}, &req); err != nil {
		t.Fatal(err)
	}
	var fe *rpcstatus.FieldError
	if err := d.Check(&req); !errors.As(err, &fe) {
		t.Errorf("Check(truncated) = %v, want a *rpcstatus.FieldError", err)
	}
	if err := NewRequestDecoder().Check(&req); err != nil {
		t.Errorf("another decoder's Check(truncated) = %v, want nil: the marker is per decoder", err)
	}
}

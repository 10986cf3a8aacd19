package guard

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/arbiter-dev/arbiter/cardnumber"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// MaxMessageDepth is how deeply request messages may nest (a feature value of lists in lists,
// for example). A deeper request is refused with INVALID_ARGUMENT before anything reads it.
const MaxMessageDepth = 64

// Problems of a request that does not decode.
const (
	problemUTF8      = "not valid UTF-8"
	problemMalformed = "truncated or malformed protobuf"
)

var problemDepth = "nested more than " + strconv.Itoa(MaxMessageDepth) + " messages deep"

// markerField is the unknown field by which RequestDecoder's codec hands a decoding failure
// to its interceptors: the largest field number protobuf allows.
const markerField protowire.Number = protowire.MaxValidNumber

// RequestDecoder turns requests that do not decode (invalid UTF-8 in a string field,
// truncated or garbage protobuf, nesting deeper than MaxMessageDepth) into INVALID_ARGUMENT
// naming the field, where gRPC's own codec answers INTERNAL ("grpc: failed to unmarshal the
// received message"). It has two halves that work together: Codec, the server's protobuf codec,
// and the interceptors that report what it found.
//
// gRPC turns any codec error into INTERNAL before an interceptor runs, so the codec does not
// fail: it leaves the request empty with one unknown field, marked with a random value chosen
// at construction that no client can guess, holding the field and the problem; the
// interceptors refuse such a request with a *rpcstatus.FieldError. A server that has the codec
// without the interceptors still refuses it, as an empty request, in its validation.
type RequestDecoder struct {
	nonce [16]byte
	codec encoding.CodecV2 // gRPC's own, for Marshal
}

// NewRequestDecoder returns a RequestDecoder with a fresh random marker.
func NewRequestDecoder() *RequestDecoder {
	d := &RequestDecoder{codec: encoding.GetCodecV2(grpcproto.Name)}
	_, _ = rand.Read(d.nonce[:]) // crypto/rand.Read never fails
	return d
}

// Codec returns the server codec, for grpc.ForceServerCodecV2. Its name is "proto"; it
// marshals as gRPC's own protobuf codec does.
func (d *RequestDecoder) Codec() encoding.CodecV2 { return decoderCodec{d} }

type decoderCodec struct{ d *RequestDecoder }

func (c decoderCodec) Name() string { return grpcproto.Name }

func (c decoderCodec) Marshal(v any) (mem.BufferSlice, error) { return c.d.codec.Marshal(v) }

// Unmarshal decodes data into v (a protobuf message). When data does not decode, v is left
// empty but for the marker of the failure, and the error is nil; see RequestDecoder.
func (c decoderCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("guard: cannot decode into %T, want a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if err := (proto.UnmarshalOptions{RecursionLimit: MaxMessageDepth}).Unmarshal(b, m); err == nil {
		return nil
	}
	field, problem := decodeProblem(b, m.ProtoReflect().Descriptor())
	proto.Reset(m)
	payload := make([]byte, 0, len(c.d.nonce)+len(field)+1+len(problem))
	payload = append(payload, c.d.nonce[:]...)
	payload = append(payload, field...)
	payload = append(payload, 0)
	payload = append(payload, problem...)
	u := protowire.AppendTag(nil, markerField, protowire.BytesType)
	m.ProtoReflect().SetUnknown(protowire.AppendBytes(u, payload))
	return nil
}

func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV2:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}

// Check returns the *rpcstatus.FieldError of a request the codec could not decode, or nil.
func (d *RequestDecoder) Check(req any) error {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return nil
	}
	u := m.ProtoReflect().GetUnknown()
	if len(u) == 0 {
		return nil
	}
	num, typ, n := protowire.ConsumeTag(u)
	if n < 0 || num != markerField || typ != protowire.BytesType {
		return nil
	}
	payload, n2 := protowire.ConsumeBytes(u[n:])
	if n2 < 0 || n+n2 != len(u) || !bytes.HasPrefix(payload, d.nonce[:]) {
		return nil
	}
	field, problem, _ := bytes.Cut(payload[len(d.nonce):], []byte{0})
	return rpcstatus.Invalid(string(field), string(problem))
}

// UnaryInterceptor refuses a request the codec could not decode.
func (d *RequestDecoder) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := d.Check(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor refuses every streamed message the codec could not decode.
func (d *RequestDecoder) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, decodeStream{ServerStream: ss, d: d})
	}
}

type decodeStream struct {
	grpc.ServerStream
	d *RequestDecoder
}

func (s decodeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.d.Check(m)
}

// decodeProblem walks the wire format of b, a message of type md that proto.Unmarshal refused,
// and says which field is wrong and how: a string that is not valid UTF-8, bytes that end
// early or do not parse, or nesting deeper than MaxMessageDepth. The field is a path as the
// card guard writes them (event.attributes["note"], features["profile"]["name"]); "request"
// when no field can be named. A map key is never echoed when it could hold a card number.
func decodeProblem(b []byte, md protoreflect.MessageDescriptor) (field, problem string) {
	var rev []string
	problem = walkWire(b, md, 1, &rev)
	if problem == "" {
		// proto.Unmarshal refused what the walk accepts: name no field.
		return "request", "could not be decoded"
	}
	return joinCardPath(rev), problem
}

// walkWire returns the problem of b as a message of type md at nesting depth depth, adding
// the path to it to *rev innermost first; "" when b decodes.
func walkWire(b []byte, md protoreflect.MessageDescriptor, depth int, rev *[]string) string {
	if depth > MaxMessageDepth {
		return problemDepth
	}
	transparent := false
	switch md.FullName() {
	case cardValueName, cardStructName, cardListValueName:
		transparent = true
	}
	counts := map[protowire.Number]int{} // occurrences of repeated fields, for their index
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || !num.IsValid() {
			return problemMalformed
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			if fd != nil && !transparent {
				*rev = append(*rev, string(fd.Name()))
			}
			return problemMalformed
		}
		v := b[:n]
		b = b[n:]
		if fd == nil || typ != protowire.BytesType {
			continue // an unknown field, or a known one of another wire type (kept as unknown)
		}
		content, _ := protowire.ConsumeBytes(v)
		index := counts[num]
		counts[num]++
		var problem string
		var seg string // the segment naming where in this field the problem is
		switch {
		case fd.IsMap():
			problem, seg = walkMapEntry(content, fd, depth, rev)
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(content) {
				problem = problemUTF8
			}
		case fd.Kind() == protoreflect.MessageKind:
			problem = walkWire(content, fd.Message(), depth+1, rev)
		case fd.IsList() && fd.Kind() != protoreflect.BytesKind:
			problem = walkPacked(content, fd.Kind())
		}
		if problem == "" {
			continue
		}
		if fd.IsList() {
			seg = "[" + strconv.Itoa(index) + "]"
		}
		if seg != "" {
			*rev = append(*rev, seg)
		}
		if !transparent {
			*rev = append(*rev, string(fd.Name()))
		}
		return problem
	}
	return ""
}

// walkMapEntry returns the problem of one map entry of the map field fd, and the segment that
// names the entry: `["key"]`, or " (a map key)" when the key is the problem or cannot be shown.
func walkMapEntry(b []byte, fd protoreflect.FieldDescriptor, depth int, rev *[]string) (problem, seg string) {
	kd, vd := fd.MapKey(), fd.MapValue()
	var key, value []byte
	haveValue := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || !num.IsValid() {
			return problemMalformed, " (a map key)"
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return problemMalformed, " (a map key)"
		}
		v := b[:n]
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		content, _ := protowire.ConsumeBytes(v)
		switch num {
		case 1:
			key = content
		case 2:
			value, haveValue = content, true
		}
	}
	if kd.Kind() == protoreflect.StringKind && !utf8.Valid(key) {
		return problemUTF8, " (a map key)"
	}
	seg = " (a map key)"
	if kd.Kind() == protoreflect.StringKind && len(key) <= 64 && !cardnumber.Contains(key) {
		seg = "[" + strconv.Quote(string(key)) + "]"
	}
	if !haveValue {
		return "", ""
	}
	switch vd.Kind() {
	case protoreflect.StringKind:
		if !utf8.Valid(value) {
			return problemUTF8, seg
		}
	case protoreflect.MessageKind:
		if p := walkWire(value, vd.Message(), depth+1, rev); p != "" {
			return p, seg
		}
	}
	return "", ""
}

// walkPacked returns the problem of a packed repeated scalar field of kind k.
func walkPacked(b []byte, k protoreflect.Kind) string {
	for len(b) > 0 {
		var n int
		switch k {
		case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
			_, n = protowire.ConsumeFixed32(b)
		case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
			_, n = protowire.ConsumeFixed64(b)
		default:
			_, n = protowire.ConsumeVarint(b)
		}
		if n < 0 {
			return problemMalformed
		}
		b = b[n:]
	}
	return ""
}

package stream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"mime"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/guard"
)

// Content types of messages in and out (the Content-Type header).
const (
	// ContentTypeProtobuf is the protobuf binary encoding, the default.
	ContentTypeProtobuf = "application/protobuf"
	// ContentTypeJSON is the protobuf JSON mapping (protojson): field names in lowerCamelCase
	// or as in the .proto file, enums by name.
	ContentTypeJSON = "application/json"
)

// errDecode is a message that is not the expected request in its content type. Its text is
// fixed: a decoder's own error can quote the input, which may hold customer data.
var errDecode = errors.New("does not decode")

// errContentType is a Content-Type the edge does not read.
var errContentType = errors.New("unsupported Content-Type: want " + ContentTypeProtobuf + " or " + ContentTypeJSON)

// errTooLarge is a message above guard.DefaultMaxRecvMsgSize, the RPC's own limit.
var errTooLarge = errors.New("larger than the request size limit")

// format is the encoding of a message.
type format uint8

const (
	formatProtobuf format = iota
	formatJSON
)

// contentType returns the encoding named by a Content-Type header value. An empty value is
// protobuf, unless the payload starts with '{' (JSON, sniffed as producers often omit the
// header).
func contentType(value string, payload []byte) (format, error) {
	switch value {
	case ContentTypeProtobuf:
		return formatProtobuf, nil
	case ContentTypeJSON:
		return formatJSON, nil
	case "":
		if t := bytes.TrimLeft(payload, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			return formatJSON, nil
		}
		return formatProtobuf, nil
	}
	mt, _, err := mime.ParseMediaType(value)
	if err != nil {
		return 0, errContentType
	}
	switch mt {
	case ContentTypeProtobuf, "application/x-protobuf", "application/vnd.google.protobuf", "application/octet-stream":
		return formatProtobuf, nil
	case ContentTypeJSON:
		return formatJSON, nil
	}
	return 0, errContentType
}

// decode reads payload, in the encoding its Content-Type names, into m, with the RPC path's
// nesting limit (guard.MaxMessageDepth) and size limit.
func decode(header string, payload []byte, m proto.Message) error {
	if len(payload) > guard.DefaultMaxRecvMsgSize {
		return errTooLarge
	}
	f, err := contentType(header, payload)
	if err != nil {
		return err
	}
	if f == formatJSON {
		if err := (protojson.UnmarshalOptions{RecursionLimit: guard.MaxMessageDepth}).Unmarshal(payload, m); err != nil {
			return errDecode
		}
		return nil
	}
	if err := (proto.UnmarshalOptions{RecursionLimit: guard.MaxMessageDepth}).Unmarshal(payload, m); err != nil {
		return errDecode
	}
	return nil
}

// encoder encodes the messages the edge publishes.
type encoder struct {
	format      format
	contentType string
}

func newEncoder(f format) encoder {
	if f == formatJSON {
		return encoder{format: f, contentType: ContentTypeJSON}
	}
	return encoder{format: formatProtobuf, contentType: ContentTypeProtobuf}
}

func (e encoder) marshal(m proto.Message) ([]byte, error) {
	if e.format == formatJSON {
		return protojson.Marshal(m)
	}
	return proto.Marshal(m)
}

// SubjectToken returns id as one token of a NATS subject: id itself when it is made of ASCII
// letters, digits, '-' and '_' and does not start with '_'; otherwise '_' followed by id in
// unpadded base64url. Two ids never share a token. An empty id is "_".
func SubjectToken(id string) string {
	if id != "" && id[0] != '_' && plainToken(id) {
		return id
	}
	return "_" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// actionToken is the lower-case name of an action for a subject: "ACTION_RETRY" is "retry".
func actionToken(name string) string {
	return strings.ToLower(strings.TrimPrefix(name, "ACTION_"))
}

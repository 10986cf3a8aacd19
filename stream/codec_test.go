package stream

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

func TestSubjectToken(t *testing.T) {
	tests := []struct{ id, want string }{
		{"cust-123", "cust-123"},
		{"Cust_9", "Cust_9"},
		{"_leading", "_X2xlYWRpbmc"},
		{"a.b", "_YS5i"},
		{"a b", "_YSBi"},
		{"*", "_Kg"},
		{">", "_Pg"},
		{"", "_"},
		{"é", "_w6k"},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		got := SubjectToken(tc.id)
		if got != tc.want {
			t.Errorf("SubjectToken(%q) = %q, want %q", tc.id, got, tc.want)
		}
		if strings.ContainsAny(got, ".*> \t\r\n") {
			t.Errorf("SubjectToken(%q) = %q holds a subject separator or wildcard", tc.id, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("SubjectToken(%q) = SubjectToken(%q) = %q", tc.id, other, got)
		}
		seen[got] = tc.id
	}
}

func TestContentType(t *testing.T) {
	tests := []struct {
		header, payload string
		want            format
		err             error
	}{
		{ContentTypeProtobuf, "", formatProtobuf, nil},
		{ContentTypeJSON, "", formatJSON, nil},
		{"application/json; charset=utf-8", "", formatJSON, nil},
		{"application/x-protobuf", "", formatProtobuf, nil},
		{"", " {\"event\":{}}", formatJSON, nil},
		{"", "\x0a\x02", formatProtobuf, nil},
		{"text/csv", "", 0, errContentType},
		{"not a media type;;", "", 0, errContentType},
	}
	for _, tc := range tests {
		got, err := contentType(tc.header, []byte(tc.payload))
		if !errors.Is(err, tc.err) || (err == nil && got != tc.want) {
			t.Errorf("contentType(%q, %q) = %v, %v; want %v, %v", tc.header, tc.payload, got, err, tc.want, tc.err)
		}
	}
}

func TestDecodeLimits(t *testing.T) {
	big := make([]byte, guard.DefaultMaxRecvMsgSize+1)
	if err := decode(ContentTypeProtobuf, big, &arbiterv1.DecideRequest{}); !errors.Is(err, errTooLarge) {
		t.Errorf("decode(%d bytes) = %v, want errTooLarge", len(big), err)
	}
	// A JSON decoding error never quotes the input.
	const pan = "4111111111111111"
	err := decode(ContentTypeJSON, []byte(`{"event": {"id": `+pan), &arbiterv1.DecideRequest{})
	if err == nil || strings.Contains(err.Error(), pan) {
		t.Errorf("decode(bad JSON with a card number) = %v, want an error without the input", err)
	}
}

// FuzzDecode feeds untrusted message bodies through what the edge does before the service: it
// never panics, a body either decodes or fails with one of the edge's fixed errors, and what
// decodes passes or fails the card-number and time checks without panicking.
func FuzzDecode(f *testing.F) {
	req := &arbiterv1.DecideRequest{Event: &arbiterv1.Event{Id: "ev-1", Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE},
		Customer: &arbiterv1.Customer{Id: "cust-1", Timezone: "Europe/London"}}
	pb, _ := proto.Marshal(req)
	js, _ := protojson.Marshal(req)
	f.Add("", pb)
	f.Add(ContentTypeProtobuf, pb)
	f.Add(ContentTypeJSON, js)
	f.Add("", js)
	f.Add("application/json; charset=utf-8", []byte(`{"event": {"attributes": {"k": "4111111111111111"}}}`))
	f.Add(ContentTypeProtobuf, []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		var m arbiterv1.DecideRequest
		err := decode(header, body, &m)
		if err != nil {
			if !errors.Is(err, errDecode) && !errors.Is(err, errContentType) && !errors.Is(err, errTooLarge) {
				t.Fatalf("decode(%q) = %v, want one of the edge's errors", header, err)
			}
			return
		}
		_ = checkRequest(&m, fixedNow)
	})
}

// fixedNow is the clock of the fuzzed checks.
var fixedNow = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func TestShedDelay(t *testing.T) {
	const def = 250 * time.Millisecond
	shed := rpcstatus.ResourceExhausted("overloaded", 50*time.Millisecond)
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"retry info", status.Convert(shed).Err(), 50 * time.Millisecond},
		{"no retry info", status.Error(codes.ResourceExhausted, "full"), def},
		{"not a status", errors.New("plain"), def},
	}
	for _, tc := range tests {
		if got := shedDelay(tc.err, def); got != tc.want {
			t.Errorf("shedDelay(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

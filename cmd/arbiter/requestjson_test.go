package main

import (
	"strings"
	"testing"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestUnmarshalRequestUnknownEnum: an enum value the API does not know is named by its path in
// the request, with the valid values; other errors are protojson's.
func TestUnmarshalRequestUnknownEnum(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string // in the error
		notWant    []string
	}{
		{
			name: "event type",
			json: `{"event": {"id": "e", "type": "EVENT_TYPE_BOGUS"}, "customer": {"id": "c"}}`,
			want: []string{`event.type: unknown value "EVENT_TYPE_BOGUS"`, "valid values: EVENT_TYPE_PAYMENT_FAILED, ", "EVENT_TYPE_INBOUND_CONTACT"},
			// The zero value is valid protojson but never a valid event type.
			notWant: []string{"EVENT_TYPE_UNSPECIFIED"},
		},
		{
			name: "short name in a nested list",
			json: `{"event": {"type": "EVENT_TYPE_PAYMENT_FAILED"}, "customer": {"id": "c", "consents": [{"channel": "CHANNEL_SMS"}, {"channel": "EMAIL"}]}}`,
			want: []string{`customer.consents[1].channel: unknown value "EMAIL"`, "CHANNEL_EMAIL"},
		},
		{
			name: "proto field name",
			json: `{"event": {"type": "EVENT_TYPE_PAYMENT_FAILED", "payment": {"network": "CARD_NETWORK_VISA"}}, "customer": {"preferred_channels": ["CHANNEL_SMS", "CHANNEL_FAX"]}}`,
			want: []string{`customer.preferred_channels[1]: unknown value "CHANNEL_FAX"`, "CHANNEL_WHATSAPP"},
		},
		{
			name: "not JSON",
			json: `{"event": `,
			want: []string{"proto:"},
		},
		{
			name: "unknown field",
			json: `{"evnt": {}}`,
			want: []string{"proto:", "evnt"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := unmarshalRequest([]byte(tc.json), &arbiterv1.DecideRequest{})
			if err == nil {
				t.Fatalf("unmarshalRequest(%s) = nil, want an error", tc.json)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("unmarshalRequest(%s) = %q, want it to contain %q", tc.json, err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("unmarshalRequest(%s) = %q, want it not to contain %q", tc.json, err, w)
				}
			}
		})
	}
	if err := unmarshalRequest([]byte(`{"event": {"type": 3}}`), &arbiterv1.DecideRequest{}); err != nil {
		t.Errorf("unmarshalRequest with a numeric enum = %v, want nil (protojson takes numbers)", err)
	}
}

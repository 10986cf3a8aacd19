package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestFeaturesExportErase: export shows the decision, erase removes it and prints the
// tombstone, export then shows the tombstone and no decision; erase without --reason is a
// usage error.
func TestFeaturesExportErase(t *testing.T) {
	grpcAddr, _, _, _ := startServe(t)
	event := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(event, []byte(sampleEvent), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, event}, noEnv, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	export := func() *arbiterv1.ExportCustomerResponse {
		t.Helper()
		var out bytes.Buffer
		if err := run(t.Context(), []string{"features", "export", "--addr", grpcAddr, "cust-123"}, noEnv, nil, &out, io.Discard); err != nil {
			t.Fatalf("features export: %v", err)
		}
		var resp arbiterv1.ExportCustomerResponse
		if err := protojson.Unmarshal(out.Bytes(), &resp); err != nil {
			t.Fatalf("features export wrote %q: %v", out.String(), err)
		}
		return &resp
	}
	if got := export(); len(got.GetDecisions()) != 1 || got.GetDecisions()[0].GetEventId() != "evt-0001" {
		t.Fatalf("features export = %d decisions, want evt-0001's", len(got.GetDecisions()))
	}
	if err := run(t.Context(), []string{"features", "erase", "--addr", grpcAddr, "cust-123"}, noEnv, nil, io.Discard, io.Discard); err == nil {
		t.Errorf("features erase without --reason = nil, want a usage error")
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"features", "erase", "--addr", grpcAddr, "--reason", "DSR-1", "cust-123"}, noEnv, nil, &out, io.Discard); err != nil {
		t.Fatalf("features erase: %v", err)
	}
	for _, want := range []string{"erased     cust-123", "decisions            1", "message_reservations 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("features erase output lacks %q:\n%s", want, out.String())
		}
	}
	if got := export(); len(got.GetDecisions()) != 0 || len(got.GetErasures()) != 1 || got.GetErasures()[0].GetReason() != "DSR-1" {
		t.Errorf("features export after erase = %d decisions, erasures %v; want none and the tombstone", len(got.GetDecisions()), got.GetErasures())
	}
}

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

// TestConfirmCommand: arbiter decide prints how to confirm a RETRY, and arbiter confirm asks the
// server, which finds nothing changed; an unknown id fails the command.
func TestConfirmCommand(t *testing.T) {
	grpcAddr, _, _, _ := startServe(t)
	event := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(event, []byte(sampleEvent), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, "--json", event}, noEnv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var resp arbiterv1.DecideResponse
	if err := protojson.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, event}, noEnv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "arbiter confirm " + resp.GetDecisionId(); !strings.Contains(out.String(), want) {
		t.Errorf("decide output lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	if err := run(t.Context(), []string{"confirm", "--addr", grpcAddr, resp.GetDecisionId()}, noEnv, nil, &out, io.Discard); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if !strings.Contains(out.String(), "proceed    execute it") || !strings.Contains(out.String(), "STILL_VALID") {
		t.Errorf("confirm output:\n%s\nwant proceed with STILL_VALID", out.String())
	}
	err := run(t.Context(), []string{"confirm", "--addr", grpcAddr, "a3-01a211a3-3fa9-75e6-b012-2c693d9dfa6d"}, noEnv, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("confirm of an unknown id = %v, want not found", err)
	}
}

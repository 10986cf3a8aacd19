package auditfile_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/arbiter-dev/arbiter/auditfile"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestJSONLSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := auditfile.OpenJSONLSink(path)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(id string) featurestore.AuditEntry {
		return featurestore.AuditEntry{DecisionID: id, Record: mustRecord(t, id)}
	}
	ctx := t.Context()
	if err := s.WriteAudit(ctx, []featurestore.AuditEntry{entry("d1"), entry("d2"), entry("d1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAudit(ctx, []featurestore.AuditEntry{entry("d2"), entry("d3")}); err != nil {
		t.Fatal(err)
	}
	if s.Written != 3 || s.Duplicates != 2 {
		t.Errorf("Written, Duplicates = %d, %d; want 3, 2", s.Written, s.Duplicates)
	}
	s.Close()

	// A crash mid-write leaves a partial line; reopening cuts it and keeps the ids.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"decision_id":"d4","ev`)
	f.Close()
	s, err = auditfile.OpenJSONLSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 3 || !s.Has("d3") || s.Has("d4") {
		t.Errorf("reopened sink: Len() = %d, Has(d3) = %v, Has(d4) = %v; want 3, true, false", got, s.Has("d3"), s.Has("d4"))
	}
	if err := s.WriteAudit(ctx, []featurestore.AuditEntry{entry("d3"), entry("d4")}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var ids []string
	for _, l := range lines {
		var rec arbiterv1.DecisionRecord
		if err := protojson.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ids = append(ids, rec.GetDecisionId())
	}
	if want := []string{"d1", "d2", "d3", "d4"}; !slices.Equal(ids, want) {
		t.Errorf("file holds decisions %v, want %v", ids, want)
	}

	if err := os.WriteFile(path, []byte("not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auditfile.OpenJSONLSink(path); err == nil {
		t.Errorf("OpenJSONLSink(file of non-records) = nil error, want an error")
	}
}

func mustRecord(t *testing.T, id string) []byte {
	t.Helper()
	b, err := proto.Marshal(&arbiterv1.DecisionRecord{DecisionId: id})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

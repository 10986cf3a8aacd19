// Package auditfile writes the audit export file: one JSON line per decision record, fsynced,
// deduplicated by decision id across runs (see `arbiter audit export`).
package auditfile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// JSONLSink is a featurestore.AuditSink that appends one JSON line per decision to a file: the protojson
// form of the arbiterv1.DecisionRecord (field names as in the .proto file). It deduplicates by
// decision id across runs: on open it reads the ids already in the file, and it never writes a
// decision twice. Each WriteAudit ends with fsync, so what it acknowledged survives a crash; a
// partial last line left by a crash is cut off on open (its entry was not acknowledged, so the
// exporter delivers it again). A JSONLSink is not safe for concurrent use.
type JSONLSink struct {
	f    *os.File
	seen map[string]struct{}
	buf  bytes.Buffer
	// Written counts the lines written; Duplicates the entries skipped as already written.
	Written, Duplicates int
}

// OpenJSONLSink opens (or creates) the file at path for appending and loads the decision ids it
// already holds. A line that is not a JSON object with a decision_id is an error: the file is
// not an audit export.
func OpenJSONLSink(path string) (*JSONLSink, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	s := &JSONLSink{f: f, seen: map[string]struct{}{}}
	if err := s.load(); err != nil {
		f.Close()
		return nil, fmt.Errorf("read audit file %s: %w", path, err)
	}
	return s, nil
}

// load reads the ids in the file, cuts a partial last line, and leaves the offset at the end.
func (s *JSONLSink) load() error {
	r := bufio.NewReaderSize(s.f, 64<<10)
	var good int64 // offset after the last complete line
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // b, if any, is a partial line: dropped below
		}
		if err != nil {
			return err
		}
		var rec struct {
			DecisionID string `json:"decision_id"`
		}
		if err := json.Unmarshal(b, &rec); err != nil || rec.DecisionID == "" {
			return fmt.Errorf("line %d is not an audit record", line)
		}
		s.seen[rec.DecisionID] = struct{}{}
		good += int64(len(b))
	}
	if err := s.f.Truncate(good); err != nil {
		return err
	}
	_, err := s.f.Seek(good, io.SeekStart)
	return err
}

// Has reports whether the file holds decision id.
func (s *JSONLSink) Has(decisionID string) bool {
	_, ok := s.seen[decisionID]
	return ok
}

// Len returns the number of decisions in the file.
func (s *JSONLSink) Len() int { return len(s.seen) }

var auditJSON = protojson.MarshalOptions{UseProtoNames: true}

// WriteAudit implements AuditSink: it appends the decisions not yet in the file, in one
// write, and syncs the file; outcome entries are not part of the file. A record that does not
// decode is an error wrapping ErrCorrupt.
func (s *JSONLSink) WriteAudit(_ context.Context, entries []featurestore.AuditEntry) error {
	s.buf.Reset()
	var added []string
	batch := map[string]struct{}{}
	for _, e := range entries {
		if e.Outcome != nil {
			continue
		}
		if _, dup := s.seen[e.DecisionID]; dup {
			s.Duplicates++
			continue
		}
		if _, dup := batch[e.DecisionID]; dup {
			s.Duplicates++
			continue
		}
		var rec arbiterv1.DecisionRecord
		if err := proto.Unmarshal(e.Record, &rec); err != nil {
			return fmt.Errorf("%w: audit record of decision %s: %w", featurestore.ErrCorrupt, e.DecisionID, err)
		}
		if rec.GetDecisionId() == "" {
			rec.DecisionId = e.DecisionID
		}
		b, err := auditJSON.Marshal(&rec)
		if err != nil {
			return fmt.Errorf("encode audit record of decision %s: %w", e.DecisionID, err)
		}
		// protojson output is one line, but its spacing is unstable by design; compact it so
		// that every record is exactly one line of plain JSON.
		if err := json.Compact(&s.buf, b); err != nil {
			return fmt.Errorf("encode audit record of decision %s: %w", e.DecisionID, err)
		}
		s.buf.WriteByte('\n')
		batch[e.DecisionID] = struct{}{}
		added = append(added, e.DecisionID)
	}
	if len(added) == 0 {
		return nil
	}
	end, err := s.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("write audit file: %w", err)
	}
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		// Cut what was written of the batch, so the file holds whole lines only.
		_ = s.f.Truncate(end)
		_, _ = s.f.Seek(end, io.SeekStart)
		return fmt.Errorf("write audit file: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync audit file: %w", err)
	}
	for _, id := range added {
		s.seen[id] = struct{}{}
	}
	s.Written += len(added)
	return nil
}

// Close closes the file.
func (s *JSONLSink) Close() error { return s.f.Close() }

var _ featurestore.AuditSink = (*JSONLSink)(nil)

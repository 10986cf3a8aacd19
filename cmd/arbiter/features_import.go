package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/loadtest"
)

// importOptions are the options of importFeatures.
type importOptions struct {
	batch   int  // lines per batch
	writers int  // batches parsed and written at once
	atomic  bool // write nothing unless every line is good
	// progress, when set, is called after each written batch with the records written and
	// the input bytes consumed so far, never concurrently.
	progress func(records, bytes int64)
}

// importResult is what importFeatures did.
type importResult struct {
	written int64       // records written
	lines   int64       // lines read, blank ones excepted
	bad     []lineError // every bad line, in line order
}

// maxFeatureLine is the longest line importFeatures parses; a longer one is a bad line.
const maxFeatureLine = 1 << 20

// lineBatch is a run of input lines: raw ones from the reader, or parsed ones for the writers.
type lineBatch struct {
	first int      // line number of lines[0]
	lines [][]byte // copies; blank lines included so that numbering holds
	long  []int    // indexes of lines cut at maxFeatureLine
	bytes int64
	recs  []loadtest.FeatureRecord
}

// importFeatures reads JSON lines of customer features from r (see parseFeatureLine; blank
// lines are skipped) and writes the good ones to sink in batches, parsing and writing
// o.writers batches at once. A bad line does not stop it: every one is returned, in line
// order. With o.atomic nothing is written unless every line is good. It stops at the first
// error of the sink or of r, or when ctx is done.
func importFeatures(ctx context.Context, r io.Reader, sink loadtest.Sink, o importOptions) (importResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var res importResult

	// Read: batches of raw lines.
	raw := make(chan lineBatch, o.writers)
	var readErr error // set before raw is closed
	var lines atomic.Int64
	go func() {
		defer close(raw)
		readErr = readLineBatches(ctx, bufio.NewReaderSize(r, 64<<10), o.batch, raw, &lines)
	}()

	// Parse: every bad line is kept; good records go on in batches.
	parsed := make(chan lineBatch, o.writers)
	var (
		mu   sync.Mutex
		bad  []lineError
		wait sync.WaitGroup
	)
	for range o.writers {
		wait.Go(func() {
			for b := range raw {
				b.recs = make([]loadtest.FeatureRecord, 0, len(b.lines))
				var errs []lineError
				for i, l := range b.lines {
					if slices.Contains(b.long, i) {
						errs = append(errs, lineError{Line: b.first + i, Err: fmt.Errorf("longer than %d bytes", maxFeatureLine)})
						continue
					}
					if len(bytes.TrimSpace(l)) == 0 {
						continue
					}
					rec, err := parseFeatureLine(l)
					if err != nil {
						errs = append(errs, lineError{Line: b.first + i, Err: err})
						continue
					}
					b.recs = append(b.recs, rec)
				}
				b.lines = nil
				if len(errs) > 0 {
					mu.Lock()
					bad = append(bad, errs...)
					mu.Unlock()
				}
				select {
				case parsed <- b:
				case <-ctx.Done():
				}
			}
		})
	}
	go func() { wait.Wait(); close(parsed) }()

	// Write, at once or once every line is checked.
	in := parsed
	if o.atomic {
		var all []lineBatch
		for b := range parsed {
			all = append(all, b)
		}
		if len(bad) > 0 || readErr != nil || ctx.Err() != nil {
			in = nil
		} else {
			ch := make(chan lineBatch)
			go func() {
				defer close(ch)
				for _, b := range all {
					select {
					case ch <- b:
					case <-ctx.Done():
						return
					}
				}
			}()
			in = ch
		}
	}
	var err error
	if in != nil {
		res.written, err = writeLineBatches(ctx, cancel, sink, in, o)
	}
	// Every goroutine that sets bad or readErr is done: parsed (and raw) are closed.
	slices.SortFunc(bad, func(a, b lineError) int { return a.Line - b.Line })
	res.bad, res.lines = bad, lines.Load()
	if err == nil {
		err = readErr
	}
	if err == nil {
		err = context.Cause(ctx)
	}
	return res, err
}

// readLineBatches reads r into batches of n lines, each line copied, and sends them to out
// until r ends or ctx is done. A line longer than maxFeatureLine is kept cut, and its index
// noted. It counts the lines that are not blank in lines.
func readLineBatches(ctx context.Context, r *bufio.Reader, n int, out chan<- lineBatch, lines *atomic.Int64) error {
	b := lineBatch{first: 1}
	line := 0
	send := func() bool {
		select {
		case out <- b:
			b = lineBatch{first: line + 1}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) == 0 && err == io.EOF {
			break
		}
		size := len(chunk)
		l := bytes.Clone(chunk)
		long := false
		for errors.Is(err, bufio.ErrBufferFull) { // a line longer than the buffer
			chunk, err = r.ReadSlice('\n')
			size += len(chunk)
			if len(l) <= maxFeatureLine {
				l = append(l, chunk...)
			}
		}
		if len(l) > maxFeatureLine {
			l, long = l[:0], true
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("line %d: %w", line+1, err)
		}
		line++
		b.bytes += int64(size)
		if long {
			b.long = append(b.long, len(b.lines))
			lines.Add(1)
		} else if len(bytes.TrimSpace(l)) > 0 {
			lines.Add(1)
		}
		b.lines = append(b.lines, l)
		if len(b.lines) == n && !send() {
			return nil
		}
		if err == io.EOF {
			break
		}
	}
	if len(b.lines) > 0 {
		send()
	}
	return nil
}

// writeLineBatches writes the records of the batches from in with o.writers writers, until in
// is closed. At the first error it cancels ctx and drains in; it returns the records written.
func writeLineBatches(ctx context.Context, cancel context.CancelCauseFunc, sink loadtest.Sink, in <-chan lineBatch, o importOptions) (int64, error) {
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		records, consumed int64
	)
	for range o.writers {
		wg.Go(func() {
			for b := range in {
				if ctx.Err() != nil {
					continue
				}
				if len(b.recs) > 0 {
					if err := sink.WriteBatch(ctx, b.recs); err != nil {
						cancel(err)
						continue
					}
				}
				mu.Lock()
				records += int64(len(b.recs))
				consumed += b.bytes
				if o.progress != nil {
					o.progress(records, consumed)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return records, context.Cause(ctx)
}

// featureLine is one line of a features file.
type featureLine struct {
	CustomerID string         `json:"customer_id"`
	Features   map[string]any `json:"features"`
	TTL        string         `json:"ttl"`
}

// parseFeatureLine parses one JSON line of a features file:
// {"customer_id": "...", "features": {...}, "ttl": "720h"}. ttl is optional, a positive
// duration in the policies' syntax (decision.ParseDuration: "90m", "720h", "30d").
func parseFeatureLine(line []byte) (loadtest.FeatureRecord, error) {
	var l featureLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return loadtest.FeatureRecord{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return loadtest.FeatureRecord{}, errors.New("more than one JSON value on the line")
	}
	if l.CustomerID == "" {
		return loadtest.FeatureRecord{}, errors.New("customer_id is required")
	}
	if len(l.Features) == 0 {
		return loadtest.FeatureRecord{}, errors.New("features is required and must not be empty")
	}
	rec := loadtest.FeatureRecord{CustomerID: l.CustomerID, Features: l.Features}
	if l.TTL != "" {
		ttl, err := decision.ParseDuration(l.TTL)
		if err != nil || ttl <= 0 {
			return loadtest.FeatureRecord{}, fmt.Errorf("ttl %q is not a positive duration such as \"720h\" or \"30d\"", l.TTL)
		}
		rec.TTL = ttl
	}
	return rec, nil
}

// lineError is an error in one line of an imported file.
type lineError struct {
	Line int
	Err  error
}

// Error returns "line N: " and the cause.
func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns the cause.
func (e *lineError) Unwrap() error { return e.Err }

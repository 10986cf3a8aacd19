package featurestore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/featurestore"
)

// syncBuffer is a bytes.Buffer safe for the client's background goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSetClientLogger checks that the client's own complaint about a failed dial, which
// go-redis prints as plain text by default, arrives as a JSON log line.
func TestSetClientLogger(t *testing.T) {
	var out syncBuffer
	featurestore.SetClientLogger(slog.New(slog.NewJSONHandler(&out, nil)))
	t.Cleanup(func() { featurestore.SetClientLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))) })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("PING to a closed port succeeded")
	}

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	found := false
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("client log line is not JSON: %q", line)
		}
		if rec["level"] == "WARN" && rec["component"] == "redis-client" && strings.Contains(rec["msg"].(string), "dial") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no JSON line about the failed dial; got %q", out.String())
	}
}

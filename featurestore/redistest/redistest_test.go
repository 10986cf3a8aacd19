package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartAnswersPing(t *testing.T) {
	addr := Start(t)
	if err := ping(addr, false); err != nil {
		t.Fatalf("ping(%q) = %v, want nil", addr, err)
	}
}

func TestStartWithArgs(t *testing.T) {
	addr := StartWithArgs(t, "--maxmemory", "10mb")
	if err := ping(addr, false); err != nil {
		t.Fatalf("ping(%q) = %v, want nil", addr, err)
	}
}

func TestServerStopsAtCleanup(t *testing.T) {
	var addr string
	t.Run("start", func(t *testing.T) {
		addr = Start(t)
	})
	if err := ping(addr, false); err == nil {
		t.Fatalf("ping(%q) after the subtest ended = nil, want an error (server still running)", addr)
	}
}

func TestStartLoading(t *testing.T) {
	addr := StartLoading(t, 5000, 200*time.Microsecond)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	err := c.Get(context.Background(), "redistest:1").Err()
	if !redis.HasErrorPrefix(err, "LOADING") {
		t.Fatalf("GET right after StartLoading = %v, want a LOADING error", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := c.Get(context.Background(), "redistest:5000").Result()
		if err == nil {
			if v != "5000" {
				t.Fatalf("GET redistest:5000 after loading = %q, want 5000", v)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not loaded after 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package redistest

import (
	"testing"
)

func TestStartAnswersPing(t *testing.T) {
	addr := Start(t)
	if err := ping(addr); err != nil {
		t.Fatalf("ping(%q) = %v, want nil", addr, err)
	}
}

func TestStartWithArgs(t *testing.T) {
	addr := StartWithArgs(t, "--maxmemory", "10mb")
	if err := ping(addr); err != nil {
		t.Fatalf("ping(%q) = %v, want nil", addr, err)
	}
}

func TestServerStopsAtCleanup(t *testing.T) {
	var addr string
	t.Run("start", func(t *testing.T) {
		addr = Start(t)
	})
	if err := ping(addr); err == nil {
		t.Fatalf("ping(%q) after the subtest ended = nil, want an error (server still running)", addr)
	}
}

package main

import (
	"io"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/guard"
)

func TestServeTransportFlags(t *testing.T) {
	env := map[string]string{"ARBITER_MAX_CONNECTIONS": "64", "ARBITER_IDLE_TIMEOUT": "90s"}
	cfg, err := parseServeConfig([]string{"--max-concurrent-streams", "32", "--handshake-timeout", "2s"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := guard.Transport{MaxConnections: 64, IdleTimeout: 90 * time.Second, MaxConcurrentStreams: 32, HandshakeTimeout: 2 * time.Second}
	got := cfg.security.Transport
	if got.MaxConnections != want.MaxConnections || got.IdleTimeout != want.IdleTimeout ||
		got.MaxConcurrentStreams != want.MaxConcurrentStreams || got.HandshakeTimeout != want.HandshakeTimeout {
		t.Errorf("transport from flags and environment = %+v, want %+v", got, want)
	}
	if got.MaxHeaderBytes != guard.DefaultMaxHeaderBytes || got.StreamWindow != guard.DefaultStreamWindow {
		t.Errorf("unset transport limits = %+v, want the defaults", got)
	}
}

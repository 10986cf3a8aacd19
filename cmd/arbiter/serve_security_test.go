package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
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

// TestServeAdminPortLoopbackRule: the admin address follows the gRPC port's loopback rule, and
// profiles never go to the network without tokens.
func TestServeAdminPortLoopbackRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no tokens", []string{"serve", "--http-addr", "0.0.0.0:0"}},
		{"pprof with --insecure", []string{"serve", "--http-addr", "0.0.0.0:0", "--pprof", "--insecure"}},
	} {
		err := run(t.Context(), tc.args, func(string) string { return "" }, nil, io.Discard, io.Discard)
		if !errors.Is(err, guard.ErrInsecureBind) {
			t.Errorf("%s: run(%q) = %v, want ErrInsecureBind", tc.name, tc.args, err)
		}
	}
	_, _, _, logs := startServe(t, "--http-addr", "0.0.0.0:0", "--insecure")
	if m := logLine(logs.String(), "INSECURE: no authentication and --insecure: anyone who can reach 0.0.0.0:0 can read /metrics"); m == nil || m["level"] != "WARN" {
		t.Errorf("serve --http-addr 0.0.0.0:0 --insecure did not warn:\n%s", logs)
	}
}

// TestServeAdminPortTokens: with client tokens the admin port may listen anywhere; /metrics
// then needs the metrics role and profiles the admin role, and the command line is never served.
func TestServeAdminPortTokens(t *testing.T) {
	const adminTok, scraperTok = "arb_serve-admin-0123456789", "arb_serve-scraper-0123456789"
	tokens := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(tokens, []byte("clients:\n"+
		"- {name: ops, token_sha256: "+guard.HashToken(adminTok)+", roles: [admin]}\n"+
		"- {name: prometheus, token_sha256: "+guard.HashToken(scraperTok)+", roles: [metrics]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, httpAddr, _, _ := startServe(t, "--http-addr", "0.0.0.0:0", "--pprof", "--auth-tokens", tokens)
	_, port, _ := net.SplitHostPort(httpAddr)
	base := "http://127.0.0.1:" + port
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", scraperTok, http.StatusOK},
		{"/metrics", adminTok, http.StatusForbidden},
		{"/debug/pprof/", "", http.StatusUnauthorized},
		{"/debug/pprof/", scraperTok, http.StatusForbidden},
		{"/debug/pprof/", adminTok, http.StatusOK},
		{"/debug/pprof/cmdline", adminTok, http.StatusNotFound},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with token %q = %d, want %d", tc.path, tc.token, resp.StatusCode, tc.want)
		}
	}
}

func TestServeRedisPasswordConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "redis-password")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantURL string // "" means an error
	}{
		{"file", []string{"--redis", "redis://127.0.0.1:6379", "--redis-password-file", file}, nil, "redis://:from-file@127.0.0.1:6379"},
		{"environment", []string{"--redis", "127.0.0.1:6379"}, map[string]string{"ARBITER_REDIS_PASSWORD": "from-env"}, "redis://:from-env@127.0.0.1:6379"},
		{"file from the environment", nil, map[string]string{"ARBITER_REDIS": "127.0.0.1:7000,127.0.0.1:7001", "ARBITER_REDIS_PASSWORD_FILE": file}, "redis+cluster://:from-file@127.0.0.1:7000,127.0.0.1:7001"},
		{"in the URL", []string{"--redis", "redis://:inline@127.0.0.1:6379"}, nil, "redis://:inline@127.0.0.1:6379"},
		{"twice", []string{"--redis", "redis://:inline@127.0.0.1:6379", "--redis-password-file", file}, nil, ""},
		{"both sources", []string{"--redis", "127.0.0.1:6379", "--redis-password-file", file}, map[string]string{"ARBITER_REDIS_PASSWORD": "x"}, ""},
		{"no Redis", []string{"--redis-password-file", file}, nil, ""},
	} {
		cfg, err := parseServeConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		switch {
		case tc.wantURL == "" && err == nil:
			t.Errorf("%s: parseServeConfig(%q) = nil error, want an error", tc.name, tc.args)
		case tc.wantURL != "" && (err != nil || cfg.redisURL != tc.wantURL):
			t.Errorf("%s: parseServeConfig(%q) = %q, %v, want %q", tc.name, tc.args, cfg.redisURL, err, tc.wantURL)
		}
		if err != nil && strings.Contains(err.Error(), "from-file") {
			t.Errorf("%s: error %q shows the password", tc.name, err)
		}
	}
}

// TestServeRedisPassword runs serve against a Redis that requires a password read from a file:
// the store answers, and the password appears in no log line; given in --redis, it is warned
// about and still never logged.
func TestServeRedisPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	const pw = "correct-horse-battery"
	addr := redistest.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	if err := admin.ConfigSet(t.Context(), "requirepass", pw).Err(); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	file := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	for _, args := range [][]string{
		{"--redis", "redis://" + addr, "--redis-password-file", file, "--audit-spool", spool, "--pprof"},
		{"--redis", "redis://:" + pw + "@" + addr, "--audit-spool", spool, "--pprof"},
	} {
		_, httpAddr, stop, logs := startServe(t, args...)
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("serve %q: GET /readyz = %d %s, want 200 (Redis answers with the password)", args, resp.StatusCode, body)
		}
		if resp, err := http.Get("http://" + httpAddr + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("serve %q: GET /debug/pprof/cmdline = %v, %v, want 404", args, resp.StatusCode, err)
		} else {
			resp.Body.Close()
		}
		if err := stop(); err != nil {
			t.Errorf("serve %q: %v", args, err)
		}
		inArgs := strings.Contains(args[1], pw)
		if warned := logLine(logs.String(), "the Redis password is on the command line (--redis), where other local users can read it; use --redis-password-file or ARBITER_REDIS_PASSWORD") != nil; warned != inArgs {
			t.Errorf("serve %q: warned about the password on the command line: %v, want %v", args, warned, inArgs)
		}
		if strings.Contains(logs.String(), pw) {
			t.Errorf("serve %q: the logs hold the Redis password:\n%s", args, logs)
		}
	}
}

// rawCodec sends *[]byte as they are: a client that can send bytes that do not decode.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// TestServeBadBytes: through the whole server, a request with invalid UTF-8 or truncated
// protobuf gets INVALID_ARGUMENT naming the field, not INTERNAL.
func TestServeBadBytes(t *testing.T) {
	grpcAddr, _, _, _ := startServe(t)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// DecideRequest{event: {id: "evt-\xff", type: 3}, customer: {id: "c1"}}
	badID := []byte("\x0a\x09\x0a\x05evt-\xff\x10\x03\x12\x04\x0a\x02c1")
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"invalid UTF-8", badID, "invalid event.id: not valid UTF-8"},
		{"truncated", badID[:8], "invalid event: truncated or malformed protobuf"},
	} {
		var reply []byte
		err := conn.Invoke(t.Context(), arbiterv1.DecisionService_Decide_FullMethodName, &tc.body, &reply)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != tc.want {
			t.Errorf("%s: Decide = %v %q, want InvalidArgument %q", tc.name, st.Code(), st.Message(), tc.want)
		}
	}
}

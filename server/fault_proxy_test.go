package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/arbiter-dev/arbiter/featurestore/redistest"
)

// faultProxy is an in-process Toxiproxy TCP proxy between a client and a real redis-server,
// for fault tests: it adds latency, stalls connections, resets them, or goes down.
type faultProxy struct {
	t     testing.TB
	proxy *toxiproxy.Proxy
}

// startFaultProxy starts a proxy on a free loopback port in front of upstream; it stops when
// the test ends.
func startFaultProxy(t testing.TB, upstream string) *faultProxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "redis", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("start toxiproxy in front of %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &faultProxy{t: t, proxy: p}
}

// Addr is the proxy's "127.0.0.1:PORT": point the client here.
func (f *faultProxy) Addr() string { return f.proxy.Listen }

// toxic adds one toxic; attrs is the JSON object of its attributes.
func (f *faultProxy) toxic(name, typ, stream, attrs string) {
	f.t.Helper()
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := f.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		f.t.Fatalf("add toxic %s: %v", name, err)
	}
}

// Latency delays every reply from Redis by d.
func (f *faultProxy) Latency(d time.Duration) {
	f.toxic("latency", "latency", "downstream", fmt.Sprintf(`{"latency":%d,"jitter":0}`, d.Milliseconds()))
}

// Stall lets requests reach Redis but never delivers a reply: the connection hangs, as with
// a black-holed network (Toxiproxy's timeout toxic with no time limit).
func (f *faultProxy) Stall() {
	f.toxic("stall", "timeout", "downstream", `{"timeout":0}`)
}

// ResetPeer answers every request with a TCP reset (RST) on every connection.
func (f *faultProxy) ResetPeer() {
	f.toxic("reset", "reset_peer", "upstream", `{"timeout":0}`)
}

// Down closes the listener and every open connection: Redis is unreachable.
func (f *faultProxy) Down() { f.proxy.Stop() }

// Up reopens the listener on the same port after Down.
func (f *faultProxy) Up() {
	f.t.Helper()
	if err := f.proxy.Start(); err != nil {
		f.t.Fatalf("restart toxiproxy: %v", err)
	}
}

// Retarget points the proxy at another upstream (a new redis-server), keeping its own port.
func (f *faultProxy) Retarget(upstream string) {
	f.t.Helper()
	f.proxy.Stop()
	f.proxy.Upstream = upstream
	if err := f.proxy.Start(); err != nil {
		f.t.Fatalf("restart toxiproxy towards %s: %v", upstream, err)
	}
}

// Heal removes every toxic; connections that a toxic broke stay broken until the client
// redials them.
func (f *faultProxy) Heal() { f.proxy.Toxics.ResetToxics(context.Background()) }

// TestFaultProxy checks the harness itself against a real redis-server: each fault shows up
// at the client as it should, and Heal/Up bring Redis back.
func TestFaultProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	fp := startFaultProxy(t, redistest.Start(t))
	rdb := redis.NewClient(&redis.Options{
		Addr: fp.Addr(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		MaxRetries: -1, ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	ping := func() (time.Duration, error) {
		start := time.Now()
		err := rdb.Ping(ctx).Err()
		return time.Since(start), err
	}
	if _, err := ping(); err != nil {
		t.Fatalf("PING through the proxy = %v, want nil", err)
	}

	fp.Latency(60 * time.Millisecond)
	if took, err := ping(); err != nil || took < 60*time.Millisecond {
		t.Errorf("PING with 60ms latency = %v in %v, want nil in at least 60ms", err, took)
	}
	fp.Heal()

	fp.Stall()
	if took, err := ping(); err == nil || took < 200*time.Millisecond {
		t.Errorf("PING on a stalled connection = %v in %v, want a timeout after 200ms", err, took)
	}
	fp.Heal()

	fp.ResetPeer()
	if _, err := ping(); err == nil {
		t.Errorf("PING with reset_peer = nil, want an error")
	}
	fp.Heal()

	fp.Down()
	if _, err := ping(); err == nil {
		t.Errorf("PING with the proxy down = nil, want an error")
	}
	fp.Up()

	var err error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err = ping(); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("PING after Heal and Up = %v, want nil", err)
	}
}

package guard

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// tlsGuardServer is a TLS + token server with the whole security layer on loopback.
type tlsGuardServer struct {
	addr    string
	roots   *x509.CertPool
	sec     *Guard
	accepts atomic.Int64 // connections the listener under LimitListener accepted
}

// countingListener counts the connections its listener accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startTLSGuardServer starts a server with TLS, a token file (gateway: decide) and tr, serving
// from the guard's LimitListener, or, when limits is false, the configuration from before
// the transport limits: TLS and the authentication interceptor only.
func startTLSGuardServer(t *testing.T, tr Transport, limits bool) *tlsGuardServer {
	t.Helper()
	dir := t.TempDir()
	ca := newSecTestCA(t, "ca")
	c, k := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	certFile, keyFile, tokens := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "clients.yaml")
	now := time.Now()
	writeCertFile(t, certFile, c, now)
	writeCertFile(t, keyFile, k, now)
	writeCertFile(t, tokens, []byte("clients:\n- {name: gateway, token_sha256: "+HashToken(tokGateway)+", roles: [decide]}\n"), now)
	sec, err := New(Config{GRPCAddr: "127.0.0.1:0", AuthTokensFile: tokens, TLSCertFile: certFile, TLSKeyFile: keyFile, Transport: tr},
		sdkmetric.NewMeterProvider(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsGuardServer{addr: lis.Addr().String(), roots: x509.NewCertPool(), sec: sec}
	s.roots.AddCert(ca.cert)
	var srv *grpc.Server
	if limits {
		srv = grpc.NewServer(sec.ServerOptions(nil)...)
		lis = sec.LimitListener(countingListener{lis, &s.accepts})
	} else {
		srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(sec.Certs.ServerConfig())),
			grpc.ChainUnaryInterceptor(sec.Auth.UnaryInterceptor()))
	}
	arbiterv1.RegisterDecisionServiceServer(srv, &identityDecisions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

// h2Conn is a hand-driven HTTP/2 client connection: an attacker that does not follow gRPC.
type h2Conn struct {
	conn   net.Conn
	mu     sync.Mutex // guards fr's writes
	fr     *http2.Framer
	done   chan struct{}
	frames chan http2.Frame // every frame read, when not nil (copies of GOAWAY and RST_STREAM)
}

// dialH2 opens a TLS connection speaking HTTP/2 to addr and reads its frames in a goroutine
// (acknowledging SETTINGS and PINGs), so that the server's replies never stall.
func dialH2(t *testing.T, addr string, roots *x509.CertPool, frames chan http2.Frame) *h2Conn {
	t.Helper()
	var conn net.Conn
	var err error
	if roots != nil {
		conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &h2Conn{conn: conn, done: make(chan struct{}), frames: frames}
	c.fr = http2.NewFramer(conn, conn)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c.write(func(fr *http2.Framer) error { return fr.WriteSettings() })
	go c.read()
	return c
}

func (c *h2Conn) write(f func(*http2.Framer) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f(c.fr)
}

func (c *h2Conn) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.GoAwayFrame:
			c.send(&http2.GoAwayFrame{ErrCode: f.ErrCode, LastStreamID: f.LastStreamID})
		case *http2.RSTStreamFrame:
			c.send(&http2.RSTStreamFrame{ErrCode: f.ErrCode})
		}
	}
}

func (c *h2Conn) send(f http2.Frame) {
	if c.frames != nil {
		select {
		case c.frames <- f:
		default:
		}
	}
}

func (c *h2Conn) close() {
	c.conn.Close()
	<-c.done
}

// decideHeaders is the HPACK block of a Decide call with the given authorization.
func decideHeaders(authorization string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":path", arbiterv1.DecisionService_Decide_FullMethodName},
		{":authority", "127.0.0.1"}, {"content-type", "application/grpc"}, {"te", "trailers"},
		{"authorization", authorization},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	return buf.Bytes()
}

// slowStreams opens streams calls on c, each announcing a 60,000-byte message and sending only
// its first 5 bytes: calls that never complete.
func (c *h2Conn) slowStreams(streams int, authorization string) error {
	hdr := decideHeaders(authorization)
	data := []byte{0, 0, 0, 0xea, 0x60, 0x0a, 0x03, 'e', 'v', 't'} // 60,000 bytes announced
	for i := range streams {
		id := uint32(2*i + 1)
		if err := c.write(func(fr *http2.Framer) error {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true}); err != nil {
				return err
			}
			return fr.WriteData(id, false, data)
		}); err != nil {
			return err
		}
	}
	return nil
}

// heldResources returns the goroutines and the memory in use (heap and goroutine stacks) once
// they have settled: after the count has not moved for 300 ms (or 10 s have passed), and a
// collection.
func heldResources() (goroutines int, heapInuse, stackInuse uint64) {
	last, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(10 * time.Second); stable < 6 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse, ms.StackInuse
}

// held is what an attack round left held on the server (and on the attacker's side, which is
// in the same process and counted against the bounds too).
type held struct {
	goroutines   int
	heap, stacks int64
}

func (h held) String() string {
	return fmt.Sprintf("%d goroutines, %.1f MiB of heap, %.1f MiB of stacks", h.goroutines, float64(h.heap)/(1<<20), float64(h.stacks)/(1<<20))
}

// TestSlowStreamAttackIsBounded drives the attack of issue 19 against a TLS + token server on
// loopback: many connections, each opening many calls that announce a large message and send a
// few bytes of it. Without a token, the calls are refused from their headers (the tap handle)
// and hold nothing; with a token, at most MaxConcurrentStreams per connection are open; the
// same attack against the configuration from before the limits holds a goroutine per call,
// which the bounds below would not allow.
func TestSlowStreamAttackIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("drives 12,000 calls")
	}
	const (
		conns   = 20
		streams = 200 // 4,000 calls a round: under the race detector's 8,128 live goroutines
		perConn = 32  // MaxConcurrentStreams of the server under test
		// Per connection: the server's reader, writer and keepalive goroutines, the
		// attacker's reader, and slack for timers and TLS.
		goroutinesPerConn = 6
		// The memory (heap and stacks) held by an open connection, TLS and HTTP/2 buffers on
		// both ends (measured: about 110 KiB), and by an open call (about 12 KiB).
		memPerConn = 256 << 10
		memPerCall = 24 << 10
	)
	attack := func(t *testing.T, s *tlsGuardServer, authorization string) held {
		g0, h0, s0 := heldResources()
		cs := make([]*h2Conn, conns)
		for i := range cs {
			cs[i] = dialH2(t, s.addr, s.roots, nil)
		}
		for _, c := range cs {
			if err := c.slowStreams(streams, authorization); err != nil {
				t.Fatalf("slow streams: %v", err)
			}
		}
		g1, h1, s1 := heldResources()
		for _, c := range cs {
			c.close()
		}
		return held{g1 - g0, int64(h1) - int64(h0), int64(s1) - int64(s0)}
	}
	within := func(t *testing.T, what string, h held, maxGoroutines int, maxMem int64) {
		t.Logf("%s: %d connections × %d calls hold %v", what, conns, streams, h)
		if h.goroutines > maxGoroutines || h.heap+h.stacks > maxMem {
			t.Errorf("%s: %v held; want at most %d goroutines and %.1f MiB", what, h, maxGoroutines, float64(maxMem)/(1<<20))
		}
	}
	limited := startTLSGuardServer(t, Transport{MaxConcurrentStreams: perConn}, true)
	start := time.Now()

	// Unauthenticated: refused from the headers, nothing held but the connections.
	maxG, maxMem := conns*goroutinesPerConn, int64(conns*memPerConn)
	within(t, "without a token", attack(t, limited, "Bearer arb_not-a-valid-token"), maxG, maxMem)

	// Authenticated: at most perConn calls open on each connection.
	within(t, "with a token", attack(t, limited, "Bearer "+tokGateway),
		conns*(goroutinesPerConn+perConn), int64(conns*(memPerConn+perConn*memPerCall)))

	// The same attack without the limits breaks the first bounds many times over.
	h := attack(t, startTLSGuardServer(t, Transport{}, false), "Bearer arb_not-a-valid-token")
	t.Logf("before the limits, without a token: %d connections × %d calls hold %v", conns, streams, h)
	if h.goroutines < 10*maxG || h.heap+h.stacks < 4*maxMem {
		t.Errorf("before the limits: the attack holds only %v; the test no longer shows what the limits prevent", h)
	}
	t.Logf("three rounds of %d calls in %v", conns*streams, time.Since(start).Round(time.Millisecond))
}

// TestIdleConnectionsCappedAndClosed checks the connection limits: connections that never
// finish their handshake are closed after HandshakeTimeout, no more than MaxConnections are
// served at once, and an HTTP/2 connection with no call open is closed after IdleTimeout.
func TestIdleConnectionsCappedAndClosed(t *testing.T) {
	const maxConns = 8
	s := startTLSGuardServer(t, Transport{MaxConnections: maxConns, HandshakeTimeout: 300 * time.Millisecond, IdleTimeout: 2 * time.Second}, true)

	// 24 TCP connections that send nothing: 8 are accepted, closed after 300 ms, then the next 8.
	raw := make([]net.Conn, 24)
	for i := range raw {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		raw[i] = c
	}
	time.Sleep(150 * time.Millisecond)
	if n := s.accepts.Load(); n != maxConns {
		t.Errorf("after 150 ms, %d of 24 silent connections accepted, want %d (MaxConnections)", n, maxConns)
	}
	var closed sync.WaitGroup
	for _, c := range raw {
		closed.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("a silent connection was still open after 10 s")
			}
			c.Close()
		})
	}
	closed.Wait()
	if n := s.accepts.Load(); n != int64(len(raw)) {
		t.Errorf("%d connections accepted in all, want %d", n, len(raw))
	}

	// A client that made a call and went quiet is sent away after the idle timeout.
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tokGateway)
	if _, err := arbiterv1.NewDecisionServiceClient(conn).Decide(ctx, guardDecideRequest()); err != nil {
		t.Fatalf("Decide() = %v", err)
	}
	if st := conn.GetState(); st != connectivity.Ready {
		t.Fatalf("client state after a call = %v, want READY", st)
	}
	idleCtx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if !conn.WaitForStateChange(idleCtx, connectivity.Ready) {
		t.Errorf("client still READY 10 s after its last call; want the server to close the connection after 2 s idle")
	}
}

// TestPingFloodAndLargeHeaders checks keepalive enforcement (a client pinging more often than
// KeepaliveMinTime is disconnected) and the header list limit.
func TestPingFloodAndLargeHeaders(t *testing.T) {
	s := startTLSGuardServer(t, Transport{MaxHeaderBytes: 4 << 10}, true)

	frames := make(chan http2.Frame, 16)
	c := dialH2(t, s.addr, s.roots, frames)
	defer c.close()
	for i := range 5 {
		if err := c.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{byte(i)}) }); err != nil {
			break // the server may already have closed the connection
		}
	}
	timeout := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case f := <-frames:
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
					t.Errorf("GOAWAY after a ping flood: %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
				}
				got = true
			}
		case <-timeout:
			t.Fatalf("no GOAWAY within 5 s of five pings in a row")
		}
	}

	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := arbiterv1.NewDecisionServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tokGateway)
	if _, err := client.Decide(ctx, guardDecideRequest()); err != nil {
		t.Fatalf("Decide() = %v", err)
	}
	big := metadata.AppendToOutgoingContext(ctx, "x-padding", strings.Repeat("x", 8<<10))
	if _, err := client.Decide(big, guardDecideRequest()); status.Code(err) == codes.OK {
		t.Errorf("Decide(8 KiB of metadata, limit 4 KiB) succeeded, want an error")
	}
}

func TestTransportFlags(t *testing.T) {
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--max-connections", "64", "--max-concurrent-streams", "16", "--max-header-bytes", "8192",
		"--handshake-timeout", "2s", "--idle-timeout", "1m", "--max-connection-age", "1h", "--max-connection-age-grace", "5s",
		"--stream-window-bytes", "131072", "--conn-window-bytes", "4194304", "--keepalive-min-time", "30s"}); err != nil {
		t.Fatal(err)
	}
	want := Transport{MaxConnections: 64, MaxConcurrentStreams: 16, MaxHeaderBytes: 8192, HandshakeTimeout: 2 * time.Second,
		IdleTimeout: time.Minute, MaxConnectionAge: time.Hour, MaxConnectionAgeGrace: 5 * time.Second,
		StreamWindow: 128 << 10, ConnWindow: 4 << 20, KeepaliveMinTime: 30 * time.Second}
	if cfg.Transport != want {
		t.Errorf("flags = %+v, want %+v", cfg.Transport, want)
	}
	// The defaults are what the help shows, and what a zero Transport gets.
	var def Config
	dfs := flag.NewFlagSet("serve", flag.ContinueOnError)
	def.RegisterFlags(dfs)
	if err := dfs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if got := (Transport{}).withDefaults(); def.Transport.withDefaults() != got || got.MaxConnections != DefaultMaxConnections || got.StreamWindow != DefaultStreamWindow {
		t.Errorf("default transport = %+v", got)
	}
	for _, bad := range []Transport{{MaxConnections: -1}, {IdleTimeout: -time.Second}, {StreamWindow: 1000}, {ConnWindow: 1}} {
		if _, err := New(Config{GRPCAddr: "127.0.0.1:0", Transport: bad}, sdkmetric.NewMeterProvider(), nil); err == nil {
			t.Errorf("New(%+v) = nil error, want an error", bad)
		}
	}
}

package guard

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// startPort serves identityDecisions over gRPC and web (answering "web " and the request's
// protocol and TLS version) on one shared loopback port, with the security layer of args.
func startPort(t *testing.T, args ...string) (addr string, sec *Guard) {
	t.Helper()
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg.GRPCAddr = "127.0.0.1:0"
	sec, err := New(cfg, sdkmetric.NewMeterProvider(), nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := sec.SharePort(sec.LimitListener(lis))
	gs := grpc.NewServer(sec.PortServerOptions(nil)...)
	arbiterv1.RegisterDecisionServiceServer(gs, &identityDecisions{})
	web := sec.HTTPServer(sec.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		proto := r.Proto
		if r.TLS != nil {
			proto += " tls"
		}
		_, _ = io.WriteString(w, "web "+proto+" "+string(body))
	})))
	go port.Serve()
	go gs.Serve(port.GRPC)
	go web.Serve(port.HTTP)
	t.Cleanup(func() { gs.Stop(); web.Close(); port.Close() })
	return lis.Addr().String(), sec
}

// TestPortSharesGRPCAndHTTP: on one port, gRPC (HTTP/2) reaches the gRPC server with its
// interceptors and HTTP/1.1 reaches the web handler, with and without TLS; a connection that
// says nothing is closed after the handshake timeout.
func TestPortSharesGRPCAndHTTP(t *testing.T) {
	dir := t.TempDir()
	ca := newSecTestCA(t, "ca")
	c, k := ca.issue(t, "server", 0)
	certFile, keyFile, tokens := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "clients.yaml")
	now := time.Now()
	writeCertFile(t, certFile, c, now)
	writeCertFile(t, keyFile, k, now)
	writeCertFile(t, tokens, []byte("clients:\n- {name: gateway, token_sha256: "+HashToken(tokGateway)+", roles: [decide]}\n"), now)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	for _, tc := range []struct {
		name string
		args []string
		tls  *tls.Config
	}{
		{"plain", []string{"--handshake-timeout", "300ms"}, nil},
		{"tls", []string{"--handshake-timeout", "300ms", "--tls-cert", certFile, "--tls-key", keyFile}, &tls.Config{RootCAs: roots}},
		{"tokens", []string{"--handshake-timeout", "300ms", "--auth-tokens", tokens}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := startPort(t, tc.args...)
			token := ""
			if tc.name == "tokens" {
				token = tokGateway
			}
			// gRPC.
			if tc.tls != nil {
				if cn, err := callTLS(t, addr, tc.tls); err != nil || cn != "server" {
					t.Errorf("gRPC over TLS on the port = %q, %v, want server", cn, err)
				}
			} else {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				ctx := t.Context()
				if token != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
				}
				if _, err := arbiterv1.NewDecisionServiceClient(conn).Decide(ctx, &arbiterv1.DecideRequest{}); err != nil {
					t.Errorf("gRPC Decide on the port = %v", err)
				}
			}
			// HTTP/1.1.
			scheme, client := "http", http.DefaultClient
			want := "web HTTP/1.1 hello"
			if tc.tls != nil {
				scheme = "https"
				client = &http.Client{Transport: &http.Transport{TLSClientConfig: tc.tls, ForceAttemptHTTP2: true}}
				want = "web HTTP/1.1 tls hello"
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, scheme+"://"+addr+"/arbiter.v1.DecisionService/Decide", strings.NewReader("hello"))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("HTTP POST on the port: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != want {
				t.Errorf("HTTP POST on the port = %d %q, want %q", resp.StatusCode, body, want)
			}
			// A silent connection is closed after the handshake timeout.
			silent, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			if _, err := silent.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
				t.Errorf("read on a silent connection = %v after %v, want EOF (closed by the server)", err, time.Since(start))
			}
		})
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }

// TestPortHTTPRefusals: the web half refuses a call without a valid token before reading its
// body, in the caller's protocol, and cuts a body over the cap.
func TestPortHTTPRefusals(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "clients.yaml")
	writeCertFile(t, tokens, []byte("clients:\n- {name: gateway, token_sha256: "+HashToken(tokGateway)+", roles: [decide]}\n"), time.Now())
	addr, _ := startPort(t, "--auth-tokens", tokens, "--max-recv-bytes", "1000")
	post := func(ct, token, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/arbiter.v1.DecisionService/Decide", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post("application/json", "", "{}")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"code":"unauthenticated"`) {
		t.Errorf("Connect call without a token = %d %s, want 401 unauthenticated", resp.StatusCode, body)
	}
	resp = post("application/grpc-web+proto", "arb_wrong", "")
	if resp.Header.Get("Grpc-Status") != "16" {
		t.Errorf("gRPC-Web call with a bad token: grpc-status %q, want 16", resp.Header.Get("Grpc-Status"))
	}
	resp = post("application/json", tokGateway, strings.Repeat("x", 1000*HTTPBodyFactor+1))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("call with a body over %d bytes = %d, want 413 from the cut body", 1000*HTTPBodyFactor, resp.StatusCode)
	}
}

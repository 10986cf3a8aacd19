package guard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

func TestNewSecurityLoopbackRule(t *testing.T) {
	mp := sdkmetric.NewMeterProvider()
	if _, err := New(Config{GRPCAddr: ":9090"}, mp, nil); !errors.Is(err, ErrInsecureBind) {
		t.Errorf("New(:9090, no auth) = %v, want ErrInsecureBind", err)
	}
	s, err := New(Config{GRPCAddr: "127.0.0.1:9090"}, mp, nil)
	if err != nil || s.Auth != nil || s.Certs != nil || s.Notice == "" {
		t.Errorf("New(loopback, no auth) = %+v, %v, want no auth, no TLS and a notice", s, err)
	}
	if _, err := New(Config{GRPCAddr: "127.0.0.1:9090", TLSCertFile: "/nonexistent"}, mp, nil); err == nil {
		t.Errorf("New(missing certificate) = nil error, want error")
	}
	if _, err := New(Config{GRPCAddr: ":9090", AuthTokensFile: "/nonexistent"}, mp, nil); err == nil {
		t.Errorf("New(missing token file) = nil error, want error")
	}
}

// TestSecurityServerOptions wires the whole layer from flags, as arbiter serve does, and
// checks it on a real TLS connection: tokens, rate limit, card guard and token file reload.
func TestSecurityServerOptions(t *testing.T) {
	dir := t.TempDir()
	ca := newSecTestCA(t, "ca")
	c, k := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	certFile, keyFile, tokens := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "clients.yaml")
	now := time.Now()
	writeCertFile(t, certFile, c, now)
	writeCertFile(t, keyFile, k, now)
	writeCertFile(t, tokens, []byte("clients:\n- {name: gateway, token_sha256: "+HashToken(tokGateway)+", roles: [decide]}\n"), now)

	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--auth-tokens", tokens, "--tls-cert", certFile, "--tls-key", keyFile, "--rate-limit", "0.001", "--rate-burst", "2"}); err != nil {
		t.Fatal(err)
	}
	cfg.GRPCAddr = "0.0.0.0:0"
	sec, err := New(cfg, sdkmetric.NewMeterProvider(), nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(sec.ServerOptions(nil)...)
	arbiterv1.RegisterDecisionServiceServer(srv, &identityDecisions{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := arbiterv1.NewDecisionServiceClient(conn)
	ctx := context.Background()
	gw := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokGateway)
	pan := guardDecideRequest()
	pan.Event.Attributes["note"] = "4111 1111 1111 1111"

	steps := []struct {
		name string
		ctx  context.Context
		req  *arbiterv1.DecideRequest
		want codes.Code
	}{
		{"no token", ctx, guardDecideRequest(), codes.Unauthenticated},
		{"token", gw, guardDecideRequest(), codes.OK},
		{"card number", gw, pan, codes.InvalidArgument},
		{"over the burst of 2", gw, guardDecideRequest(), codes.ResourceExhausted},
	}
	for _, s := range steps {
		if _, err := client.Decide(s.ctx, s.req); status.Code(err) != s.want {
			t.Errorf("%s: Decide() = %v, want %v", s.name, err, s.want)
		}
	}

	// Revoke the gateway and reload: refused from the next call.
	if err := os.WriteFile(tokens, []byte("clients:\n- {name: ops, token_sha256: "+HashToken(tokAdmin)+", roles: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sec.ReloadAuth(); err != nil {
		t.Fatalf("ReloadAuth() = %v", err)
	}
	if _, err := client.Decide(gw, guardDecideRequest()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Decide(revoked token) = %v, want Unauthenticated", err)
	}
}

package guard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// secTestCA is a certificate authority made in the test.
type secTestCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newSecTestCA(t *testing.T, name string) *secTestCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &secTestCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key signed by the CA, for 127.0.0.1.
func (ca *secTestCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeCertFile writes data and moves the modification time forward, so that a rewrite within
// the file system's time resolution is still seen as a change.
func writeCertFile(t *testing.T, path string, data []byte, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// serveTLS serves identityDecisions over real TLS on a loopback port and returns its address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	arbiterv1.RegisterDecisionServiceServer(srv, &identityDecisions{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// callTLS makes one Decide call over a new connection and returns the server certificate's
// common name.
func callTLS(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := arbiterv1.NewDecisionServiceClient(conn).Decide(ctx, &arbiterv1.DecideRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("peer auth info = %T, want TLS with a certificate", p.AuthInfo)
	}
	return info.State.PeerCertificates[0].Subject.CommonName, nil
}

func TestCertReloaderTLSAndRotation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newSecTestCA(t, "test CA")
	t0 := time.Now().Add(-time.Minute)
	c1, k1 := ca.issue(t, "server-v1", x509.ExtKeyUsageServerAuth)
	writeCertFile(t, certFile, c1, t0)
	writeCertFile(t, keyFile, k1, t0)

	r, err := NewCertReloader(certFile, keyFile, "")
	if err != nil {
		t.Fatalf("NewCertReloader() = %v", err)
	}
	addr := serveTLS(t, r.ServerConfig())
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	clientCfg := &tls.Config{RootCAs: roots}

	if cn, err := callTLS(t, addr, clientCfg); err != nil || cn != "server-v1" {
		t.Fatalf("Decide over TLS = %q, %v, want server-v1", cn, err)
	}

	// Rotate: new pair on disk; the next connection gets it without a restart.
	c2, k2 := ca.issue(t, "server-v2", x509.ExtKeyUsageServerAuth)
	writeCertFile(t, certFile, c2, t0.Add(time.Second))
	writeCertFile(t, keyFile, k2, t0.Add(time.Second))
	if cn, err := callTLS(t, addr, clientCfg); err != nil || cn != "server-v2" {
		t.Fatalf("Decide after rotation = %q, %v, want server-v2", cn, err)
	}

	// A half-done rotation (new certificate, old key) keeps serving the last good pair.
	c3, _ := ca.issue(t, "server-v3", x509.ExtKeyUsageServerAuth)
	writeCertFile(t, certFile, c3, t0.Add(2*time.Second))
	if cn, err := callTLS(t, addr, clientCfg); err != nil || cn != "server-v2" {
		t.Fatalf("Decide after a broken rotation = %q, %v, want server-v2 still served", cn, err)
	}
	if r.LastError() == nil {
		t.Errorf("LastError() after a broken rotation = nil, want the load error")
	}
	// Once the key arrives, the rotation completes.
	c4, k4 := ca.issue(t, "server-v4", x509.ExtKeyUsageServerAuth)
	writeCertFile(t, certFile, c4, t0.Add(3*time.Second))
	writeCertFile(t, keyFile, k4, t0.Add(3*time.Second))
	if cn, err := callTLS(t, addr, clientCfg); err != nil || cn != "server-v4" {
		t.Fatalf("Decide after completed rotation = %q, %v, want server-v4", cn, err)
	}
	if r.LastError() != nil || r.Certificate().Subject.CommonName != "server-v4" {
		t.Errorf("after rotation LastError() = %v, Certificate() = %s, want nil, server-v4", r.LastError(), r.Certificate().Subject.CommonName)
	}

	// A client that does not trust the CA cannot connect.
	untrusted := &tls.Config{RootCAs: x509.NewCertPool()}
	if _, err := callTLS(t, addr, untrusted); err == nil {
		t.Errorf("Decide with a client that does not trust the CA = nil error, want a handshake failure")
	}
}

func TestCertReloaderMutualTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "clients.pem")
	serverCA := newSecTestCA(t, "server CA")
	clientCA := newSecTestCA(t, "client CA")
	otherCA := newSecTestCA(t, "other CA")
	t0 := time.Now().Add(-time.Minute)
	c, k := serverCA.issue(t, "server", x509.ExtKeyUsageServerAuth)
	writeCertFile(t, certFile, c, t0)
	writeCertFile(t, keyFile, k, t0)
	writeCertFile(t, caFile, clientCA.pem, t0)

	r, err := NewCertReloader(certFile, keyFile, caFile)
	if err != nil {
		t.Fatalf("NewCertReloader() = %v", err)
	}
	addr := serveTLS(t, r.ServerConfig())
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	clientCert := func(ca *secTestCA) []tls.Certificate {
		cp, kp := ca.issue(t, "gateway", x509.ExtKeyUsageClientAuth)
		pair, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{pair}
	}

	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{
		{"client certificate from the client CA", clientCert(clientCA), true},
		{"no client certificate", nil, false},
		{"client certificate from another CA", clientCert(otherCA), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := callTLS(t, addr, &tls.Config{RootCAs: roots, Certificates: tt.certs})
			if (err == nil) != tt.wantOK {
				t.Errorf("Decide over mTLS = %v, want ok %v", err, tt.wantOK)
			}
		})
	}

	// Rotating the client CA bundle to the other CA lets its clients in, and locks the old out.
	writeCertFile(t, caFile, otherCA.pem, t0.Add(time.Second))
	if _, err := callTLS(t, addr, &tls.Config{RootCAs: roots, Certificates: clientCert(otherCA)}); err != nil {
		t.Errorf("Decide with the new client CA = %v, want nil", err)
	}
	if _, err := callTLS(t, addr, &tls.Config{RootCAs: roots, Certificates: clientCert(clientCA)}); err == nil {
		t.Errorf("Decide with the retired client CA = nil error, want refusal")
	}
}

func TestNewCertReloaderErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newSecTestCA(t, "ca")
	c, k := ca.issue(t, "s", x509.ExtKeyUsageServerAuth)
	certFile, keyFile, junk := filepath.Join(dir, "c"), filepath.Join(dir, "k"), filepath.Join(dir, "junk")
	now := time.Now()
	writeCertFile(t, certFile, c, now)
	writeCertFile(t, keyFile, k, now)
	writeCertFile(t, junk, []byte("not pem"), now)
	tests := []struct {
		name                string
		cert, key, clientCA string
	}{
		{"no files", "", "", ""},
		{"missing cert", filepath.Join(dir, "nope"), keyFile, ""},
		{"junk key", certFile, junk, ""},
		{"junk client CA", certFile, keyFile, junk},
		{"missing client CA", certFile, keyFile, filepath.Join(dir, "nope")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCertReloader(tt.cert, tt.key, tt.clientCA); err == nil {
				t.Errorf("NewCertReloader(%q, %q, %q) = nil error, want error", tt.cert, tt.key, tt.clientCA)
			}
		})
	}
}

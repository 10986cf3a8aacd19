package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key into dir and returns
// their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "arbiter test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// TestServeTLSSharedPort: with --tls-cert, one port serves gRPC over TLS (h2) and Connect JSON
// over HTTPS (HTTP/1.1, chosen by ALPN), and the gRPC side still sees the TLS peer.
func TestServeTLSSharedPort(t *testing.T) {
	certFile, keyFile, roots := selfSigned(t, t.TempDir())
	grpcAddr, _, _, _ := startServe(t, "--tls-cert", certFile, "--tls-key", keyFile)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = arbiterv1.NewDecisionServiceClient(conn).GetDecision(t.Context(), &arbiterv1.GetDecisionRequest{DecisionId: "no-such-decision"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("gRPC over TLS GetDecision of an unknown id = %v, want NotFound", err)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	resp, err := client.Post("https://"+grpcAddr+"/arbiter.v1.DecisionService/Decide", "application/json", strings.NewReader(sampleEvent))
	if err != nil {
		t.Fatalf("Connect over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out["action"] == nil {
		t.Errorf("Connect over HTTPS Decide = %d %v %v (%s), want 200 with an action", resp.StatusCode, out, err, resp.Proto)
	}
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("Connect over HTTPS negotiated %s, want HTTP/1.1 (ALPN)", resp.Proto)
	}
}

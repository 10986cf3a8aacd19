package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// testPKI writes a CA (ca.pem), a server certificate for the name arbiter.test only
// (server.pem, server.key) and a client certificate (client.pem, client.key) into dir.
func testPKI(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	for i, leaf := range []struct {
		name  string
		usage x509.ExtKeyUsage
		dns   []string
	}{{"server", x509.ExtKeyUsageServerAuth, []string{"arbiter.test"}}, {"client", x509.ExtKeyUsageClientAuth, nil}} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: leaf.name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: leaf.dns,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{leaf.usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, leaf.name+".pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, leaf.name+".key"), "EC PRIVATE KEY", keyDER)
	}
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSFake serves a fakeArbiter over mutual TLS with dir's server certificate, requiring
// a client certificate signed by dir's CA.
func startTLSFake(t *testing.T, dir string) (*fakeArbiter, string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return startFake(t, grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})))
}

// TestClientTLS drives a server that requires mutual TLS with the load tester, the feature
// import, arbiter decide and a policy command, and checks that each client refuses to go on without the CA,
// the server name or its certificate.
func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	testPKI(t, dir)
	f, addr := startTLSFake(t, dir)
	tlsArgs := []string{"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-server-name", "arbiter.test",
		"--client-cert", filepath.Join(dir, "client.pem"), "--client-key", filepath.Join(dir, "client.key")}
	var stdout, stderr bytes.Buffer

	// The load tester, seeding through PutFeatures.
	args := append([]string{"loadtest", "--addr", addr, "--rate", "200", "--duration", "300ms", "--warmup", "0s",
		"--customers", "10", "--out", ""}, tlsArgs...)
	if err := run(t.Context(), args, noEnv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter loadtest over mutual TLS: %v\nstderr:\n%s", err, stderr.String())
	}
	if len(f.puts) != 10 || !strings.Contains(stdout.String(), "action mix: MESSAGE 60 (100.0%)") {
		t.Errorf("over mutual TLS: seeded %d customers, stdout:\n%s\nwant 10 and 60 MESSAGE answers", len(f.puts), stdout.String())
	}

	// The feature import, through PutFeatures.
	lines := filepath.Join(dir, "customers.jsonl")
	if err := os.WriteFile(lines, []byte(`{"customer_id": "tls-1", "features": {"segment": "retail"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"features", "import", "--file", lines, "--addr", addr}, tlsArgs...)
	if err := run(t.Context(), args, noEnv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter features import over mutual TLS: %v\nstderr:\n%s", err, stderr.String())
	}
	if f.puts["tls-1"] == nil {
		t.Errorf("features import over mutual TLS did not reach the server")
	}

	// arbiter decide, with the variables instead of the flags.
	event := filepath.Join(dir, "event.json")
	if err := os.WriteFile(event, []byte(`{"event": {"id": "e1", "type": "EVENT_TYPE_INVOICE_OVERDUE"}, "customer": {"id": "c1"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ARBITER_TLS_CA": filepath.Join(dir, "ca.pem"), "ARBITER_TLS_SERVER_NAME": "arbiter.test",
		"ARBITER_CLIENT_CERT": filepath.Join(dir, "client.pem"), "ARBITER_CLIENT_KEY": filepath.Join(dir, "client.key")}
	stdout.Reset()
	if err := run(t.Context(), []string{"decide", "--addr", addr, "--file", event}, func(k string) string { return env[k] }, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter decide over mutual TLS (ARBITER_* variables): %v", err)
	}
	if !strings.Contains(stdout.String(), "MESSAGE") {
		t.Errorf("arbiter decide over mutual TLS printed:\n%s\nwant the MESSAGE answer", stdout.String())
	}

	// A policy command: the fake has no PolicyService, so an Unimplemented answer means the
	// handshake went through.
	args = append([]string{"policy", "list", "--addr", addr}, tlsArgs...)
	if err := run(t.Context(), args, noEnv, nil, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "Unimplemented") {
		t.Errorf("arbiter policy list over mutual TLS = %v, want the fake's Unimplemented answer", err)
	}

	// Each missing part fails the call.
	for _, tc := range []struct {
		name string
		drop string // the flag left out
		want string // in the error
	}{{"no CA: the system's roots do not know the server", "--tls-ca", "unknown authority"},
		{"no server name: the certificate is not for 127.0.0.1", "--tls-server-name", "127.0.0.1"},
		// With TLS 1.3 the server refuses after the client's handshake is done: its alert
		// ("certificate required") can lose the race with the client's first write.
		{"no client certificate: the server requires one", "--client-cert", "Unavailable"}} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"decide", "--addr", addr, "--file", event, "--timeout", "2s"}
			for i := 0; i < len(tlsArgs); i += 2 {
				if tlsArgs[i] == tc.drop || (tc.drop == "--client-cert" && tlsArgs[i] == "--client-key") {
					continue
				}
				args = append(args, tlsArgs[i], tlsArgs[i+1])
			}
			if tc.drop == "--tls-ca" || tc.drop == "--tls-server-name" {
				args = append(args, "--tls") // still TLS, only the part left out is missing
			}
			if err := run(t.Context(), args, noEnv, nil, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("arbiter decide %q = %v, want a failed handshake (%q)", args[5:], err, tc.want)
			}
		})
	}
}

func TestClientTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	testPKI(t, dir)
	for _, tc := range []struct {
		name string
		c    clientTLS
		want string
	}{
		{"certificate without key", clientTLS{cert: filepath.Join(dir, "client.pem")}, "go together"},
		{"key without certificate", clientTLS{key: filepath.Join(dir, "client.key")}, "go together"},
		{"missing CA file", clientTLS{ca: filepath.Join(dir, "nope.pem")}, "--tls-ca"},
		{"CA file without a certificate", clientTLS{ca: filepath.Join(dir, "client.key")}, "no PEM certificate"},
		{"certificate with another's key", clientTLS{cert: filepath.Join(dir, "client.pem"), key: filepath.Join(dir, "server.key")}, "--client-cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.config(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("config() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if cfg, err := (&clientTLS{}).config(); cfg != nil || err != nil {
		t.Errorf("config() with no flags = %v, %v; want nil (plaintext)", cfg, err)
	}
	// ARBITER_TLS takes what the flag takes.
	for v, want := range map[string]bool{"true": true, "1": true, "false": false, "": false, "yes": false} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c := clientTLSFlags(fs, func(k string) string { return map[string]string{"ARBITER_TLS": v}[k] })
		if err := fs.Parse(nil); err != nil || c.on != want {
			t.Errorf("ARBITER_TLS=%q: --tls %v (%v), want %v", v, c.on, err, want)
		}
	}
}

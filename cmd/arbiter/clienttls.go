package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// clientTLS are the TLS flags of the commands that call a server (decide, loadtest, features
// import, the policy governance commands), for a server run with --tls-cert and, for mutual
// TLS, --tls-client-ca. Plaintext unless one of them is set. Each flag's default comes from
// its ARBITER_* variable. The client certificate flags are not named --tls-cert and --tls-key,
// whose variables configure a server's own certificate.
type clientTLS struct {
	on         bool
	ca         string
	serverName string
	cert, key  string
}

func clientTLSFlags(fs *flag.FlagSet, env func(string) string) *clientTLS {
	c := &clientTLS{}
	on, _ := strconv.ParseBool(env("ARBITER_TLS")) // as the flag parses it: true, 1, t...
	fs.BoolVar(&c.on, "tls", on, "use TLS, verifying the server with the system's roots (ARBITER_TLS)")
	fs.StringVar(&c.ca, "tls-ca", env("ARBITER_TLS_CA"), "PEM bundle of the CAs to verify the server with, instead of the system's roots; implies --tls (ARBITER_TLS_CA)")
	fs.StringVar(&c.serverName, "tls-server-name", env("ARBITER_TLS_SERVER_NAME"), "name the server's certificate must hold (default: the host of --addr); implies --tls (ARBITER_TLS_SERVER_NAME)")
	fs.StringVar(&c.cert, "client-cert", env("ARBITER_CLIENT_CERT"), "PEM client certificate chain for mutual TLS, with --client-key; implies --tls (ARBITER_CLIENT_CERT)")
	fs.StringVar(&c.key, "client-key", env("ARBITER_CLIENT_KEY"), "PEM private key of --client-cert (ARBITER_CLIENT_KEY)")
	return c
}

// config returns the TLS configuration the flags ask for, or nil for plaintext.
func (c *clientTLS) config() (*tls.Config, error) {
	if !c.on && c.ca == "" && c.serverName == "" && c.cert == "" && c.key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName}
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", c.ca)
		}
	}
	if (c.cert == "") != (c.key == "") {
		return nil, errors.New("--client-cert and --client-key go together")
	}
	if c.cert != "" {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("--client-cert, --client-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// credentials returns the transport credentials the flags ask for: TLS, or plaintext.
func (c *clientTLS) credentials() (credentials.TransportCredentials, error) {
	cfg, err := c.config()
	switch {
	case err != nil:
		return nil, err
	case cfg == nil:
		return insecure.NewCredentials(), nil
	}
	return credentials.NewTLS(cfg), nil
}

// dial opens a client connection to addr with c's transport credentials, and the context of
// one call on it: ctx with the deadline timeout and, when token is set, the bearer token. The
// caller closes the connection and cancels the context.
func (c *clientTLS) dial(ctx context.Context, addr, token string, timeout time.Duration) (*grpc.ClientConn, context.Context, context.CancelFunc, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return conn, ctx, cancel, nil
}

package guard

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertReloader serves a TLS certificate and key, and optionally a client CA bundle for mutual
// TLS, from files that are reread without a restart: every TLS handshake compares the files'
// modification times and sizes with the ones last loaded and reloads on a change. A change
// that does not load (a half-written file, a key that does not match its certificate) is
// logged and the last good certificate keeps being served; the reload is tried again on the
// next handshake. Connections already open keep the certificate they started with. It is safe
// for concurrent use.
type CertReloader struct {
	certFile, keyFile, caFile string
	logger                    *slog.Logger

	mu      sync.Mutex
	stamps  [3]fileStamp // cert, key, CA
	config  *tls.Config  // built from the last good files
	lastErr error
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	mod  time.Time
	size int64
}

// TLSOption configures a CertReloader.
type TLSOption func(*CertReloader)

// WithTLSLogger sets the logger for failed reloads (default: discard).
func WithTLSLogger(l *slog.Logger) TLSOption {
	return func(r *CertReloader) { r.logger = l }
}

// NewCertReloader loads a PEM certificate chain and private key, and a PEM bundle of client
// CA certificates when clientCAFile is not empty. With a client CA every client must present a
// certificate signed by one of those CAs (tls.RequireAndVerifyClientCert). It fails when the
// files do not load now.
func NewCertReloader(certFile, keyFile, clientCAFile string, opts ...TLSOption) (*CertReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both a certificate and a key file are needed")
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, caFile: clientCAFile, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(r)
	}
	stamps, err := r.stat()
	if err != nil {
		return nil, err
	}
	cfg, err := r.load()
	if err != nil {
		return nil, err
	}
	r.stamps, r.config = stamps, cfg
	return r, nil
}

// ServerConfig returns the *tls.Config to serve with, for example as
// grpc.Creds(credentials.NewTLS(r.ServerConfig())). Its GetConfigForClient hands each
// handshake the current certificate and client CAs. TLS 1.2 is the minimum; ALPN offers h2,
// which gRPC requires.
func (r *CertReloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current(), nil
		},
	}
}

// LastError returns the error of the last failed reload, or nil when the files being served
// are the ones on disk.
func (r *CertReloader) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Certificate returns the leaf certificate being served.
func (r *CertReloader) Certificate() *x509.Certificate {
	return r.current().Certificates[0].Leaf
}

// current returns the config for the files on disk, reloading them when they changed.
func (r *CertReloader) current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps, err := r.stat()
	if err == nil && stamps == r.stamps {
		return r.config
	}
	if err == nil {
		var cfg *tls.Config
		if cfg, err = r.load(); err == nil {
			r.stamps, r.config, r.lastErr = stamps, cfg, nil
			r.logger.Info("tls: certificates reloaded", slog.String("cert_file", r.certFile))
			return r.config
		}
	}
	if r.lastErr == nil || r.lastErr.Error() != err.Error() {
		r.logger.Error("tls: reload failed, serving the previous certificate", slog.String("error", err.Error()))
	}
	r.lastErr = err
	return r.config
}

func (r *CertReloader) stat() ([3]fileStamp, error) {
	var s [3]fileStamp
	for i, f := range [3]string{r.certFile, r.keyFile, r.caFile} {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return s, fmt.Errorf("tls: %w", err)
		}
		s[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return s, nil
}

func (r *CertReloader) load() (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load key pair %s: %w", r.certFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
		Certificates: []tls.Certificate{pair},
	}
	if r.caFile != "" {
		pem, err := os.ReadFile(r.caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA file %s holds no PEM certificate", r.caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

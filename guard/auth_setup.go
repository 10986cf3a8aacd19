package guard

import (
	"flag"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Config is the security part of the serve command's configuration.
type Config struct {
	// GRPCAddr is the gRPC listen address, checked against the loopback rule.
	GRPCAddr string
	// AdminAddr is the HTTP admin listen address, checked against the same rule (see
	// CheckAdminBind); empty: not checked. Pprof says whether it serves profiles.
	AdminAddr string
	Pprof     bool
	// AuthTokensFile is the client token file (see AuthConfig); empty means no authentication,
	// which is allowed on loopback addresses only unless Insecure is set.
	AuthTokensFile string
	// Insecure allows a non-loopback GRPCAddr without authentication.
	Insecure bool
	// TLSCertFile and TLSKeyFile turn TLS on; TLSClientCAFile adds mutual TLS.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// RateLimit is the default per-client rate limit; PerSecond 0 means none.
	RateLimit RateLimit
	// MaxRecvMsgSize is the largest request message in bytes (0: DefaultMaxRecvMsgSize).
	MaxRecvMsgSize int
	// Transport holds the connection and HTTP/2 limits of the gRPC port.
	Transport Transport
}

// RegisterFlags defines the security flags of "arbiter serve" on fs, writing into c:
// --auth-tokens, --insecure, --tls-cert, --tls-key, --tls-client-ca, --rate-limit,
// --rate-burst, --max-recv-bytes and the transport limits (--max-connections,
// --max-concurrent-streams, --max-header-bytes, --handshake-timeout, --idle-timeout,
// --max-connection-age, --max-connection-age-grace, --stream-window-bytes,
// --conn-window-bytes, --keepalive-min-time; see Transport). GRPCAddr is left to the caller's
// --grpc-addr.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.AuthTokensFile, "auth-tokens", c.AuthTokensFile, "client token file (YAML or JSON: name, token_sha256, roles); empty: no authentication, loopback only")
	fs.BoolVar(&c.Insecure, "insecure", c.Insecure, "allow listening on a non-loopback address without authentication")
	fs.StringVar(&c.TLSCertFile, "tls-cert", c.TLSCertFile, "PEM certificate chain: serve TLS (reloaded when the file changes)")
	fs.StringVar(&c.TLSKeyFile, "tls-key", c.TLSKeyFile, "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSClientCAFile, "tls-client-ca", c.TLSClientCAFile, "PEM client CA bundle: require client certificates (mutual TLS)")
	fs.Float64Var(&c.RateLimit.PerSecond, "rate-limit", c.RateLimit.PerSecond, "default requests per second per client (0: no limit); a client's rate_limit in the token file replaces it")
	fs.IntVar(&c.RateLimit.Burst, "rate-burst", c.RateLimit.Burst, "default burst per client (0: the rate, at least 1)")
	fs.IntVar(&c.MaxRecvMsgSize, "max-recv-bytes", c.MaxRecvMsgSize, "largest request message in bytes (0: 65536)")
	c.Transport.registerFlags(fs)
}

// Guard is the built security layer of a server: authentication (nil when off), rate
// limits, TLS (nil when off) and the start-up notice saying what is on.
type Guard struct {
	Auth        *Authenticator
	RateLimiter *RateLimiter
	Certs       *CertReloader
	// Notice is the start-up log line of the loopback rule (see CheckBindSafety).
	Notice string
	// AdminNotice is the start-up log line of the loopback rule for the admin address (see
	// CheckAdminBind); empty without one.
	AdminNotice string
	// Decoder turns requests that do not decode into INVALID_ARGUMENT naming the field.
	Decoder *RequestDecoder

	cfg Config
}

// New checks cfg (the transport limits, the loopback rule on the gRPC and admin addresses, the
// token file, the certificates) and builds the security layer; mp provides its counters,
// logger gets denials and failed certificate reloads. It fails on a negative limit, a
// non-loopback address without authentication or --insecure (profiles on a non-loopback admin
// address need authentication), an invalid token file, or certificates that do not load.
func New(cfg Config, mp metric.MeterProvider, logger *slog.Logger) (*Guard, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Guard{cfg: cfg, Decoder: NewRequestDecoder()}
	if err := cfg.Transport.check(); err != nil {
		return nil, err
	}
	notice, err := CheckBindSafety(cfg.GRPCAddr, cfg.AuthTokensFile != "", cfg.Insecure)
	if err != nil {
		return nil, err
	}
	s.Notice = notice
	if cfg.AdminAddr != "" {
		if s.AdminNotice, err = CheckAdminBind(cfg.AdminAddr, cfg.AuthTokensFile != "", cfg.Insecure, cfg.Pprof); err != nil {
			return nil, err
		}
	}
	if cfg.AuthTokensFile != "" {
		ac, err := LoadAuthConfig(cfg.AuthTokensFile)
		if err != nil {
			return nil, err
		}
		if s.Auth, err = NewAuthenticator(ac, mp, WithAuthLogger(logger)); err != nil {
			return nil, err
		}
	}
	if s.RateLimiter, err = NewRateLimiter(cfg.RateLimit, mp); err != nil {
		return nil, err
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" || cfg.TLSClientCAFile != "" {
		if s.Certs, err = NewCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile, WithTLSLogger(logger)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ReloadAuth rereads the token file (for SIGHUP): added clients get in, removed ones are
// refused from the next call. With authentication off it does nothing.
func (s *Guard) ReloadAuth() error {
	if s.Auth == nil {
		return nil
	}
	ac, err := LoadAuthConfig(s.cfg.AuthTokensFile)
	if err != nil {
		return fmt.Errorf("reload auth tokens: %w", err)
	}
	return s.Auth.SetConfig(ac)
}

// ServerOptions returns the gRPC server options of the security layer, to pass to
// WithGRPCOptions before any other interceptor (and after any transport option they should
// replace): TLS credentials when configured, the transport limits (see Transport; serve from
// LimitListener too), authentication of each call from its headers before its message is read
// (Authenticator.TapHandle), the message size limit, the request codec (see RequestDecoder),
// and the interceptors in this order: authentication, requests that did not decode, rate
// limit, card-number guard, then the timestamp window (with the clock now, time.Now when nil).
// Nothing else looks at a request before they have passed it.
func (s *Guard) ServerOptions(now func() time.Time) []grpc.ServerOption {
	opts := s.serverOptions(now)
	if s.Certs != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.Certs.ServerConfig())))
	}
	return opts
}

// PortServerOptions returns ServerOptions for a gRPC server that serves the GRPC half of a
// Port (see SharePort): the Port terminates TLS itself, so the credentials only report each
// connection's TLS state.
func (s *Guard) PortServerOptions(now func() time.Time) []grpc.ServerOption {
	opts := s.serverOptions(now)
	if s.Certs != nil {
		opts = append(opts, grpc.Creds(portCreds{}))
	}
	return opts
}

func (s *Guard) serverOptions(now func() time.Time) []grpc.ServerOption {
	unary := make([]grpc.UnaryServerInterceptor, 0, 5)
	stream := make([]grpc.StreamServerInterceptor, 0, 4)
	opts := s.cfg.Transport.serverOptions()
	if s.Auth != nil {
		opts = append(opts, grpc.InTapHandle(s.Auth.TapHandle()))
		unary = append(unary, s.Auth.UnaryInterceptor())
		stream = append(stream, s.Auth.StreamInterceptor())
	}
	unary = append(unary, s.Decoder.UnaryInterceptor(), s.RateLimiter.UnaryInterceptor(), CardGuardUnaryInterceptor(), RequestTimesUnaryInterceptor(now))
	stream = append(stream, s.Decoder.StreamInterceptor(), s.RateLimiter.StreamInterceptor(), CardGuardStreamInterceptor())
	opts = append(opts,
		MaxRecvMsgSize(s.cfg.MaxRecvMsgSize),
		grpc.ForceServerCodecV2(s.Decoder.Codec()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)
	return opts
}

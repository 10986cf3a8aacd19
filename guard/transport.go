package guard

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"
)

// Transport holds the connection and HTTP/2 limits of the gRPC port: what one peer can hold
// open before it has authenticated, and what an authenticated one can hold. A zero field takes
// its default (the Default constants). docs/security.md gives the threat each one answers.
type Transport struct {
	// MaxConnections is the most connections open at once; further ones wait in the kernel's
	// accept queue until one closes (--max-connections).
	MaxConnections int
	// MaxConcurrentStreams is the most calls one connection may have open at once, announced
	// in HTTP/2 SETTINGS; more are refused (REFUSED_STREAM) before a goroutine starts
	// (--max-concurrent-streams).
	MaxConcurrentStreams uint32
	// MaxHeaderBytes is the largest header list (metadata) of a call, uncompressed
	// (--max-header-bytes).
	MaxHeaderBytes uint32
	// HandshakeTimeout bounds the TLS and HTTP/2 handshake of a new connection; one that has
	// not finished it by then is closed (--handshake-timeout).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that has had no call open for this long (GOAWAY; a
	// client reconnects when it next calls) (--idle-timeout).
	IdleTimeout time.Duration
	// MaxConnectionAge closes a connection this long after it opened (±10%, so that clients
	// spread over replicas again); calls in flight get MaxConnectionAgeGrace to finish
	// (--max-connection-age, --max-connection-age-grace).
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// StreamWindow and ConnWindow are the HTTP/2 receive windows, in bytes, of a call and of a
	// connection: how much a client may send that the server has not read. At least 65536
	// (--stream-window-bytes, --conn-window-bytes).
	StreamWindow, ConnWindow int32
	// KeepaliveMinTime is the shortest interval at which a client may ping; one that pings
	// more often is disconnected (GOAWAY "too_many_pings") (--keepalive-min-time).
	KeepaliveMinTime time.Duration
}

// Default transport limits; see Transport.
const (
	DefaultMaxConnections        = 1024
	DefaultMaxConcurrentStreams  = 256
	DefaultMaxHeaderBytes        = 16 << 10
	DefaultHandshakeTimeout      = 5 * time.Second
	DefaultIdleTimeout           = 5 * time.Minute
	DefaultMaxConnectionAge      = 30 * time.Minute
	DefaultMaxConnectionAgeGrace = 30 * time.Second
	DefaultStreamWindow          = 64 << 10
	DefaultConnWindow            = 1 << 20
	DefaultKeepaliveMinTime      = 10 * time.Second

	// keepaliveTime and keepaliveTimeout: the server pings a connection that has been silent
	// for keepaliveTime and closes it when no answer comes within keepaliveTimeout, so that
	// connections of vanished peers do not hold a place under MaxConnections for hours.
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
)

// withDefaults returns t with every zero field set to its default.
func (t Transport) withDefaults() Transport {
	t.MaxConnections = cmp.Or(t.MaxConnections, DefaultMaxConnections)
	t.MaxConcurrentStreams = cmp.Or(t.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	t.MaxHeaderBytes = cmp.Or(t.MaxHeaderBytes, DefaultMaxHeaderBytes)
	t.HandshakeTimeout = cmp.Or(t.HandshakeTimeout, DefaultHandshakeTimeout)
	t.IdleTimeout = cmp.Or(t.IdleTimeout, DefaultIdleTimeout)
	t.MaxConnectionAge = cmp.Or(t.MaxConnectionAge, DefaultMaxConnectionAge)
	t.MaxConnectionAgeGrace = cmp.Or(t.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
	t.StreamWindow = cmp.Or(t.StreamWindow, DefaultStreamWindow)
	t.ConnWindow = cmp.Or(t.ConnWindow, DefaultConnWindow)
	t.KeepaliveMinTime = cmp.Or(t.KeepaliveMinTime, DefaultKeepaliveMinTime)
	return t
}

// check refuses negative limits and windows below HTTP/2's 65535 (gRPC would ignore them).
func (t Transport) check() error {
	switch {
	case t.MaxConnections < 0:
		return fmt.Errorf("--max-connections %d: must not be negative", t.MaxConnections)
	case t.HandshakeTimeout < 0, t.IdleTimeout < 0, t.MaxConnectionAge < 0, t.MaxConnectionAgeGrace < 0, t.KeepaliveMinTime < 0:
		return fmt.Errorf("--handshake-timeout %v, --idle-timeout %v, --max-connection-age %v, --max-connection-age-grace %v, --keepalive-min-time %v: must not be negative",
			t.HandshakeTimeout, t.IdleTimeout, t.MaxConnectionAge, t.MaxConnectionAgeGrace, t.KeepaliveMinTime)
	case t.StreamWindow != 0 && t.StreamWindow < 65535, t.ConnWindow != 0 && t.ConnWindow < 65535:
		return fmt.Errorf("--stream-window-bytes %d, --conn-window-bytes %d: must be at least 65535", t.StreamWindow, t.ConnWindow)
	}
	return nil
}

// registerFlags defines the transport flags on fs, writing into t, with the defaults shown.
func (t *Transport) registerFlags(fs *flag.FlagSet) {
	d := t.withDefaults()
	t.MaxConcurrentStreams, t.MaxHeaderBytes, t.StreamWindow, t.ConnWindow = d.MaxConcurrentStreams, d.MaxHeaderBytes, d.StreamWindow, d.ConnWindow
	fs.IntVar(&t.MaxConnections, "max-connections", d.MaxConnections, "most gRPC connections open at once; more wait in the accept queue")
	fs.Func("max-concurrent-streams", fmt.Sprintf("most calls open at once on one connection (default %d)", d.MaxConcurrentStreams), uintFlag(&t.MaxConcurrentStreams))
	fs.Func("max-header-bytes", fmt.Sprintf("largest metadata (header list) of a call, in bytes (default %d)", d.MaxHeaderBytes), uintFlag(&t.MaxHeaderBytes))
	fs.DurationVar(&t.HandshakeTimeout, "handshake-timeout", d.HandshakeTimeout, "a new connection that has not finished its TLS and HTTP/2 handshake by then is closed")
	fs.DurationVar(&t.IdleTimeout, "idle-timeout", d.IdleTimeout, "a connection with no call open for this long is closed (GOAWAY)")
	fs.DurationVar(&t.MaxConnectionAge, "max-connection-age", d.MaxConnectionAge, "a connection is closed (GOAWAY) this long after it opened, ±10%")
	fs.DurationVar(&t.MaxConnectionAgeGrace, "max-connection-age-grace", d.MaxConnectionAgeGrace, "calls in flight on a connection closed for its age get this long to finish")
	fs.Func("stream-window-bytes", fmt.Sprintf("HTTP/2 receive window of a call, in bytes; at least 65535 (default %d)", d.StreamWindow), int32Flag(&t.StreamWindow))
	fs.Func("conn-window-bytes", fmt.Sprintf("HTTP/2 receive window of a connection, in bytes; at least 65535 (default %d)", d.ConnWindow), int32Flag(&t.ConnWindow))
	fs.DurationVar(&t.KeepaliveMinTime, "keepalive-min-time", d.KeepaliveMinTime, "shortest interval at which a client may ping; one that pings more often is disconnected")
}

func uintFlag(p *uint32) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return err
		}
		*p = uint32(v)
		return nil
	}
}

func int32Flag(p *int32) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return err
		}
		*p = int32(v)
		return nil
	}
}

// serverOptions returns the gRPC server options that apply t.
func (t Transport) serverOptions() []grpc.ServerOption {
	t = t.withDefaults()
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(t.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(t.MaxHeaderBytes),
		grpc.ConnectionTimeout(t.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     t.IdleTimeout,
			MaxConnectionAge:      t.MaxConnectionAge,
			MaxConnectionAgeGrace: t.MaxConnectionAgeGrace,
			Time:                  keepaliveTime,
			Timeout:               keepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: t.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.StaticStreamWindowSize(t.StreamWindow),
		grpc.StaticConnWindowSize(t.ConnWindow),
	}
}

// LimitListener returns l limited to the configured MaxConnections open at once: Accept
// waits while that many are open. Serve the gRPC port from it.
func (s *Guard) LimitListener(l net.Listener) net.Listener {
	return netutil.LimitListener(l, s.cfg.Transport.withDefaults().MaxConnections)
}

// tapAuthorized marks a call's context as authorized for its method by the tap handle, so that
// the interceptors do not check the token again.
type tapAuthorized struct{}

// TapHandle returns the gRPC tap handle that authorizes a call (see Authorize) from its
// headers alone, as the HTTP/2 HEADERS frame arrives: a call without a valid token for its
// method is refused before gRPC starts a goroutine for it or buffers any of its message. It
// runs on the connection's reader, so it does no more than Authorize does (a SHA-256 and one
// comparison per client). Pass it to grpc.InTapHandle; the interceptors then skip the calls it
// passed.
func (a *Authenticator) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		ctx, err := a.Authorize(ctx, info.FullMethodName)
		if err != nil {
			return nil, err
		}
		return context.WithValue(ctx, tapAuthorized{}, info.FullMethodName), nil
	}
}

// tapped reports whether the tap handle authorized ctx for fullMethod.
func tapped(ctx context.Context, fullMethod string) bool {
	m, ok := ctx.Value(tapAuthorized{}).(string)
	return ok && m == fullMethod
}

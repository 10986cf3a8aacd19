package guard

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// http2Preface starts every HTTP/2 connection (RFC 9113 §3.4); gRPC clients send it first.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Port shares one listener between gRPC's own HTTP/2 transport and a net/http server for the
// Connect protocol and gRPC-Web over HTTP/1.1. It reads the first bytes of each connection
// (after the TLS handshake, when TLS is on): a connection that opens with the HTTP/2 preface
// goes to GRPC, any other to HTTP. gRPC callers thus keep every limit of Transport and the
// authentication before buffering of TapHandle; HTTP callers get the limits of HTTPServer and
// HTTPHandler. HTTP/2 connections are gRPC's: Connect and gRPC-Web are served over HTTP/1.1
// (with TLS, ALPN picks http/1.1 for clients that offer it, h2 for those that offer only h2,
// as gRPC clients do).
type Port struct {
	// GRPC and HTTP are the two halves: serve gRPC (grpc.Server.Serve) from GRPC and the HTTP
	// server from HTTP.
	GRPC, HTTP net.Listener

	l         net.Listener
	tls       *tls.Config
	handshake time.Duration
	grpc, web *portListener
	closeOnce sync.Once
}

// SharePort returns l shared between gRPC and HTTP (see Port); call Serve to start routing.
// With TLS configured, the Port terminates it (serve gRPC from Port.GRPC without TLS
// credentials: see PortServerOptions). l should come from LimitListener, so that the
// connection limit covers both halves.
func (s *Guard) SharePort(l net.Listener) *Port {
	p := &Port{
		l:         l,
		handshake: s.cfg.Transport.withDefaults().HandshakeTimeout,
		grpc:      newPortListener(l.Addr()),
		web:       newPortListener(l.Addr()),
	}
	if s.Certs != nil {
		p.tls = portTLSConfig(s.Certs)
	}
	p.GRPC, p.HTTP = p.grpc, p.web
	return p
}

// portTLSConfig is the CertReloader's configuration with ALPN offering http/1.1 before h2:
// a browser or curl, which offer both, gets HTTP/1.1 (Connect, gRPC-Web); a gRPC client,
// which offers h2 alone, gets h2.
func portTLSConfig(r *CertReloader) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := r.current().Clone()
			c.NextProtos = []string{"http/1.1", "h2"}
			return c, nil
		},
	}
}

// Serve accepts connections and routes them until the listener is closed (Close). It returns
// the error that ended the accept loop; after Close, nil.
func (p *Port) Serve() error {
	for {
		c, err := p.l.Accept()
		if err != nil {
			p.Close()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go p.route(c)
	}
}

// Close closes the listener and both halves.
func (p *Port) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.l.Close()
		p.grpc.Close()
		p.web.Close()
	})
	return err
}

// route finishes the TLS handshake of c when TLS is on, reads its first bytes within the
// handshake timeout, and hands it to the half they belong to; a connection that sends nothing
// in time is closed.
func (p *Port) route(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(p.handshake))
	if p.tls != nil {
		tc := tls.Server(c, p.tls)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		c = tc
	}
	head := make([]byte, 3)
	if _, err := io.ReadFull(c, head); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	to := p.web
	if string(head) == http2Preface[:3] {
		to = p.grpc
	}
	pc := &peekedConn{Conn: c, head: head}
	if tc, ok := c.(*tls.Conn); ok {
		to.hand(&tlsPeekedConn{pc, tc})
		return
	}
	to.hand(pc)
}

// peekedConn is a connection whose first bytes were read already: Read returns them first.
type peekedConn struct {
	net.Conn
	head []byte
}

func (c *peekedConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// tlsPeekedConn is a peekedConn over TLS.
type tlsPeekedConn struct {
	*peekedConn
	tls *tls.Conn
}

// ConnectionState is the TLS state of the connection, for net/http (which fills Request.TLS
// from it) and portCreds.
func (c *tlsPeekedConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// portCreds are the gRPC transport credentials of a Port's GRPC half when the Port terminates
// TLS: the handshake is done, so they only report the connection's TLS state, as grpc-go's own
// TLS credentials would (peer.AuthInfo is a credentials.TLSInfo).
type portCreds struct{}

func (portCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := c.(*tlsPeekedConn)
	if !ok {
		return nil, nil, errors.New("guard: connection without TLS on a TLS port")
	}
	return c, credentials.TLSInfo{
		State:          tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (portCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("guard: Port credentials are for servers")
}

func (portCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (c portCreds) Clone() credentials.TransportCredentials { return c }

func (portCreds) OverrideServerName(string) error { return nil }

// portListener is one half of a Port: Accept returns the connections routed to it.
type portListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPortListener(addr net.Addr) *portListener {
	return &portListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *portListener) hand(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *portListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *portListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *portListener) Addr() net.Addr { return l.addr }

// HTTPServer returns the HTTP server of a Port's HTTP half, serving h, with the HTTP/1.1
// counterparts of the gRPC limits: the handshake timeout bounds reading a request's headers,
// the idle timeout closes idle connections, and MaxHeaderBytes caps the headers. Bodies are
// capped by HTTPHandler.
func (s *Guard) HTTPServer(h http.Handler) *http.Server {
	t := s.cfg.Transport.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.HandshakeTimeout,
		IdleTimeout:       t.IdleTimeout,
		MaxHeaderBytes:    int(t.MaxHeaderBytes),
	}
}

// HTTPBodyFactor is how many times the largest request message (--max-recv-bytes) an HTTP
// request body may be: JSON spells a message out at length, and gRPC-Web adds framing. The
// message decoded from it still faces --max-recv-bytes.
const HTTPBodyFactor = 4

// HTTPHandler returns h, the Connect and gRPC-Web front of the gRPC server (a transcoder onto
// it), behind the checks the gRPC transport makes before it reads a message: the bearer token
// is checked for the method named by the path (Authorize, on the headers alone, as TapHandle
// does), and a refused call is answered in the caller's protocol (Connect: the HTTP status and
// a JSON error; gRPC-Web: grpc-status in the headers) with its body unread; then the body is
// capped at HTTPBodyFactor × --max-recv-bytes (a larger one is cut short and the call fails).
// The gRPC server's interceptors still check every call that passes.
func (s *Guard) HTTPHandler(h http.Handler) http.Handler {
	limit := int64(s.MaxRecvMsgSize()) * HTTPBodyFactor
	a := s.Auth
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a != nil {
			ctx := metadata.NewIncomingContext(r.Context(), metadata.MD{"authorization": r.Header.Values("Authorization")})
			if addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
				ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr})
			}
			if _, err := a.Authorize(ctx, r.URL.Path); err != nil {
				// Close the connection after the answer rather than read the unread body
				// (net/http would read up to 256 KiB of it to keep the connection).
				w.Header().Set("Connection", "close")
				writeHTTPError(w, r, status.Convert(rpcstatus.Convert(ctx, nil, r.URL.Path, err)))
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// MaxRecvMsgSize is the largest request message in bytes (--max-recv-bytes, or its default).
func (s *Guard) MaxRecvMsgSize() int {
	if s.cfg.MaxRecvMsgSize <= 0 {
		return DefaultMaxRecvMsgSize
	}
	return s.cfg.MaxRecvMsgSize
}

// writeHTTPError answers a Connect or gRPC-Web call with st: gRPC-Web as a trailers-only
// response, a Connect stream as an end-of-stream message, a Connect unary call as the HTTP
// status of its code with a JSON body {"code", "message"} (connectrpc.com/docs/protocol).
func writeHTTPError(w http.ResponseWriter, r *http.Request, st *status.Status) {
	ct := r.Header.Get("Content-Type")
	name := connectCodeName(st.Code())
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Grpc-Status", strconv.Itoa(int(st.Code())))
		w.Header().Set("Grpc-Message", percentEncode(st.Message()))
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(ct, "application/connect+"):
		body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": name, "message": st.Message()}})
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(binary.BigEndian.AppendUint32([]byte{2}, uint32(len(body))))
		_, _ = w.Write(body)
	default:
		w.Header().Set("Content-Type", "application/json")
		if st.Code() == codes.Unauthenticated {
			w.Header().Set("WWW-Authenticate", `Bearer realm="arbiter"`)
		}
		w.WriteHeader(connectHTTPStatus(st.Code()))
		_ = json.NewEncoder(w).Encode(map[string]string{"code": name, "message": st.Message()})
	}
}

// connectCodeName is the Connect protocol's name of c: its gRPC name in snake case.
func connectCodeName(c codes.Code) string {
	if c == codes.Canceled {
		return "canceled"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// connectHTTPStatus is the HTTP status of a Connect unary error with code c.
func connectHTTPStatus(c codes.Code) int {
	switch c {
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// percentEncode encodes a grpc-message as the gRPC protocol asks: bytes outside printable
// ASCII, and '%', as %XX.
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

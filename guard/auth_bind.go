package guard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ErrInsecureBind is returned by CheckBindSafety for a non-loopback address with no
// authentication and no explicit --insecure.
var ErrInsecureBind = errors.New("refusing to listen on a non-loopback address without authentication")

// CheckBindSafety enforces the loopback rule for the gRPC listen address: with no
// authentication configured, Arbiter listens only on loopback (127.0.0.0/8, ::1, localhost or
// a unix socket) unless insecure (the --insecure flag) says otherwise. An empty host (":9090")
// means every interface, and a host name other than localhost is not resolved: both count as
// non-loopback. It returns the line to log at start-up, which says what was decided, or an
// error wrapping ErrInsecureBind.
func CheckBindSafety(grpcAddr string, authConfigured, insecure bool) (notice string, err error) {
	if authConfigured {
		return fmt.Sprintf("authentication on: every RPC but health and reflection needs a bearer token; listening on %s", grpcAddr), nil
	}
	if isLoopbackAddr(grpcAddr) {
		return fmt.Sprintf("no authentication configured: listening on loopback only (%s); configure client tokens to listen on other addresses", grpcAddr), nil
	}
	if insecure {
		return fmt.Sprintf("INSECURE: no authentication and --insecure: anyone who can reach %s can call every RPC, including PutFeatures and policy administration", grpcAddr), nil
	}
	return "", fmt.Errorf("%w: %s is not loopback; configure client tokens, listen on 127.0.0.1, or pass --insecure", ErrInsecureBind, grpcAddr)
}

// isLoopbackAddr reports whether a listen address only accepts connections from this host.
func isLoopbackAddr(addr string) bool {
	if strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, "unix-abstract:") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

// CheckAdminBind applies the loopback rule to the HTTP admin address (--http-addr) as
// CheckBindSafety does to the gRPC one. With client tokens configured, the admin endpoints ask
// for them (/metrics the metrics role, /debug/pprof/ the admin role; /healthz and /readyz stay
// open for load balancers). Without tokens, the admin port listens only on loopback unless
// insecure; and profiles (pprof) are never served to the network without tokens, --insecure or
// not: they reveal the process's memory and cost CPU on demand. It returns the line to log at
// start-up, or an error wrapping ErrInsecureBind.
func CheckAdminBind(httpAddr string, authConfigured, insecure, pprof bool) (notice string, err error) {
	switch {
	case authConfigured:
		return fmt.Sprintf("admin endpoints on %s: /healthz and /readyz open; /metrics needs a token with the metrics role, /debug/pprof/ the admin role", httpAddr), nil
	case isLoopbackAddr(httpAddr):
		return fmt.Sprintf("admin endpoints on loopback only (%s), without authentication", httpAddr), nil
	case pprof:
		return "", fmt.Errorf("%w: --pprof on admin address %s, which is not loopback, would show the process's memory to anyone who reaches it; configure client tokens (profiles then need the admin role) or listen on 127.0.0.1", ErrInsecureBind, httpAddr)
	case insecure:
		return fmt.Sprintf("INSECURE: no authentication and --insecure: anyone who can reach %s can read /metrics", httpAddr), nil
	}
	return "", fmt.Errorf("%w: admin address %s is not loopback; configure client tokens, listen on 127.0.0.1, or pass --insecure", ErrInsecureBind, httpAddr)
}

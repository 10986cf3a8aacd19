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

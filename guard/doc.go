// Package guard is the security layer in front of Arbiter's gRPC services and admin port: the
// loopback rule (CheckBindSafety, CheckAdminBind), bearer-token authentication with roles
// (Authenticator, checked from a call's headers before its message is read by TapHandle, and
// on the admin port by RequireHTTP), TLS and mutual TLS with certificate reloading
// (CertReloader), the connection and HTTP/2 limits (Transport, LimitListener), per-client rate
// limits (RateLimiter), load shedding (Shedder), requests that do not decode
// (RequestDecoder), the card-number guard (CheckCardNumbers, built on package cardnumber) and
// input limits (MaxRecvMsgSize, CheckRequestTimes). The gRPC port is shared with Connect and
// gRPC-Web callers over HTTP/1.1 (SharePort, Port), whose path gets the same checks before a
// body is read (HTTPHandler, HTTPServer). Guard wires them from one Config, in the
// order docs/security.md gives; their refusals are rpcstatus errors, so the gRPC status of
// every refusal is chosen in one place.
package guard

// instrumentationName names the meter of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/guard"

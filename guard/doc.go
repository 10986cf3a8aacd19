// Package guard is the security layer in front of Arbiter's gRPC services: the loopback rule
// (CheckBindSafety), bearer-token authentication with roles (Authenticator), TLS and mutual
// TLS with certificate reloading (CertReloader), per-client rate limits (RateLimiter), load
// shedding (Shedder), the card-number guard (CheckCardNumbers, built on package cardnumber)
// and input limits (MaxRecvMsgSize, CheckRequestTimes). Guard wires them from one Config, in
// the order docs/security.md gives; their refusals are rpcstatus errors, so the gRPC status
// of every refusal is chosen in one place.
package guard

// instrumentationName names the meter of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/guard"

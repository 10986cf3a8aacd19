package guard

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.yaml.in/yaml/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// Role is a permission a client holds. Roles do not imply one another: a client that decides
// and reads holds both decide and read.
type Role string

// The roles.
const (
	// RoleDecide may call DecisionService/Decide, DecisionService/RecordOutcome and
	// DecisionService/Confirm.
	RoleDecide Role = "decide"
	// RoleRead may call DecisionService/GetDecision and FeatureService/GetCustomerState.
	RoleRead Role = "read"
	// RoleAdmin may call FeatureService/PutFeatures and every arbiter.v1.PolicyService method
	// but ApprovePolicy, and read the runtime profiles on the admin port (/debug/pprof/).
	RoleAdmin Role = "admin"
	// RoleApprove may call PolicyService/ApprovePolicy: the second pair of eyes on a policy
	// version (serve --require-approval), never the version's author.
	RoleApprove Role = "approve"
	// RoleMetrics may scrape /metrics on the admin port, and nothing else: the role of a
	// Prometheus scraper's token.
	RoleMetrics Role = "metrics"
)

// roleSet is a set of roles as bits.
type roleSet uint8

const (
	roleBitDecide roleSet = 1 << iota
	roleBitRead
	roleBitAdmin
	roleBitMetrics
	roleBitApprove
)

func roleBit(r Role) (roleSet, bool) {
	switch r {
	case RoleDecide:
		return roleBitDecide, true
	case RoleRead:
		return roleBitRead, true
	case RoleAdmin:
		return roleBitAdmin, true
	case RoleMetrics:
		return roleBitMetrics, true
	case RoleApprove:
		return roleBitApprove, true
	}
	return 0, false
}

// methodRoles maps every full gRPC method name of the arbiter API to the role it needs.
var methodRoles = map[string]Role{
	arbiterv1.DecisionService_Decide_FullMethodName:          RoleDecide,
	arbiterv1.DecisionService_RecordOutcome_FullMethodName:   RoleDecide,
	arbiterv1.DecisionService_Confirm_FullMethodName:         RoleDecide,
	arbiterv1.DecisionService_GetDecision_FullMethodName:     RoleRead,
	arbiterv1.FeatureService_GetCustomerState_FullMethodName: RoleRead,
	arbiterv1.FeatureService_PutFeatures_FullMethodName:      RoleAdmin,
	arbiterv1.FeatureService_ExportCustomer_FullMethodName:   RoleAdmin,
	arbiterv1.FeatureService_EraseCustomer_FullMethodName:    RoleAdmin,
	arbiterv1.PolicyService_ApprovePolicy_FullMethodName:     RoleApprove,
}

// Prefixes of methods that are open to anyone (health and reflection) and of services every
// method of which needs the admin role.
var (
	openMethodPrefixes = []string{
		"/grpc.health.v1.Health/",
		"/grpc.reflection.v1.ServerReflection/",
		"/grpc.reflection.v1alpha.ServerReflection/",
	}
	adminServicePrefix = "/" + arbiterv1.PolicyService_ServiceDesc.ServiceName + "/"
)

// MethodRole returns the role a full gRPC method name ("/arbiter.v1.DecisionService/Decide")
// needs. open is true for health checks and server reflection, which need no token. ok is
// false for a method Arbiter does not know: with authentication on, such a method is denied.
func MethodRole(fullMethod string) (role Role, open, ok bool) {
	if r, found := methodRoles[fullMethod]; found {
		return r, false, true
	}
	for _, p := range openMethodPrefixes {
		if strings.HasPrefix(fullMethod, p) {
			return "", true, true
		}
	}
	if strings.HasPrefix(fullMethod, adminServicePrefix) {
		return RoleAdmin, false, true
	}
	return "", false, false
}

// AuthConfig is the client token file: every client allowed to call Arbiter, with the SHA-256
// of its bearer token and its roles. The file holds hashes only, never tokens.
//
//	clients:
//	  - name: payment-gateway
//	    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    roles: [decide, read]
//	    rate_limit: {per_second: 500, burst: 1000}
//
// JSON with the same field names is accepted too.
type AuthConfig struct {
	Clients []ClientConfig `yaml:"clients" json:"clients"`
}

// ClientConfig is one client in an AuthConfig.
type ClientConfig struct {
	// Name identifies the client in logs, metrics and audit records. Required and unique.
	Name string `yaml:"name" json:"name"`
	// TokenSHA256 is the lower- or upper-case hex SHA-256 of the client's token (see HashToken).
	TokenSHA256 string `yaml:"token_sha256" json:"token_sha256"`
	// Roles are the client's roles; at least one.
	Roles []Role `yaml:"roles" json:"roles"`
	// RateLimit, when set, replaces the server's default rate limit for this client.
	RateLimit *RateLimit `yaml:"rate_limit,omitempty" json:"rate_limit,omitempty"`
}

// RateLimit is a token bucket: PerSecond requests a second on average, bursts of up to Burst.
// PerSecond 0 means no limit.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second" json:"per_second"`
	Burst     int     `yaml:"burst" json:"burst"`
}

// validate checks a rate limit and fills a zero Burst with max(1, PerSecond).
func (r *RateLimit) validate() error {
	if r.PerSecond < 0 || r.PerSecond != r.PerSecond || r.PerSecond > 1e9 {
		return fmt.Errorf("per_second %v: want 0 (no limit) up to 1e9", r.PerSecond)
	}
	if r.Burst < 0 {
		return fmt.Errorf("burst %d: want 0 or more", r.Burst)
	}
	if r.Burst == 0 && r.PerSecond > 0 {
		r.Burst = max(1, int(r.PerSecond))
	}
	return nil
}

// ParseAuthConfig parses and checks a client token file (YAML or JSON). Unknown fields are
// errors (a "token" field would be a plain token, which is refused), and so are duplicate names
// or hashes, malformed hashes, unknown roles and bad rate limits. An empty client list is an
// error: it would lock everyone out.
func ParseAuthConfig(data []byte) (*AuthConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg AuthConfig
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("auth config: empty")
		}
		return nil, fmt.Errorf("auth config: %w", err)
	}
	if len(cfg.Clients) == 0 {
		return nil, errors.New("auth config: no clients")
	}
	names := make(map[string]bool, len(cfg.Clients))
	hashes := make(map[string]bool, len(cfg.Clients))
	for i := range cfg.Clients {
		c := &cfg.Clients[i]
		if c.Name == "" {
			return nil, fmt.Errorf("auth config: clients[%d].name is empty", i)
		}
		if len(c.Name) > 64 || strings.ContainsFunc(c.Name, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			return nil, fmt.Errorf("auth config: clients[%d].name: want 1 to 64 printable ASCII characters without spaces", i)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("auth config: clients[%d].name %q is repeated", i, c.Name)
		}
		names[c.Name] = true
		h := strings.ToLower(c.TokenSHA256)
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("auth config: client %q: token_sha256 must be 64 hex digits (the SHA-256 of the token, see HashToken)", c.Name)
		}
		if h == HashToken("") {
			return nil, fmt.Errorf("auth config: client %q: token_sha256 is the hash of an empty token", c.Name)
		}
		if hashes[h] {
			return nil, fmt.Errorf("auth config: client %q: token_sha256 is shared with another client", c.Name)
		}
		hashes[h] = true
		c.TokenSHA256 = h
		if len(c.Roles) == 0 {
			return nil, fmt.Errorf("auth config: client %q has no roles", c.Name)
		}
		for _, r := range c.Roles {
			if _, ok := roleBit(r); !ok {
				return nil, fmt.Errorf("auth config: client %q: unknown role %q (want decide, read, admin or metrics)", c.Name, r)
			}
		}
		if c.RateLimit != nil {
			if err := c.RateLimit.validate(); err != nil {
				return nil, fmt.Errorf("auth config: client %q: rate_limit: %w", c.Name, err)
			}
		}
	}
	return &cfg, nil
}

// LoadAuthConfig reads and parses a client token file (see ParseAuthConfig).
func LoadAuthConfig(path string) (*AuthConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read auth config: %w", err)
	}
	return ParseAuthConfig(data)
}

// tokenPrefix marks Arbiter tokens so that secret scanners can find leaked ones.
const tokenPrefix = "arb_"

// NewToken returns a new random bearer token: "arb_" and 43 base64url characters (256 bits
// from r, which is crypto/rand.Reader when nil).
func NewToken(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashToken returns the lower-case hex SHA-256 of a token, the form the token file stores. A
// single unsalted SHA-256 is enough for high-entropy random tokens such as NewToken's; it is
// not a password hash.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Identity is the authenticated client of an RPC.
type Identity struct {
	// Name is the client's name from the token file.
	Name string
	// Roles are the client's roles.
	Roles []Role
	// RateLimit is the client's own rate limit, or nil for the server's default.
	RateLimit *RateLimit

	roles   roleSet
	rateKey string // "client:" + Name, the rate limiter's bucket key
}

// Has reports whether the client holds role r.
func (id Identity) Has(r Role) bool {
	b, ok := roleBit(r)
	if !ok {
		return false
	}
	if id.roles != 0 {
		return id.roles&b != 0
	}
	for _, have := range id.Roles {
		if have == r {
			return true
		}
	}
	return false
}

type identityKey struct{}

// ContextWithClient returns ctx carrying id, as the authentication interceptor does. Tests and
// callers that authenticate by other means use it.
func ContextWithClient(ctx context.Context, id Identity) context.Context {
	if id.roles == 0 {
		for _, r := range id.Roles {
			b, _ := roleBit(r)
			id.roles |= b
		}
	}
	return context.WithValue(ctx, identityKey{}, &id)
}

// ClientFromContext returns the authenticated client of an RPC, for audit and change logs. ok
// is false when authentication is off or the method is open.
func ClientFromContext(ctx context.Context) (id Identity, ok bool) {
	p, ok := ctx.Value(identityKey{}).(*Identity)
	if !ok || p == nil {
		return Identity{}, false
	}
	return *p, true
}

// authClient is a client as the authenticator holds it.
type authClient struct {
	hash [sha256.Size]byte
	id   *Identity
}

// Authenticator checks bearer tokens and roles on every RPC. It is safe for concurrent use;
// SetConfig swaps the client list atomically.
type Authenticator struct {
	clients  atomic.Pointer[[]authClient]
	failures metric.Int64Counter
	logger   *slog.Logger
	logLimit *rate.Limiter
}

// AuthOption configures an Authenticator.
type AuthOption func(*authOptions)

type authOptions struct {
	logger        *slog.Logger
	logsPerSecond float64
}

// WithAuthLogger sets the logger for denied requests. The default discards logs.
func WithAuthLogger(l *slog.Logger) AuthOption {
	return func(o *authOptions) { o.logger = l }
}

// WithAuthLogRate caps the denied-request log lines per second (default 10, bursts of 10
// times that), so that a flood of bad requests cannot flood the log; every denial is still
// counted in the metric.
func WithAuthLogRate(perSecond float64) AuthOption {
	return func(o *authOptions) { o.logsPerSecond = perSecond }
}

// NewAuthenticator returns an Authenticator for the clients of cfg (see ParseAuthConfig). mp
// provides the counter arbiter.auth.failures, with attributes reason (missing_token,
// bad_token, permission_denied, unknown_method), rpc.method and client.
func NewAuthenticator(cfg *AuthConfig, mp metric.MeterProvider, opts ...AuthOption) (*Authenticator, error) {
	o := authOptions{logger: slog.New(slog.DiscardHandler), logsPerSecond: 10}
	for _, opt := range opts {
		opt(&o)
	}
	failures, err := mp.Meter(instrumentationName).Int64Counter("arbiter.auth.failures",
		metric.WithDescription("RPCs refused by authentication or authorisation"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("auth failures counter: %w", err)
	}
	a := &Authenticator{
		failures: failures,
		logger:   o.logger,
		logLimit: rate.NewLimiter(rate.Limit(o.logsPerSecond), max(1, int(10*o.logsPerSecond))),
	}
	if err := a.SetConfig(cfg); err != nil {
		return nil, err
	}
	return a, nil
}

// SetConfig replaces the client list, for a reload of the token file. Requests in flight
// finish with the list they started with.
func (a *Authenticator) SetConfig(cfg *AuthConfig) error {
	if cfg == nil || len(cfg.Clients) == 0 {
		return errors.New("auth config: no clients")
	}
	clients := make([]authClient, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		h, err := hex.DecodeString(c.TokenSHA256)
		if err != nil || len(h) != sha256.Size {
			return fmt.Errorf("auth config: client %q: token_sha256 must be 64 hex digits", c.Name)
		}
		id := &Identity{Name: c.Name, Roles: append([]Role(nil), c.Roles...), rateKey: "client:" + c.Name}
		for _, r := range c.Roles {
			b, ok := roleBit(r)
			if !ok {
				return fmt.Errorf("auth config: client %q: unknown role %q", c.Name, r)
			}
			id.roles |= b
		}
		if c.RateLimit != nil {
			rl := *c.RateLimit
			if err := rl.validate(); err != nil {
				return fmt.Errorf("auth config: client %q: rate_limit: %w", c.Name, err)
			}
			id.RateLimit = &rl
		}
		ac := authClient{id: id}
		copy(ac.hash[:], h)
		clients = append(clients, ac)
	}
	a.clients.Store(&clients)
	return nil
}

// Failure reasons, as counted and logged.
const (
	authReasonMissingToken     = "missing_token"
	authReasonBadToken         = "bad_token"
	authReasonPermissionDenied = "permission_denied"
	authReasonUnknownMethod    = "unknown_method"
)

// Authorize authenticates the bearer token in ctx's incoming metadata and checks that its
// client may call fullMethod. It returns ctx carrying the client's Identity, or an
// UNAUTHENTICATED (no, malformed or unknown token) or PERMISSION_DENIED (missing role,
// unknown method) status error. Open methods pass without a token, and with the client's
// identity when a valid token is sent anyway.
func (a *Authenticator) Authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	role, open, known := MethodRole(fullMethod)
	token, present := bearerToken(ctx)
	id, reason := a.check(token, present, role, open, known)
	switch reason {
	case "":
		if id != nil {
			return context.WithValue(ctx, identityKey{}, id), nil
		}
		return ctx, nil
	case authReasonMissingToken:
		a.deny(ctx, fullMethod, "", reason, peerAddr(ctx))
		return nil, rpcstatus.Unauthenticated(`missing bearer token: send metadata "authorization: Bearer <token>"`)
	case authReasonBadToken:
		a.deny(ctx, fullMethod, "", reason, peerAddr(ctx))
		return nil, rpcstatus.Unauthenticated("invalid bearer token")
	case authReasonUnknownMethod:
		a.deny(ctx, fullMethod, id.Name, reason, peerAddr(ctx))
		return nil, rpcstatus.PermissionDenied(fmt.Sprintf("method %s is not open to any role", fullMethod))
	default:
		a.deny(ctx, fullMethod, id.Name, reason, peerAddr(ctx))
		return nil, rpcstatus.PermissionDenied(fmt.Sprintf("client %s lacks role %s for %s", id.Name, role, fullMethod))
	}
}

// check decides on a call that needs role (open: needs none; known: false for a method no
// role may call) with token (present: an authorization was sent at all). It returns the
// caller's identity when the token is valid, and the reason for a refusal, "" when allowed.
func (a *Authenticator) check(token string, present bool, role Role, open, known bool) (*Identity, string) {
	var id *Identity
	if present {
		id = a.lookup(token)
	}
	switch {
	case open:
		return id, ""
	case !present:
		return nil, authReasonMissingToken
	case id == nil:
		return nil, authReasonBadToken
	case !known:
		return id, authReasonUnknownMethod
	case !id.Has(role):
		return id, authReasonPermissionDenied
	}
	return id, ""
}

// RequireHTTP returns h behind a bearer token with role, for the admin port: a request
// without an "Authorization: Bearer <token>" header, or with a token no client holds, gets 401
// (with WWW-Authenticate: Bearer); one whose client lacks role gets 403. Refusals are counted
// and logged like those of RPCs, with the URL path as rpc.method. The handler sees the
// client's Identity in the request context (ClientFromContext).
func (a *Authenticator) RequireHTTP(role Role, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, present := bearerValue(r.Header.Values("Authorization"))
		id, reason := a.check(token, present, role, false, true)
		switch reason {
		case "":
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
			return
		case authReasonMissingToken, authReasonBadToken:
			a.deny(r.Context(), r.URL.Path, "", reason, r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="arbiter"`)
			http.Error(w, "missing or invalid bearer token", http.StatusUnauthorized)
		default:
			a.deny(r.Context(), r.URL.Path, id.Name, reason, r.RemoteAddr)
			http.Error(w, "client "+id.Name+" lacks role "+string(role), http.StatusForbidden)
		}
	})
}

// lookup returns the client whose token hash matches token, comparing with every client in
// constant time so that the time taken says nothing about which hash came close.
func (a *Authenticator) lookup(token string) *Identity {
	if token == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	var found *Identity
	for _, c := range *a.clients.Load() {
		if subtle.ConstantTimeCompare(sum[:], c.hash[:]) == 1 {
			found = c.id
		}
	}
	return found
}

// bearerToken returns the token of the one "authorization: Bearer <token>" metadata entry.
// present is false only when there is no authorization entry; two entries, another scheme or
// an empty token return present with an empty token, which no client matches (bad_token).
func bearerToken(ctx context.Context) (token string, present bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	return bearerValue(md["authorization"])
}

// bearerValue is bearerToken for the values of the authorization metadata or HTTP header.
func bearerValue(vals []string) (token string, present bool) {
	switch len(vals) {
	case 0:
		return "", false
	case 1:
	default:
		return "", true
	}
	v := vals[0]
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", true
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

// peerAddr returns the address of an RPC's peer, or "".
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// deny counts a refused request and logs it, with the client name when known and the peer's
// address, never the token.
func (a *Authenticator) deny(ctx context.Context, method, client, reason, addr string) {
	a.failures.Add(ctx, 1, metric.WithAttributes(
		attribute.String("reason", reason),
		attribute.String("rpc.method", method),
		attribute.String("client", client),
	))
	if !a.logLimit.Allow() {
		return
	}
	a.logger.LogAttrs(ctx, slog.LevelWarn, "request denied",
		slog.String("reason", reason),
		slog.String("rpc.method", method),
		slog.String("client", client),
		slog.String("peer", addr))
}

// UnaryInterceptor checks every unary RPC with Authorize before the handler runs, unless
// TapHandle has already done so for the call.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if tapped(ctx, info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, err := a.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor checks every streaming RPC with Authorize before the handler runs, unless
// TapHandle has already done so for the call.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if tapped(ss.Context(), info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, err := a.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, identityStream{ServerStream: ss, ctx: ctx})
	}
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identityStream) Context() context.Context { return s.ctx }

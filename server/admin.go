package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// AdminConfig configures the HTTP admin endpoints.
type AdminConfig struct {
	// Metrics serves /metrics (for example the Prometheus exporter's handler); nil: no
	// /metrics.
	Metrics http.Handler
	// Pprof serves the runtime profiles under /debug/pprof/. Off by default: profiles reveal
	// internals and cost CPU. /debug/pprof/cmdline is never served: the command line may hold
	// secrets.
	Pprof bool
	// Auth, when set, guards /metrics (a token with guard.RoleMetrics) and /debug/pprof/
	// (guard.RoleAdmin); nil: no authentication, for an admin address on loopback (see
	// guard.CheckAdminBind). /healthz and /readyz are always open, for load balancers.
	Auth *guard.Authenticator
	// ReadyTimeout bounds the store ping of /readyz (default 1 s).
	ReadyTimeout time.Duration
	// Archive, when set, reports the archive relay's lag and its last error for /readyz. A
	// lagging or failing archive does not make the server unready: decisions go on, and the
	// outbox keeps the records.
	Archive func() (lag time.Duration, err error)
	// Console, when set, serves every path the endpoints above do not: the operator console
	// and /openapi.json (package console), which does its own authentication.
	Console http.Handler
}

// readiness is the JSON body of /readyz.
type readiness struct {
	Ready   bool   `json:"ready"`
	Policy  string `json:"policy,omitempty"`
	Version string `json:"policy_version,omitempty"`
	Digest  string `json:"policy_digest,omitempty"`
	Error   string `json:"error,omitempty"`
	// Active and PolicyError come from WithPolicySync: the version the fleet should serve,
	// and why this replica does not.
	Active      string `json:"policy_active,omitempty"`
	PolicyError string `json:"policy_error,omitempty"`
	// ArchiveLag and ArchiveError come from AdminConfig.Archive.
	ArchiveLag   *float64 `json:"archive_lag_seconds,omitempty"`
	ArchiveError string   `json:"archive_error,omitempty"`
}

// AdminHandler returns the HTTP admin endpoints:
//
//	/healthz       200 while the process runs (liveness)
//	/readyz        200 when Ready (not draining, policy loaded, store answers), else 503;
//	               a JSON body reports the policy id, version and digest
//	/metrics       cfg.Metrics, when set (with cfg.Auth: a token with the metrics role)
//	/debug/pprof/  the runtime profiles, when cfg.Pprof is set (with cfg.Auth: the admin
//	               role), but for /debug/pprof/cmdline (404)
//	/              cfg.Console, when set: the operator console and /openapi.json
func (s *Server) AdminHandler(cfg AdminConfig) http.Handler {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = time.Second
	}
	protect := func(_ guard.Role, h http.Handler) http.Handler { return h }
	if cfg.Auth != nil {
		protect = cfg.Auth.RequireHTTP
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.ReadyTimeout)
		defer cancel()
		ref, err := s.Ready(ctx)
		body := readiness{Ready: err == nil, Policy: ref.ID, Version: ref.Version, Digest: ref.Digest}
		if ps := s.opts.policySync; ps != nil {
			st := ps.Status()
			body.Active, body.PolicyError = st.Active, st.Problem()
		}
		if cfg.Archive != nil {
			lag, aerr := cfg.Archive()
			secs := lag.Seconds()
			body.ArchiveLag = &secs
			if aerr != nil {
				body.ArchiveError = "archive unavailable; the outbox keeps the records"
			}
		}
		code := http.StatusOK
		if err != nil {
			body.Error = readyError(err)
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", protect(guard.RoleMetrics, cfg.Metrics))
	}
	if cfg.Pprof {
		mux.Handle("/debug/pprof/", protect(guard.RoleAdmin, http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", http.NotFoundHandler())
		mux.Handle("/debug/pprof/profile", protect(guard.RoleAdmin, http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", protect(guard.RoleAdmin, http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", protect(guard.RoleAdmin, http.HandlerFunc(pprof.Trace)))
	}
	if cfg.Console != nil {
		mux.Handle("/", cfg.Console)
	}
	return mux
}

// readyError says why the server is not ready, without internals.
func readyError(err error) string {
	switch {
	case errors.Is(err, rpcstatus.ErrDraining):
		return "draining"
	case errors.Is(err, rpcstatus.ErrNoPolicy):
		return "no policy loaded"
	case errors.Is(err, errCold):
		return "warming up"
	}
	return "store unavailable"
}

// Package console is the operator console on the admin port: server-rendered pages (html/template,
// assets embedded, nothing fetched from the internet) of the live decision mix, decision lookup
// with the explanation as a trace, customer state, policy versions with diff, activate and
// rollback, the shadow report and load-test reports; and the OpenAPI document at /openapi.json.
//
// It reads and acts through the same service methods the gRPC API calls, so a change made from
// a page is recorded in the policy change log with the caller's identity. With an
// Authenticator, pages need the read role and actions the admin role; a browser sends its token
// once on /login and keeps it in an HttpOnly, SameSite=Strict cookie. Actions are POSTs that
// are refused when they come from another origin.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
)

// Decisions reads stored decisions (server.Server satisfies it).
type Decisions interface {
	GetDecision(context.Context, *arbiterv1.GetDecisionRequest) (*arbiterv1.GetDecisionResponse, error)
}

// Customers reads a customer's state (server.Server satisfies it).
type Customers interface {
	GetCustomerState(context.Context, *arbiterv1.GetCustomerStateRequest) (*arbiterv1.GetCustomerStateResponse, error)
}

// Policies reads and changes the policy versions (server.PolicyService satisfies it).
type Policies interface {
	ListPolicies(context.Context, *arbiterv1.ListPoliciesRequest) (*arbiterv1.ListPoliciesResponse, error)
	GetPolicy(context.Context, *arbiterv1.GetPolicyRequest) (*arbiterv1.GetPolicyResponse, error)
	ListPolicyChanges(context.Context, *arbiterv1.ListPolicyChangesRequest) (*arbiterv1.ListPolicyChangesResponse, error)
	ActivatePolicy(context.Context, *arbiterv1.ActivatePolicyRequest) (*arbiterv1.ActivatePolicyResponse, error)
	RollbackPolicy(context.Context, *arbiterv1.RollbackPolicyRequest) (*arbiterv1.RollbackPolicyResponse, error)
	GetShadowReport(context.Context, *arbiterv1.GetShadowReportRequest) (*arbiterv1.GetShadowReportResponse, error)
}

// Explainer explains a stored decision made without options.explain again (server.Server
// satisfies it); its errors say why it cannot.
type Explainer interface {
	ExplainDecision(context.Context, *arbiterv1.DecisionRecord) (*arbiterv1.Explanation, error)
}

// Config is what the console reads from. Decisions, Customers and Policies are required.
type Config struct {
	Decisions Decisions
	Customers Customers
	Policies  Policies
	// Explainer, when set, gives decisions made without options.explain their trace; nil:
	// their trace is their reasons.
	Explainer Explainer
	// Mix is the live decision mix; nil: the mix page says it is off.
	Mix *Mix
	// Auth, when set, guards the pages (guard.RoleRead) and the actions (guard.RoleAdmin);
	// nil: no authentication, for an admin address on loopback.
	Auth *guard.Authenticator
	// LoadTestDir is the folder of load-test reports (loadtest/scenario.sh writes
	// loadtest-report/); its report.html files are listed and served. Empty: none.
	LoadTestDir string
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console is the operator console's HTTP handler.
type Console struct {
	cfg     Config
	pages   map[string]*template.Template
	mux     *http.ServeMux
	openAPI []byte
}

var funcs = template.FuncMap{
	"ts": func(t interface{ AsTime() time.Time }) string {
		if t == nil {
			return ""
		}
		return t.AsTime().UTC().Format("2006-01-02 15:04:05Z")
	},
	"pct": func(part, whole int) string {
		if whole == 0 {
			return "0%"
		}
		return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(whole))
	},
	"share": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"short": func(s string) string {
		if len(s) > 19 {
			return s[:19] + "…"
		}
		return s
	},
	"action": func(a arbiterv1.Action) string { return strings.TrimPrefix(a.String(), "ACTION_") },
	"enum": func(e interface{ String() string }) string {
		s := e.String()
		if i := strings.Index(s, "_"); i >= 0 {
			for _, p := range []string{"EVENT_TYPE_", "CHANNEL_", "PURPOSE_", "POLICY_CHANGE_KIND_", "OUTCOME_"} {
				if strings.HasPrefix(s, p) {
					return strings.TrimPrefix(s, p)
				}
			}
		}
		return s
	},
}

// New returns the console for cfg.
func New(cfg Config) (*Console, error) {
	if cfg.Decisions == nil || cfg.Customers == nil || cfg.Policies == nil {
		return nil, errors.New("console: Decisions, Customers and Policies are required")
	}
	doc, err := openAPIDocument()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}, mux: http.NewServeMux(), openAPI: doc}
	for _, page := range []string{"mix", "decision", "customer", "policies", "shadow", "loadtests", "login"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", page, err)
		}
		c.pages[page] = t
	}
	read := c.protect(guard.RoleRead)
	act := c.protect(guard.RoleAdmin)
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		// For pages that name no icon, such as the load-test reports.
		w.Header().Set("Content-Type", "image/svg+xml")
		http.ServeFileFS(w, r, staticFS, "static/favicon.svg")
	})
	c.mux.HandleFunc("GET /openapi.json", c.serveOpenAPI)
	c.mux.HandleFunc("GET /login", c.login)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.Handle("GET /{$}", read(http.HandlerFunc(c.mix)))
	c.mux.Handle("GET /decisions", read(http.HandlerFunc(c.decision)))
	c.mux.Handle("GET /customers", read(http.HandlerFunc(c.customer)))
	c.mux.Handle("GET /policies", read(http.HandlerFunc(c.policies)))
	c.mux.Handle("POST /policies/activate", act(sameOrigin(http.HandlerFunc(c.activate))))
	c.mux.Handle("POST /policies/rollback", act(sameOrigin(http.HandlerFunc(c.rollback))))
	c.mux.Handle("GET /shadow", read(http.HandlerFunc(c.shadow)))
	c.mux.Handle("GET /loadtests", read(http.HandlerFunc(c.loadtests)))
	if cfg.LoadTestDir != "" {
		c.mux.Handle("GET /loadtests/files/", read(http.StripPrefix("/loadtests/files/", http.FileServerFS(os.DirFS(cfg.LoadTestDir)))))
	}
	return c, nil
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	c.mux.ServeHTTP(w, r)
}

// tokenCookie holds a browser's bearer token (set by /login).
const tokenCookie = "arbiter_token"

// protect returns a wrapper that requires role (with an Authenticator), taking the token from
// the Authorization header or, for a browser, the cookie /login set.
func (c *Console) protect(role guard.Role) func(http.Handler) http.Handler {
	if c.cfg.Auth == nil {
		return func(h http.Handler) http.Handler { return h }
	}
	return func(h http.Handler) http.Handler {
		inner := c.cfg.Auth.RequireHTTP(role, h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "" {
				ck, err := r.Cookie(tokenCookie)
				if err != nil {
					if r.Method == http.MethodGet {
						http.Redirect(w, r, "/login", http.StatusSeeOther)
						return
					}
				} else {
					r.Header.Set("Authorization", "Bearer "+ck.Value)
				}
			}
			inner.ServeHTTP(w, r)
		})
	}
}

// sameOrigin refuses a POST whose Origin (sent by every browser on a POST) is not this host:
// another site's page cannot make the operator's browser activate a policy.
func sameOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Host != r.Host {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// page is the data of every page: its title and nav entry, an error or notice to show, and
// its own data.
type page struct {
	Title, Nav string
	Error      string
	Notice     string
	Data       any
}

func (c *Console) render(w http.ResponseWriter, name string, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := c.pages[name].Execute(w, p); err != nil {
		// Headers are gone; the page is cut short.
		fmt.Fprintf(w, "<p>template error</p>")
	}
}

// errText is the message of a service error (a gRPC status), without its code prefix.
func errText(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Code().String() + ": " + st.Message()
	}
	return err.Error()
}

func (c *Console) mix(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Decision mix", Nav: "mix"}
	if c.cfg.Mix == nil {
		p.Error = "the live decision mix is off"
	} else {
		p.Data = c.cfg.Mix.Snapshot(time.Now())
	}
	c.render(w, "mix", p)
}

// decisionView is the decision page's data.
type decisionView struct {
	ID     string
	Record *arbiterv1.DecisionRecord
	Trace  []traceStep
	// TraceNote says where the trace comes from when the record holds none.
	TraceNote string
}

func (c *Console) decision(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if cust := strings.TrimSpace(r.URL.Query().Get("customer")); cust != "" && id == "" {
		http.Redirect(w, r, "/customers?id="+url.QueryEscape(cust), http.StatusSeeOther)
		return
	}
	p := page{Title: "Decision lookup", Nav: "decisions"}
	v := decisionView{ID: id}
	if id != "" {
		resp, err := c.cfg.Decisions.GetDecision(r.Context(), &arbiterv1.GetDecisionRequest{DecisionId: id})
		if err != nil {
			p.Error = errText(err)
		} else {
			v.Record = resp.GetRecord()
			x := v.Record.GetResponse().GetExplanation()
			if x == nil && c.cfg.Explainer != nil {
				var err error
				if x, err = c.cfg.Explainer.ExplainDecision(r.Context(), v.Record); err != nil {
					v.TraceNote = "Made without options.explain, and not explained again: " + err.Error() + ". The trace shows its reasons."
				} else {
					v.TraceNote = "Made without options.explain: explained again by the policy that decided it, on the request and state it read."
				}
			}
			v.Trace = explain(v.Record, x)
		}
	}
	p.Data = v
	c.render(w, "decision", p)
}

func (c *Console) customer(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	p := page{Title: "Customer state", Nav: "customers"}
	var v struct {
		ID    string
		State *arbiterv1.GetCustomerStateResponse
	}
	v.ID = id
	if id != "" {
		st, err := c.cfg.Customers.GetCustomerState(r.Context(), &arbiterv1.GetCustomerStateRequest{CustomerId: id})
		if err != nil {
			p.Error = errText(err)
		} else {
			v.State = st
		}
	}
	p.Data = v
	c.render(w, "customer", p)
}

// policiesView is the policies page's data.
type policiesView struct {
	List      *arbiterv1.ListPoliciesResponse
	Changes   []*arbiterv1.PolicyChange
	From, To  string
	Diff      []fileDiff
	CanAct    bool
	Approvals bool
}

func (c *Console) policies(w http.ResponseWriter, r *http.Request) {
	c.policiesPage(w, r, page{Title: "Policy versions", Nav: "policies", Notice: r.URL.Query().Get("done")})
}

// policiesPage renders the policies page on top of p (which may hold an action's error).
func (c *Console) policiesPage(w http.ResponseWriter, r *http.Request, p page) {
	v := policiesView{CanAct: c.canAct(r)}
	list, err := c.cfg.Policies.ListPolicies(r.Context(), &arbiterv1.ListPoliciesRequest{})
	if err != nil && p.Error == "" {
		p.Error = errText(err)
	}
	v.List = list
	if ch, err := c.cfg.Policies.ListPolicyChanges(r.Context(), &arbiterv1.ListPolicyChangesRequest{Limit: 20}); err == nil {
		v.Changes = ch.GetChanges()
	}
	v.From, v.To = r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if v.From != "" && v.To != "" && p.Error == "" {
		a, err := c.cfg.Policies.GetPolicy(r.Context(), &arbiterv1.GetPolicyRequest{Version: v.From})
		if err != nil {
			p.Error = errText(err)
		}
		b, err2 := c.cfg.Policies.GetPolicy(r.Context(), &arbiterv1.GetPolicyRequest{Version: v.To})
		if err2 != nil {
			p.Error = errText(err2)
		}
		if err == nil && err2 == nil {
			v.Diff = diffFiles(a.GetFiles(), b.GetFiles())
		}
	}
	p.Data = v
	c.render(w, "policies", p)
}

// canAct reports whether the caller may act (admin role, or no authentication).
func (c *Console) canAct(r *http.Request) bool {
	if c.cfg.Auth == nil {
		return true
	}
	id, ok := guard.ClientFromContext(r.Context())
	return ok && id.Has(guard.RoleAdmin)
}

func (c *Console) activate(w http.ResponseWriter, r *http.Request) {
	version := strings.TrimSpace(r.PostFormValue("version"))
	_, err := c.cfg.Policies.ActivatePolicy(r.Context(), &arbiterv1.ActivatePolicyRequest{
		Version: version, Comment: r.PostFormValue("comment"),
	})
	c.afterAction(w, r, "activated "+version, err)
}

func (c *Console) rollback(w http.ResponseWriter, r *http.Request) {
	_, err := c.cfg.Policies.RollbackPolicy(r.Context(), &arbiterv1.RollbackPolicyRequest{Comment: r.PostFormValue("comment")})
	c.afterAction(w, r, "rolled back", err)
}

// afterAction redirects to the policies page with what was done, or shows the error.
func (c *Console) afterAction(w http.ResponseWriter, r *http.Request, done string, err error) {
	if err != nil {
		c.policiesPage(w, r, page{Title: "Policy versions", Nav: "policies", Error: errText(err)})
		return
	}
	http.Redirect(w, r, "/policies?done="+url.QueryEscape(done), http.StatusSeeOther)
}

func (c *Console) shadow(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Shadow results", Nav: "shadow"}
	rep, err := c.cfg.Policies.GetShadowReport(r.Context(), &arbiterv1.GetShadowReportRequest{})
	if err != nil {
		p.Error = errText(err)
	}
	p.Data = rep
	c.render(w, "shadow", p)
}

func (c *Console) loadtests(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Load-test reports", Nav: "loadtests"}
	var reports []string
	if c.cfg.LoadTestDir == "" {
		p.Error = "no load-test report folder configured (--loadtest-reports)"
	} else {
		_ = fs.WalkDir(os.DirFS(c.cfg.LoadTestDir), ".", func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && filepath.Base(path) == "report.html" {
				reports = append(reports, path)
			}
			return nil
		})
		slices.Sort(reports)
	}
	p.Data = struct {
		Dir     string
		Reports []string
	}{c.cfg.LoadTestDir, reports}
	c.render(w, "loadtests", p)
}

// login keeps a browser's bearer token in an HttpOnly cookie.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		tok := strings.TrimSpace(r.PostFormValue("token"))
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: 12 * 3600})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.render(w, "login", page{Title: "Sign in", Nav: "login"})
}

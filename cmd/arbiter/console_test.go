package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arbiter-dev/arbiter/console"
	"github.com/arbiter-dev/arbiter/guard"
)

// TestServeOpenAPI: /openapi.json on the admin port lists every RPC, and each request example
// it carries is accepted by the server over Connect.
func TestServeOpenAPI(t *testing.T) {
	grpcAddr, httpAddr, _, _ := startServe(t)
	resp, err := http.Get("http://" + httpAddr + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]struct {
			Post struct {
				RequestBody struct {
					Content map[string]struct {
						Examples map[string]struct {
							Value json.RawMessage `json:"value"`
						} `json:"examples"`
					} `json:"content"`
				} `json:"requestBody"`
			} `json:"post"`
		} `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	if resp.StatusCode != http.StatusOK || doc.OpenAPI != "3.1.0" {
		t.Fatalf("GET /openapi.json = %d, openapi %q; want 200, 3.1.0", resp.StatusCode, doc.OpenAPI)
	}
	for _, rpc := range []string{"/arbiter.v1.DecisionService/Decide", "/arbiter.v1.DecisionService/GetDecision",
		"/arbiter.v1.FeatureService/GetCustomerState", "/arbiter.v1.PolicyService/ActivatePolicy"} {
		if _, ok := doc.Paths[rpc]; !ok {
			t.Errorf("/openapi.json has no path %s", rpc)
		}
	}
	examples, err := console.Examples()
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) == 0 {
		t.Fatal("no request examples")
	}
	for rpc, want := range examples {
		got := doc.Paths[rpc].Post.RequestBody.Content["application/json"].Examples["example"].Value
		if len(got) == 0 {
			t.Errorf("/openapi.json: %s has no example", rpc)
			continue
		}
		// The example is a request the server accepts: not INVALID_ARGUMENT (a GetDecision of
		// an id not stored here is NOT_FOUND).
		code, out := postConnect(t, grpcAddr, rpc, "", string(want))
		if code != http.StatusOK && out["code"] != "not_found" {
			t.Errorf("example of %s = %d %v, want it accepted", rpc, code, out)
		}
	}
}

// TestServeConsoleRoles: with tokens, the console needs the read role to see and the admin role
// to act; a browser signs in once (cookie); an action from another origin is refused.
func TestServeConsoleRoles(t *testing.T) {
	const adminTok, readTok = "arb_console-admin-0123456789", "arb_console-read-0123456789"
	tokens := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(tokens, []byte("clients:\n"+
		"- {name: ops, token_sha256: "+guard.HashToken(adminTok)+", roles: [admin, read]}\n"+
		"- {name: viewer, token_sha256: "+guard.HashToken(readTok)+", roles: [read]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, httpAddr, _, _ := startServe(t, "--auth-tokens", tokens)
	base := "http://" + httpAddr
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, token, cookie, origin string, form url.Values) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "arbiter_token", Value: cookie})
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location") + " " + string(b)
	}
	activate := url.Values{"version": {"2026.11.1"}, "comment": {"test"}}
	for _, tc := range []struct {
		name, method, path, token, cookie, origin string
		form                                      url.Values
		want                                      int
		wantIn                                    string
	}{
		{"no token: sign in", "GET", "/policies", "", "", "", nil, http.StatusSeeOther, "/login"},
		{"bad token", "GET", "/policies", "arb_wrong", "", "", nil, http.StatusUnauthorized, ""},
		{"read sees", "GET", "/policies", readTok, "", "", nil, http.StatusOK, "Read-only"},
		{"read by cookie", "GET", "/", "", readTok, "", nil, http.StatusOK, "Decision mix"},
		{"admin sees actions", "GET", "/policies", adminTok, "", "", nil, http.StatusOK, "Roll back"},
		{"read cannot act", "POST", "/policies/activate", readTok, "", "", activate, http.StatusForbidden, ""},
		{"no token cannot act", "POST", "/policies/activate", "", "", "", activate, http.StatusUnauthorized, ""},
		{"cross-origin refused", "POST", "/policies/activate", "", adminTok, "http://evil.example", activate, http.StatusForbidden, "cross-origin"},
		{"admin acts", "POST", "/policies/activate", "", adminTok, base, activate, http.StatusOK, "NotFound"},
		{"openapi open", "GET", "/openapi.json", "", "", "", nil, http.StatusOK, "openapi"},
		{"metrics still guarded", "GET", "/metrics", readTok, "", "", nil, http.StatusForbidden, ""},
	} {
		code, body := do(tc.method, tc.path, tc.token, tc.cookie, tc.origin, tc.form)
		if code != tc.want || !strings.Contains(body, tc.wantIn) {
			t.Errorf("%s: %s %s = %d %.200q, want %d with %q", tc.name, tc.method, tc.path, code, body, tc.want, tc.wantIn)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// screenshots, when set, makes TestConsoleInBrowser write a PNG of each page into docs/.
var screenshots = flag.Bool("screenshots", false, "write the console's screenshots into docs/")

// chromiumPath returns Debian's chromium (make test installs it), or skips the test when it is
// missing and ARBITER_REQUIRE_BROWSER is not set (make test sets it, so there it fails).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("ARBITER_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on the PATH: install Debian's chromium package (make chromium)")
	}
	t.Skip("no chromium on the PATH (make chromium installs it)")
	return ""
}

// browser starts a headless Chromium and returns a tab context and the page errors seen so far
// (uncaught exceptions, console.error, and the browser's own error log: failed loads, CSP
// violations).
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	var mu sync.Mutex
	var errs []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			errs = append(errs, "exception: "+ev.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				errs = append(errs, "console.error")
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				errs = append(errs, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	for _, enable := range []cdp.Command[cdp.Empty, cdp.Empty]{log.Enable, runtime.Enable} {
		if _, err := chromedp.Call(ctx, enable, cdp.Empty{}); err != nil {
			t.Fatalf("enable %s: %v", enable.Method, err)
		}
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// TestConsoleInBrowser drives the console in headless Chromium against a real server: every
// page loads without errors, a lookup renders the decision's explanation, and activating a
// version from the policies page changes the version that decides.
func TestConsoleInBrowser(t *testing.T) {
	reports := t.TempDir()
	if err := os.MkdirAll(filepath.Join(reports, "embedded"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(reports, "embedded", "report.html"),
		[]byte("<!doctype html><title>r</title><h1>Load test: embedded</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr, _, _ := startServe(t, "--loadtest-reports", reports)
	base := "http://" + httpAddr

	// Two published versions; the first active.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pol := arbiterv1.NewPolicyServiceClient(conn)
	for _, v := range []string{"1", "2"} {
		if _, err := pol.PublishPolicy(t.Context(), &arbiterv1.PublishPolicyRequest{Files: adminTestBundle(v, v == "2"), Comment: "version " + v}); err != nil {
			t.Fatalf("PublishPolicy %s: %v", v, err)
		}
	}
	if _, err := pol.ActivatePolicy(t.Context(), &arbiterv1.ActivatePolicyRequest{Version: "1", Comment: "start"}); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, grpcAddr, "1")
	// Version 2 in shadow on all traffic.
	if _, err := pol.SetShadowPolicy(t.Context(), &arbiterv1.SetShadowPolicyRequest{Version: "2", Share: 1, Comment: "try escalating"}); err != nil {
		t.Fatal(err)
	}
	waitShadow(t, grpcAddr, pol)

	// A decision with its explanation, made over Connect JSON.
	code, out := postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "",
		strings.Replace(sampleEvent, `"event": {`, `"options": {"explain": true}, "event": {`, 1))
	if code != http.StatusOK {
		t.Fatalf("Decide = %d %v", code, out)
	}
	decisionID := out["decisionId"].(string)

	ctx, pageErrors := browser(t)
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			if !*screenshots {
				return nil
			}
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join("..", "..", "docs", "console-"+name+".png"), png, 0o644)
		})
	}
	text := func(sel string, into *string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) (err error) {
			*into, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
			return err
		})
	}

	// Every page loads, with its heading, and without errors.
	for _, tc := range []struct{ name, path, heading string }{
		{"mix", "/", "Decision mix"},
		{"customer", "/customers?id=cust-123", "Customer state"},
		{"shadow", "/shadow", "Shadow results"},
		{"loadtests", "/loadtests", "Load-test reports"},
		{"diff", "/policies?from=1&to=2", "Policy versions"},
	} {
		var h1 string
		if err := chromedp.Do(ctx, chromedp.Navigate(base+tc.path), text("h1", &h1), shot(tc.name)); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if h1 != tc.heading {
			t.Errorf("%s: heading %q, want %q", tc.path, h1, tc.heading)
		}
	}
	var shadowText, reportsText, reportText string
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/shadow"), text("main", &shadowText),
		chromedp.Navigate(base+"/loadtests"), text("#reports", &reportsText),
		chromedp.Click(chromedp.CSS("#reports a")), text("h1", &reportText)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(shadowText, "Shadow 2") || !strings.Contains(shadowText, "ESCALATE") {
		t.Errorf("shadow page = %q, want version 2's results with ESCALATE", shadowText)
	}
	if reportsText != "embedded/report.html" || reportText != "Load test: embedded" {
		t.Errorf("load tests page lists %q and its link opens %q, want embedded/report.html and its heading", reportsText, reportText)
	}
	var mixText, diffText string
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), text("#mix", &mixText),
		chromedp.Navigate(base+"/policies?from=1&to=2"), text("pre.diff", &diffText)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mixText, "OVERDUE_REMINDER") {
		t.Errorf("mix table = %q, want the decision's reason OVERDUE_REMINDER", mixText)
	}
	if !strings.Contains(diffText, "+     action: ESCALATE") || !strings.Contains(diffText, "-     action: MESSAGE") {
		t.Errorf("diff 1 → 2 = %q, want MESSAGE removed and ESCALATE added", diffText)
	}

	// Lookup: type the id, submit, and read the explanation.
	var trace string
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/decisions"),
		chromedp.SendKeys(chromedp.CSS("#decision-id"), decisionID), chromedp.Click(chromedp.CSS("#lookup")),
		chromedp.WaitVisible(chromedp.CSS("#trace")), text("#trace", &trace), shot("decision")); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	for _, want := range []string{"rule", "overdue", "matched", "OVERDUE_REMINDER", "MESSAGE"} {
		if !strings.Contains(trace, want) {
			t.Errorf("explanation trace = %q, want it to show %q", trace, want)
		}
	}

	// Lookup by customer, then its decision (made without options.explain) from the list: the
	// trace is explained again by the policy that decided it.
	plainEvent := strings.Replace(strings.Replace(sampleEvent, "evt-0001", "evt-plain", 1), "cust-123", "cust-plain", 1)
	if code, out := postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "", plainEvent); code != http.StatusOK {
		t.Fatalf("Decide = %d %v", code, out)
	}
	var note string
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/decisions"),
		chromedp.SendKeys(chromedp.CSS("#customer-id"), "cust-plain"), chromedp.Submit(chromedp.CSS("#customer-id")),
		chromedp.WaitVisible(chromedp.CSS("#recent a")), chromedp.Click(chromedp.CSS("#recent a")),
		chromedp.WaitVisible(chromedp.CSS("#trace")), text("#trace", &trace), text("#trace-note", &note)); err != nil {
		t.Fatalf("lookup by customer: %v", err)
	}
	if !strings.Contains(note, "explained again by the policy") {
		t.Errorf("trace note of a decision made without explain = %q, want it explained again", note)
	}
	for _, want := range []string{"rule", "overdue", "matched", "won", "OVERDUE_REMINDER"} {
		if !strings.Contains(trace, want) {
			t.Errorf("explanation trace (explained again) = %q, want it to show %q", trace, want)
		}
	}

	// Activate version 2 from the page: the server then decides with it.
	var active string
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/policies"), shot("policies"),
		chromedp.SendKeys(chromedp.CSS("#comment-2"), "escalate overdue invoices"),
		chromedp.Click(chromedp.CSS("#activate-2")), chromedp.WaitVisible(chromedp.CSS("#notice"))); err != nil {
		t.Fatalf("activate from the page: %v", err)
	}
	var mainText string
	if err := chromedp.Do(ctx, text("main", &mainText)); err != nil || !strings.Contains(mainText, "activated 2") {
		t.Fatalf("after clicking Activate on version 2 the page reads %q (%v), want the notice \"activated 2\"", mainText, err)
	}
	if err := chromedp.Do(ctx, text("#active", &active)); err != nil {
		t.Fatal(err)
	}
	if active != "2" {
		t.Errorf("after activating 2 the page says %q is active", active)
	}
	waitVersion(t, grpcAddr, "2")
	_, out = postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "",
		strings.Replace(sampleEvent, "evt-0001", "evt-after-activation", 1))
	if out["action"] != "ACTION_ESCALATE" || out["policy"].(map[string]any)["version"] != "2" {
		t.Errorf("Decide after activation from the page = %v, want ESCALATE by version 2", out)
	}
	var changes string
	if err := chromedp.Do(ctx, text("#changes", &changes)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(changes, "ACTIVATE") || !strings.Contains(changes, "1 → 2") || !strings.Contains(changes, "escalate overdue invoices") {
		t.Errorf("change log = %q, want the activation 1 → 2", changes)
	}

	// Roll back from the page: version 1 decides again.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#rollback-comment"), "too many escalations"),
		chromedp.Click(chromedp.CSS("#rollback"))); err != nil {
		t.Fatalf("roll back from the page: %v", err)
	}
	// The page before had a notice too: wait for the new one.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var notice string
		if err := chromedp.Do(ctx, text("#notice", &notice)); err == nil && notice == "rolled back" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no \"rolled back\" notice within 10s of clicking Roll back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := chromedp.Do(ctx, text("#active", &active)); err != nil {
		t.Fatal(err)
	}
	if active != "1" {
		t.Errorf("after rolling back the page says %q is active, want 1", active)
	}
	waitVersion(t, grpcAddr, "1")

	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("page errors: %s", strings.Join(errs, "; "))
	}
}

// waitVersion waits until the server's /readyz... decides with version: it polls Decide in dry
// run until the answer's policy version is version.
func waitVersion(t *testing.T, grpcAddr, version string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		ev := strings.Replace(sampleEvent, `"event": {`, `"options": {"dryRun": true}, "event": {`, 1)
		ev = strings.Replace(ev, "evt-0001", fmt.Sprintf("evt-wait-%d", i), 1)
		_, out := postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "", ev)
		if p, ok := out["policy"].(map[string]any); ok && p["version"] == version {
			return
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(out)
			t.Fatalf("the server does not decide with version %s within 15s: %s", version, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitShadow waits until the server shadow-evaluates: it sends decisions until the shadow
// report has evaluated one.
func waitShadow(t *testing.T, grpcAddr string, pol arbiterv1.PolicyServiceClient) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		ev := strings.Replace(strings.Replace(sampleEvent, "evt-0001", fmt.Sprintf("evt-shadow-%d", i), 1), "cust-123", fmt.Sprintf("cust-shadow-%d", i), 1)
		postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "", ev)
		rep, err := pol.GetShadowReport(t.Context(), &arbiterv1.GetShadowReportRequest{})
		if err == nil && rep.GetEvaluated() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no shadow evaluation within 15s: %v, %v", rep, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

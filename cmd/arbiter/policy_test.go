package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runArbiter(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := func(string) string { return "" }
	err := run(context.Background(), args, env, strings.NewReader(stdin), &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestPolicyLintAndTest(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.yaml")
	good := `id: cli
version: "1"
rules:
  - {id: human, on: [INBOUND_CONTACT], priority: 1, action: ESCALATE, escalate: {queue: general}, reasons: [ROUTE_GENERAL]}
tests:
  - {name: routes callers, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE, queue: general}}
  - {name: wrong on purpose, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE, queue: fraud}}
`
	if err := os.WriteFile(bundle, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runArbiter(t, "", "policy", "lint", bundle)
	if err != nil || !strings.Contains(out, "ok: cli version 1") {
		t.Errorf("policy lint good = %q, %v; want ok and nil", out, err)
	}

	out, err = runArbiter(t, "", "policy", "test", bundle)
	if err == nil {
		t.Errorf("policy test with a failing case: error = nil, want non-nil")
	}
	for _, want := range []string{"PASS  routes callers", "FAIL  wrong on purpose", `escalate.queue = "general", want "fraud"`, "1 passed, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy test output = %q\nwant it to contain %q", out, want)
		}
	}
	out, err = runArbiter(t, "", "policy", "test", bundle, "-run", "routes")
	if err != nil || !strings.Contains(out, "1 passed, 0 failed") {
		t.Errorf("policy test -run routes = %q, %v; want 1 passed and nil", out, err)
	}

	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("id: b\nversion: \"1\"\nrules:\n  - id: bad\n    action: SUPPRESS\n    reasons: [X]\n    when: customer.nosuch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runArbiter(t, "", "policy", "lint", broken)
	if err == nil || !strings.Contains(out, "broken.yaml:7: rule bad:") {
		t.Errorf("policy lint broken = %q, %v; want the file, line and rule and an error", out, err)
	}
}

func TestPolicyTestDefault(t *testing.T) {
	out, err := runArbiter(t, "", "policy", "test", "default")
	if err != nil || !strings.Contains(out, " 0 failed") {
		t.Errorf("policy test default = ...%s, %v; want every case to pass", out[max(0, len(out)-200):], err)
	}
}

func TestPolicyDiff(t *testing.T) {
	dir := t.TempDir()
	newDir := filepath.Join(dir, "new")
	if err := os.CopyFS(newDir, os.DirFS("../../policies/default")); err != nil {
		t.Fatal(err)
	}
	// The new version refers arrears to collections from 30 days instead of 60.
	path := filepath.Join(newDir, "collections.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "features.days_past_due >= 60", "features.days_past_due >= 30", 1)
	if changed == string(b) {
		t.Fatal("collections.yaml no longer has the 60-day referral rule")
	}
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	events := `{"event": {"id": "e1", "type": "EVENT_TYPE_INBOUND_CONTACT", "occurredAt": "2026-03-10T12:00:00Z"}, "customer": {"id": "c1"}}
{"event": {"id": "e2", "type": "EVENT_TYPE_RISKY_LOGIN", "occurredAt": "2026-03-10T12:00:00Z"}, "customer": {"id": "c2", "timezone": "Europe/London"}}
{"event": {"id": "e3", "type": "EVENT_TYPE_PAYMENT_FAILED", "occurredAt": "2026-03-10T12:00:00Z", "payment": {"declineCode": "51", "network": "CARD_NETWORK_VISA", "cardRef": "tok", "amountMinor": "100", "currency": "GBP"}}, "customer": {"id": "c3", "timezone": "Europe/London"}}
`
	out, err := runArbiter(t, events, "policy", "diff", "default", newDir, "--events", "-")
	if err != nil {
		t.Fatalf("policy diff error = %v\n%s", err, out)
	}
	// The events carry no stored state (no days past due), so nothing changes.
	for _, want := range []string{"3 decisions, 0 changed", "ESCALATE -> ESCALATE", "RETRY -> RETRY", "MESSAGE -> MESSAGE"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy diff output = %s\nwant it to contain %q", out, want)
		}
	}

	// A change that does touch these events: risky logins escalate.
	sec := filepath.Join(newDir, "security.yaml")
	b, err = os.ReadFile(sec)
	if err != nil {
		t.Fatal(err)
	}
	changed = strings.Replace(string(b), "when: has(features.risk_score) && features.risk_score >= 0.8", "when: true", 1)
	if err := os.WriteFile(sec, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runArbiter(t, events, "policy", "diff", "default", newDir, "--events", "-")
	if err != nil {
		t.Fatalf("policy diff error = %v\n%s", err, out)
	}
	for _, want := range []string{"3 decisions, 1 changed", "1  MESSAGE -> ESCALATE", "HIGH_RISK_LOGIN", "e2 (RISKY_LOGIN)"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy diff output = %s\nwant it to contain %q", out, want)
		}
	}
}

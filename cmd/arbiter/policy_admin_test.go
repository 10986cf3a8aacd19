package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/server"
)

// adminTestBundle is a one-rule bundle of version that answers INVOICE_OVERDUE with an e-mail
// (or, with escalate, hands it to collections), with its test case.
func adminTestBundle(version string, escalate bool) map[string][]byte {
	rule := "    action: MESSAGE\n    message: {channels: [EMAIL], template: overdue_gentle, purpose: COLLECTIONS}\n    reasons: [OVERDUE_REMINDER]\n"
	expect := "{action: MESSAGE, channel: EMAIL, reasons: [OVERDUE_REMINDER]}"
	if escalate {
		rule = "    action: ESCALATE\n    escalate: {queue: collections, priority: 2}\n    reasons: [COLLECTIONS_REFERRAL]\n"
		expect = "{action: ESCALATE, queue: collections}"
	}
	return map[string][]byte{
		"bundle.yaml": []byte("id: cli-test\nversion: \"" + version + "\"\nrules:\n  - id: overdue\n    on: [INVOICE_OVERDUE]\n    priority: 100\n" + rule),
		"tests/cases.yaml": []byte(`tests:
  - name: overdue customer
    now: 2026-03-10T12:00:00Z
    event: {type: INVOICE_OVERDUE}
    customer: {id: c-1, timezone: Europe/London, preferred_channels: [EMAIL], consents: [{channel: ALL, purpose: COLLECTIONS, granted: true}]}
    expect: ` + expect + "\n"),
	}
}

func writeBundle(t *testing.T, files map[string][]byte) string {
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startPolicyServer serves a PolicyService over an in-memory policy store on a loopback port.
func startPolicyServer(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	server.NewPolicyService(policystore.NewMemory()).Register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}

func TestPolicyAdminCommands(t *testing.T) {
	addr := startPolicyServer(t)
	env := func(name string) string {
		if name == "ARBITER_ADDR" {
			return addr
		}
		return ""
	}
	v1 := writeBundle(t, adminTestBundle("1", false))
	v2 := writeBundle(t, adminTestBundle("2", true))
	steps := []struct {
		args    []string
		wantErr string
		want    []string // parts of the output
	}{
		{args: []string{"publish", v1, "--comment", "first"}, want: []string{"published cli-test version 1", "1 test cases passed"}},
		{args: []string{"publish", v1, "--comment", "again"}, want: []string{"already published"}},
		{args: []string{"publish", "--comment", "second", v2}, want: []string{"published cli-test version 2"}},
		{args: []string{"publish", v2}, wantErr: "comment"},
		{args: []string{"activate", "1", "--comment", "launch"}, want: []string{"activate: - → 1"}},
		{args: []string{"activate", "2", "--comment", "escalate overdue"}, want: []string{"activate: 1 → 2"}},
		{args: []string{"list"}, want: []string{"*  2", "cli-test", "first"}},
		{args: []string{"shadow", "1", "--share", "0.25", "--comment", "compare"}, want: []string{"shadow: 1 on 0.25"}},
		{args: []string{"shadow-report"}, want: []string{"shadow 1 on 0.25", "evaluated 0"}},
		{args: []string{"rollback", "--comment", "too many calls"}, want: []string{"rollback: 2 → 1"}},
		{args: []string{"rollback", "--comment", "again"}, wantErr: "FailedPrecondition"},
		{args: []string{"show", "2", "--files"}, want: []string{"version:    2", "comment:    second", "--- bundle.yaml", "tests/cases.yaml"}},
		{args: []string{"log", "--limit", "3"}, want: []string{"rollback", "too many calls", "shadow 0.25", "activate"}},
		{args: []string{"activate"}, wantErr: "VERSION"},
	}
	for _, st := range steps {
		var out, errOut bytes.Buffer
		handled, err := runPolicyAdmin(context.Background(), st.args, env, &out, &errOut)
		if !handled {
			t.Fatalf("runPolicyAdmin(%q) not handled", st.args)
		}
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Errorf("runPolicyAdmin(%q) error = %v, want one mentioning %q", st.args, err, st.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("runPolicyAdmin(%q) = %v\n%s", st.args, err, errOut.String())
		}
		for _, w := range st.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("runPolicyAdmin(%q) output:\n%s\nwant it to contain %q", st.args, out.String(), w)
			}
		}
	}
	if handled, _ := runPolicyAdmin(context.Background(), []string{"lint"}, env, &bytes.Buffer{}, &bytes.Buffer{}); handled {
		t.Errorf("runPolicyAdmin(lint) handled, want it left to the local policy tools")
	}
}

func TestReplayCommand(t *testing.T) {
	ctx := context.Background()
	addr := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })

	// Publish two versions and record decisions under the first.
	policies := policystore.NewRedis(rdb)
	var made *decision.Policy
	for _, v := range []string{"1", "2"} {
		files := adminTestBundle(v, v == "2")
		p, err := decision.ParsePolicy(files)
		if err != nil {
			t.Fatal(err)
		}
		if v == "1" {
			made = p
		}
		ref := p.Ref()
		if _, _, err := policies.PublishPolicy(ctx, policystore.Bundle{
			PolicyVersion: policystore.PolicyVersion{ID: ref.ID, Version: ref.Version, Digest: ref.Digest}, Files: files}); err != nil {
			t.Fatal(err)
		}
	}
	now := func() time.Time { return time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC) }
	srv := server.New(featurestore.NewRedis(rdb, featurestore.WithClock(now)), rollout.NewHolder(made), server.WithClock(now),
		server.WithStoreBudget(server.Budget{Max: 5 * time.Second, Fraction: 1}))
	const n = 5
	for i := range n {
		_, err := srv.Decide(ctx, &arbiterv1.DecideRequest{
			Event: &arbiterv1.Event{Id: fmt.Sprintf("evt-%d", i), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE},
			Customer: &arbiterv1.Customer{Id: fmt.Sprintf("cust-%d", i), Timezone: "Europe/London",
				PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_EMAIL},
				Consents:          []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"same version", []string{"--version", "1"}, []string{"replayed 5 recorded decisions under cli-test 1", "same     5 (100.0%)", "changed  0"}},
		{"other version", []string{"--version", "2", "--examples", "1"}, []string{"changed  5 (100.0%)", "MESSAGE → ESCALATE", "COLLECTIONS_REFERRAL", "recorded: MESSAGE channel=EMAIL"}},
		{"json", []string{"--version", "2", "--json"}, []string{`"changed": 5`, `"recorded": "MESSAGE"`, `"replayed": "ESCALATE"`}},
		{"filtered out", []string{"--version", "2", "--event-type", "PAYMENT_FAILED"}, []string{"replayed 0 recorded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--redis", addr}, tc.args...)
			if err := runReplay(ctx, args, func(string) string { return "" }, nil, &out, &errOut); err != nil {
				t.Fatalf("runReplay(%q) = %v\n%s", args, err, errOut.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("runReplay(%q) output:\n%s\nwant it to contain %q", args, out.String(), w)
				}
			}
		})
	}
}

// TestPolicyAdminToken: the governance commands send ARBITER_TOKEN as the bearer token, and
// their usage does not print it.
func TestPolicyAdminToken(t *testing.T) {
	const token = "adm-s3cret"
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, _ := metadata.FromIncomingContext(ctx); strings.Join(md.Get("authorization"), ",") != "Bearer "+token {
			return nil, status.Error(codes.Unauthenticated, "no token")
		}
		return h(ctx, req)
	}))
	server.NewPolicyService(policystore.NewMemory()).Register(gs)
	go gs.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(gs.Stop)
	env := func(name string) string {
		switch name {
		case "ARBITER_ADDR":
			return lis.Addr().String()
		case "ARBITER_TOKEN":
			return token
		}
		return ""
	}
	var out, errOut bytes.Buffer
	if _, err := runPolicyAdmin(context.Background(), []string{"list"}, env, &out, &errOut); err != nil {
		t.Errorf("arbiter policy list with ARBITER_TOKEN = %v, want the token sent", err)
	}
	out.Reset()
	errOut.Reset()
	_, _ = runPolicyAdmin(context.Background(), []string{"list", "--help"}, env, &out, &errOut)
	if !strings.Contains(out.String(), "-token") || strings.Contains(out.String()+errOut.String(), token) {
		t.Errorf("arbiter policy list --help printed:\n%s\nwant the -token flag, and not ARBITER_TOKEN's value", out.String()+errOut.String())
	}
}

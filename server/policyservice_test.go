package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/policystore"
)

// govNow dates the governance tests' changes.
var govNow = time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC)

// govRule is a one-rule answer to INVOICE_OVERDUE, by kind.
var govRules = map[string]struct{ rule, expect string }{
	"message": {
		rule: `    action: MESSAGE
    message: {channels: [EMAIL], template: overdue_gentle, purpose: COLLECTIONS}
    reasons: [OVERDUE_REMINDER]`,
		expect: `{action: MESSAGE, channel: EMAIL, reasons: [OVERDUE_REMINDER]}`,
	},
	"escalate": {
		rule: `    action: ESCALATE
    escalate: {queue: collections, priority: 2}
    reasons: [COLLECTIONS_REFERRAL]`,
		expect: `{action: ESCALATE, queue: collections, reasons: [COLLECTIONS_REFERRAL]}`,
	},
}

// govBundle is a small bundle of the given version whose one rule answers INVOICE_OVERDUE
// with kind ("message" or "escalate"), with one test case that expects it.
func govBundle(version, kind string) map[string][]byte {
	r := govRules[kind]
	return map[string][]byte{
		"bundle.yaml": []byte(`id: gov-test
version: "` + version + `"
rules:
  - id: overdue
    on: [INVOICE_OVERDUE]
    priority: 100
` + r.rule + "\n"),
		"tests/cases.yaml": []byte(`tests:
  - name: overdue customer
    now: 2026-03-10T12:00:00Z
    event: {type: INVOICE_OVERDUE}
    customer: {id: c-1, timezone: Europe/London, preferred_channels: [EMAIL], consents: [{channel: ALL, purpose: COLLECTIONS, granted: true}]}
    expect: ` + r.expect + "\n"),
	}
}

func newTestPolicyService(store PolicyAdminStore) *PolicyService {
	return NewPolicyService(store, WithPolicyClock(func() time.Time { return govNow }))
}

func asClient(name string) context.Context {
	return guard.ContextWithClient(context.Background(), guard.Identity{Name: name, Roles: []guard.Role{guard.RoleAdmin}})
}

func TestPublishPolicy(t *testing.T) {
	svc := newTestPolicyService(policystore.NewMemory())
	ctx := asClient("alice")
	brokenCEL := govBundle("2", "message")
	brokenCEL["bundle.yaml"] = []byte(strings.Replace(string(brokenCEL["bundle.yaml"]), "priority: 100", "priority: 100\n    when: features.days_past_due >", 1))
	failingCase := govBundle("3", "message")
	failingCase["tests/cases.yaml"] = govBundle("3", "escalate")["tests/cases.yaml"]
	noTests := govBundle("4", "message")
	delete(noTests, "tests/cases.yaml")
	changed := govBundle("1", "escalate")

	tests := []struct {
		name        string
		files       map[string][]byte
		comment     string
		wantCode    codes.Code
		wantMsg     string // a part of the status message
		wantCreated bool
	}{
		{name: "compiles and passes its cases", files: govBundle("1", "message"), comment: "first", wantCode: codes.OK, wantCreated: true},
		{name: "same content again is a no-op", files: govBundle("1", "message"), comment: "again", wantCode: codes.OK},
		{name: "same version with other content", files: changed, comment: "x", wantCode: codes.AlreadyExists, wantMsg: "bump the bundle's version"},
		{name: "compile error", files: brokenCEL, comment: "x", wantCode: codes.InvalidArgument, wantMsg: "bundle.yaml"},
		{name: "failing case", files: failingCase, comment: "x", wantCode: codes.FailedPrecondition, wantMsg: `case "overdue customer"`},
		{name: "no test cases", files: noTests, comment: "x", wantCode: codes.FailedPrecondition, wantMsg: "no test cases"},
		{name: "no comment", files: govBundle("5", "message"), comment: "  ", wantCode: codes.InvalidArgument, wantMsg: "comment"},
		{name: "no files", comment: "x", wantCode: codes.InvalidArgument, wantMsg: "files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := svc.PublishPolicy(ctx, &arbiterv1.PublishPolicyRequest{Files: tc.files, Comment: tc.comment})
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("PublishPolicy() code = %v (%v), want %v", got, err, tc.wantCode)
			}
			if err != nil {
				if !strings.Contains(status.Convert(err).Message(), tc.wantMsg) {
					t.Errorf("PublishPolicy() message = %q, want it to contain %q", status.Convert(err).Message(), tc.wantMsg)
				}
				return
			}
			if resp.GetCreated() != tc.wantCreated {
				t.Errorf("PublishPolicy().Created = %v, want %v", resp.GetCreated(), tc.wantCreated)
			}
			want := &arbiterv1.PolicyVersion{Id: "gov-test", Version: "1", Author: "alice", CreatedAt: ts(govNow), Comment: "first", TestCases: 1}
			if diff := cmp.Diff(want, resp.GetVersion(), protocmp.Transform(), protocmp.IgnoreFields(&arbiterv1.PolicyVersion{}, "digest")); diff != "" {
				t.Errorf("PublishPolicy().Version mismatch (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(resp.GetVersion().GetDigest(), "sha256:") {
				t.Errorf("PublishPolicy().Version.Digest = %q, want a sha256 digest", resp.GetVersion().GetDigest())
			}
		})
	}
	list, err := svc.ListPolicies(ctx, &arbiterv1.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetVersions()) != 1 {
		t.Errorf("ListPolicies() = %d versions, want only the one accepted", len(list.GetVersions()))
	}
}

func TestPolicyLifecycle(t *testing.T) {
	svc := newTestPolicyService(policystore.NewMemory())
	for _, v := range []string{"1", "2", "3"} {
		if _, err := svc.PublishPolicy(asClient("author"), &arbiterv1.PublishPolicyRequest{Files: govBundle(v, "message"), Comment: "v" + v}); err != nil {
			t.Fatalf("PublishPolicy(%s): %v", v, err)
		}
	}
	type step struct {
		name     string
		call     func(ctx context.Context) (*arbiterv1.PolicyChange, error)
		wantCode codes.Code
		want     *arbiterv1.PolicyChange
	}
	activate := func(v, comment string) func(ctx context.Context) (*arbiterv1.PolicyChange, error) {
		return func(ctx context.Context) (*arbiterv1.PolicyChange, error) {
			r, err := svc.ActivatePolicy(ctx, &arbiterv1.ActivatePolicyRequest{Version: v, Comment: comment})
			return r.GetChange(), err
		}
	}
	rollback := func(comment string) func(ctx context.Context) (*arbiterv1.PolicyChange, error) {
		return func(ctx context.Context) (*arbiterv1.PolicyChange, error) {
			r, err := svc.RollbackPolicy(ctx, &arbiterv1.RollbackPolicyRequest{Comment: comment})
			return r.GetChange(), err
		}
	}
	const (
		activateKind = arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_ACTIVATE
		rollbackKind = arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_ROLLBACK
	)
	steps := []step{
		{name: "rollback before any activation", call: rollback("undo"), wantCode: codes.FailedPrecondition},
		{name: "activate an unknown version", call: activate("9", "go"), wantCode: codes.NotFound},
		{name: "activate without a comment", call: activate("1", ""), wantCode: codes.InvalidArgument},
		{name: "activate without a version", call: activate("", "go"), wantCode: codes.InvalidArgument},
		{name: "activate 1", call: activate("1", "launch"),
			want: &arbiterv1.PolicyChange{Kind: activateKind, Actor: "alice", ToVersion: "1", Comment: "launch"}},
		{name: "activate 2", call: activate("2", "new reminder"),
			want: &arbiterv1.PolicyChange{Kind: activateKind, Actor: "bob", FromVersion: "1", ToVersion: "2", Comment: "new reminder"}},
		{name: "activate 2 again", call: activate("2", "again"), wantCode: codes.FailedPrecondition},
		{name: "activate 3", call: activate("3", "tweak"),
			want: &arbiterv1.PolicyChange{Kind: activateKind, Actor: "carol", FromVersion: "2", ToVersion: "3", Comment: "tweak"}},
		{name: "rollback to 2", call: rollback("complaints"),
			want: &arbiterv1.PolicyChange{Kind: rollbackKind, Actor: "dave", FromVersion: "3", ToVersion: "2", Comment: "complaints"}},
		{name: "rollback to 1", call: rollback("still wrong"),
			want: &arbiterv1.PolicyChange{Kind: rollbackKind, Actor: "erin", FromVersion: "2", ToVersion: "1", Comment: "still wrong"}},
		{name: "rollback past the first", call: rollback("more"), wantCode: codes.FailedPrecondition},
	}
	actors := map[string]string{"activate 1": "alice", "activate 2": "bob", "activate 3": "carol", "rollback to 2": "dave", "rollback to 1": "erin"}
	var log []*arbiterv1.PolicyChange
	for _, st := range steps {
		got, err := st.call(asClient(govOr(actors[st.name], "mallory")))
		if code := status.Code(err); code != st.wantCode {
			t.Fatalf("%s: code = %v (%v), want %v", st.name, code, err, st.wantCode)
		}
		if st.want == nil {
			continue
		}
		st.want.At = ts(govNow)
		if diff := cmp.Diff(st.want, got, protocmp.Transform(), protocmp.IgnoreFields(&arbiterv1.PolicyChange{}, "id")); diff != "" {
			t.Errorf("%s: change mismatch (-want +got):\n%s", st.name, diff)
		}
		log = append([]*arbiterv1.PolicyChange{got}, log...)
	}

	list, err := svc.ListPolicies(asClient("x"), &arbiterv1.ListPoliciesRequest{})
	if err != nil || list.GetActiveVersion() != "1" {
		t.Errorf("ListPolicies().ActiveVersion = %q, %v; want 1 after two rollbacks", list.GetActiveVersion(), err)
	}
	changes, err := svc.ListPolicyChanges(asClient("x"), &arbiterv1.ListPolicyChangesRequest{Limit: int32(len(log))})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(log, changes.GetChanges(), protocmp.Transform()); diff != "" {
		t.Errorf("ListPolicyChanges() mismatch, want newest first with who, when, from, to and why (-want +got):\n%s", diff)
	}
	all, err := svc.ListPolicyChanges(asClient("x"), &arbiterv1.ListPolicyChangesRequest{})
	if err != nil || len(all.GetChanges()) != len(log)+3 {
		t.Errorf("ListPolicyChanges(all) = %d changes, %v; want %d (the activations and 3 publications)", len(all.GetChanges()), err, len(log)+3)
	}
	if _, err := svc.ListPolicyChanges(asClient("x"), &arbiterv1.ListPolicyChangesRequest{Limit: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListPolicyChanges(limit -1) code = %v, want InvalidArgument", status.Code(err))
	}

	show, err := svc.GetPolicy(asClient("x"), &arbiterv1.GetPolicyRequest{Version: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(govBundle("2", "message"), show.GetFiles()); diff != "" {
		t.Errorf("GetPolicy(2).Files mismatch (-want +got):\n%s", diff)
	}
	if show.GetVersion().GetAuthor() != "author" || show.GetVersion().GetComment() != "v2" {
		t.Errorf("GetPolicy(2).Version = %v, want author \"author\", comment \"v2\"", show.GetVersion())
	}
	if _, err := svc.GetPolicy(asClient("x"), &arbiterv1.GetPolicyRequest{Version: "9"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetPolicy(9) code = %v, want NotFound", status.Code(err))
	}
}

func TestSetShadowPolicyValidation(t *testing.T) {
	svc := newTestPolicyService(policystore.NewMemory())
	if _, err := svc.PublishPolicy(asClient("a"), &arbiterv1.PublishPolicyRequest{Files: govBundle("1", "message"), Comment: "c"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *arbiterv1.SetShadowPolicyRequest
		want codes.Code
	}{
		{"valid", &arbiterv1.SetShadowPolicyRequest{Version: "1", Share: 0.1, Comment: "try"}, codes.OK},
		{"zero share", &arbiterv1.SetShadowPolicyRequest{Version: "1", Share: 0, Comment: "try"}, codes.InvalidArgument},
		{"share above 1", &arbiterv1.SetShadowPolicyRequest{Version: "1", Share: 1.5, Comment: "try"}, codes.InvalidArgument},
		{"unknown version", &arbiterv1.SetShadowPolicyRequest{Version: "9", Share: 1, Comment: "try"}, codes.NotFound},
		{"no comment", &arbiterv1.SetShadowPolicyRequest{Version: "1", Share: 1}, codes.InvalidArgument},
		{"stop", &arbiterv1.SetShadowPolicyRequest{Comment: "done"}, codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := svc.SetShadowPolicy(asClient("a"), tc.req); status.Code(err) != tc.want {
				t.Errorf("SetShadowPolicy(%v) code = %v (%v), want %v", tc.req, status.Code(err), err, tc.want)
			}
		})
	}
}

func govOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

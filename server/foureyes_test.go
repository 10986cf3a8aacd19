package server

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
)

// TestFourEyesActivation: with WithRequireApproval, on the embedded and the Redis policy
// store, an unapproved version is not activated, its author cannot approve it, a second
// identity can, and the change log records author, approver and activator with their times.
// Without it, the author activates at once, as before.
func TestFourEyesActivation(t *testing.T) {
	stores := map[string]func(t *testing.T) PolicyAdminStore{
		"memory": func(t *testing.T) PolicyAdminStore { return policystore.NewMemory() },
		"redis": func(t *testing.T) PolicyAdminStore {
			return policystore.NewRedis(newRedisClientForTest(t, redistest.Start(t)))
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			svc := NewPolicyService(store, WithPolicyClock(func() time.Time { return govNow }), WithRequireApproval(true))
			if _, err := svc.PublishPolicy(asClient("alice"), &arbiterv1.PublishPolicyRequest{Files: govBundle("1", "message"), Comment: "v1"}); err != nil {
				t.Fatal(err)
			}
			activate := func(who string) error {
				_, err := svc.ActivatePolicy(asClient(who), &arbiterv1.ActivatePolicyRequest{Version: "1", Comment: "go"})
				return err
			}
			if err := activate("alice"); status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("activating an unapproved version = %v, want FAILED_PRECONDITION", err)
			}
			_, err := svc.ApprovePolicy(asClient("alice"), &arbiterv1.ApprovePolicyRequest{Version: "1", Comment: "mine"})
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("the author approving = %v, want PERMISSION_DENIED", err)
			}
			if err := activate("alice"); status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("activating after the author's refused approval = %v, want FAILED_PRECONDITION", err)
			}
			if _, err := svc.ApprovePolicy(asClient("bob"), &arbiterv1.ApprovePolicyRequest{Version: "2", Comment: "x"}); status.Code(err) != codes.NotFound {
				t.Errorf("approving an unpublished version = %v, want NOT_FOUND", err)
			}
			ap, err := svc.ApprovePolicy(asClient("bob"), &arbiterv1.ApprovePolicyRequest{Version: "1", Comment: "reviewed the diff"})
			if err != nil {
				t.Fatalf("a second identity approving = %v", err)
			}
			if ap.GetChange().GetKind() != arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_APPROVE || ap.GetChange().GetActor() != "bob" {
				t.Errorf("approval change = %v", ap.GetChange())
			}
			if err := activate("alice"); err != nil {
				t.Fatalf("activating an approved version = %v", err)
			}
			log, err := svc.ListPolicyChanges(asClient("carol"), &arbiterv1.ListPolicyChangesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			who := map[arbiterv1.PolicyChangeKind]string{}
			for _, c := range log.GetChanges() {
				if c.GetToVersion() == "1" && c.GetAt() != nil {
					who[c.GetKind()] = c.GetActor()
				}
			}
			want := map[arbiterv1.PolicyChangeKind]string{
				arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_PUBLISH:  "alice",
				arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_APPROVE:  "bob",
				arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_ACTIVATE: "alice",
			}
			for k, v := range want {
				if who[k] != v {
					t.Errorf("change log %v by %q, want %q (log: %v)", k, who[k], v, log.GetChanges())
				}
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		svc := newTestPolicyService(policystore.NewMemory())
		if _, err := svc.PublishPolicy(asClient("alice"), &arbiterv1.PublishPolicyRequest{Files: govBundle("1", "message"), Comment: "v1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ActivatePolicy(asClient("alice"), &arbiterv1.ActivatePolicyRequest{Version: "1", Comment: "go"}); err != nil {
			t.Errorf("without four eyes the author activating = %v, want OK", err)
		}
	})
}

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// PolicyAdminStore is what the PolicyService needs from the policy store; both featurestore
// policy stores satisfy it.
type PolicyAdminStore interface {
	PublishPolicy(ctx context.Context, b policystore.Bundle) (policystore.PolicyVersion, bool, error)
	PolicyVersions(ctx context.Context) ([]policystore.PolicyVersion, error)
	Bundle(ctx context.Context, version string) (policystore.Bundle, error)
	ActivePolicy(ctx context.Context) (string, error)
	ActivatePolicy(ctx context.Context, c policystore.Change) (policystore.Change, error)
	ApprovePolicy(ctx context.Context, c policystore.Change) (policystore.Change, error)
	RollbackPolicy(ctx context.Context, c policystore.Change) (policystore.Change, error)
	SetShadowPolicy(ctx context.Context, c policystore.Change) (policystore.Change, error)
	ShadowPolicy(ctx context.Context) (policystore.ShadowConfig, error)
	PolicyChanges(ctx context.Context, limit int) ([]policystore.Change, error)
	ShadowReport(ctx context.Context) (policystore.ShadowReport, error)
}

var (
	_ PolicyAdminStore = (*policystore.Redis)(nil)
	_ PolicyAdminStore = (*policystore.Memory)(nil)
)

// Limits of PolicyService requests.
const (
	maxCommentBytes   = 1024
	maxPolicyChanges  = 1000
	anonymousActor    = "unauthenticated"
	maxVersionBytes   = 128
	maxFailureDetails = 3
)

// errNoTestCases refuses a bundle that ships no test case.
var errNoTestCases = rpcstatus.FailedPrecondition("policy refused: the bundle has no test cases (add tests/*.yaml)")

// PolicyService implements arbiterv1.PolicyServiceServer over a policy store: publish
// (compile and test before storing), list, activate, roll back, show, the change log and
// shadow evaluation. Replicas follow the store through a PolicySync. The authentication
// interceptor guards it with the admin role; the caller's identity is the change's actor.
// Create it with NewPolicyService; it is safe for concurrent use.
type PolicyService struct {
	arbiterv1.UnimplementedPolicyServiceServer

	store           PolicyAdminStore
	clock           func() time.Time
	logger          *slog.Logger
	requireApproval bool
}

// PolicyServiceOption configures a PolicyService.
type PolicyServiceOption func(*PolicyService)

// WithPolicyClock sets the clock that dates publications and changes (default time.Now).
func WithPolicyClock(now func() time.Time) PolicyServiceOption {
	return func(p *PolicyService) { p.clock = now }
}

// WithRequireApproval turns on four-eyes activation: ActivatePolicy refuses a version until an
// identity other than its author approved it (ApprovePolicy). Rollbacks, which only return to a
// version that was active before, are not held back.
func WithRequireApproval(on bool) PolicyServiceOption {
	return func(p *PolicyService) { p.requireApproval = on }
}

// WithPolicyLogger sets the logger of policy changes and internal errors (default: discard).
func WithPolicyLogger(l *slog.Logger) PolicyServiceOption {
	return func(p *PolicyService) { p.logger = l }
}

// NewPolicyService returns a PolicyService over store.
func NewPolicyService(store PolicyAdminStore, opts ...PolicyServiceOption) *PolicyService {
	p := &PolicyService{store: store, clock: time.Now, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

// Register registers the policy service on r.
func (p *PolicyService) Register(r grpc.ServiceRegistrar) {
	arbiterv1.RegisterPolicyServiceServer(r, p)
}

// PublishPolicy compiles the bundle, runs its own test cases and stores it as a new version.
func (p *PolicyService) PublishPolicy(ctx context.Context, req *arbiterv1.PublishPolicyRequest) (*arbiterv1.PublishPolicyResponse, error) {
	if len(req.GetFiles()) == 0 {
		return nil, p.toStatus(ctx, "PublishPolicy", rpcstatus.Invalid("files", "required"))
	}
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "PublishPolicy", err)
	}
	pol, err := decision.ParsePolicy(req.GetFiles())
	if err != nil {
		return nil, p.toStatus(ctx, "PublishPolicy", bundleRefused(err))
	}
	ref := pol.Ref()
	if ref.Version == "" || len(ref.Version) > maxVersionBytes || strings.ContainsAny(ref.Version, " \t\n:{}") {
		return nil, p.toStatus(ctx, "PublishPolicy", rpcstatus.Invalid("files", "the bundle's version must be 1 to 128 characters without spaces, ':' or braces"))
	}
	n, err := runBundleTests(ctx, pol)
	if err != nil {
		return nil, p.toStatus(ctx, "PublishPolicy", err)
	}
	v, created, err := p.store.PublishPolicy(ctx, policystore.Bundle{
		PolicyVersion: policystore.PolicyVersion{
			ID: ref.ID, Version: ref.Version, Digest: ref.Digest, Author: actor(ctx),
			CreatedAt: p.clock(), Comment: req.GetComment(), TestCases: n,
		},
		Files: req.GetFiles(),
	})
	if err != nil {
		return nil, p.toStatus(ctx, "PublishPolicy", err)
	}
	if created {
		p.logger.LogAttrs(ctx, slog.LevelInfo, "policy published", slog.String("version", v.Version),
			slog.String("digest", v.Digest), slog.String("actor", v.Author))
	}
	return &arbiterv1.PublishPolicyResponse{Version: toPolicyVersion(v), Created: created}, nil
}

// runBundleTests runs the bundle's own test cases and returns how many passed, or an error
// naming the first failures.
func runBundleTests(ctx context.Context, pol *decision.Policy) (int, error) {
	results := pol.RunTests(ctx)
	if len(results) == 0 {
		return 0, errNoTestCases
	}
	var failed []string
	for _, r := range results {
		if r.Passed() {
			continue
		}
		if len(failed) < maxFailureDetails {
			failed = append(failed, fmt.Sprintf("case %q (%s): %s", r.Case.Name, r.Case.File, strings.Join(r.Failures, "; ")))
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	if n := countFailed(results); n > 0 {
		return 0, testsFailed(n, len(results), failed)
	}
	return len(results), nil
}

func countFailed(rs []decision.TestResult) int {
	n := 0
	for _, r := range rs {
		if !r.Passed() {
			n++
		}
	}
	return n
}

// ListPolicies lists the published versions, newest first, with the active and shadow ones.
func (p *PolicyService) ListPolicies(ctx context.Context, _ *arbiterv1.ListPoliciesRequest) (*arbiterv1.ListPoliciesResponse, error) {
	vs, err := p.store.PolicyVersions(ctx)
	if err != nil {
		return nil, p.toStatus(ctx, "ListPolicies", err)
	}
	active, err := p.store.ActivePolicy(ctx)
	if err != nil {
		return nil, p.toStatus(ctx, "ListPolicies", err)
	}
	shadow, err := p.store.ShadowPolicy(ctx)
	if err != nil {
		return nil, p.toStatus(ctx, "ListPolicies", err)
	}
	resp := &arbiterv1.ListPoliciesResponse{ActiveVersion: active, ShadowVersion: shadow.Version, ShadowShare: shadow.Share}
	for _, v := range vs {
		resp.Versions = append(resp.Versions, toPolicyVersion(v))
	}
	return resp, nil
}

// ActivatePolicy makes a published version the one every replica serves.
func (p *PolicyService) ActivatePolicy(ctx context.Context, req *arbiterv1.ActivatePolicyRequest) (*arbiterv1.ActivatePolicyResponse, error) {
	if req.GetVersion() == "" {
		return nil, p.toStatus(ctx, "ActivatePolicy", rpcstatus.Invalid("version", "required"))
	}
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "ActivatePolicy", err)
	}
	if p.requireApproval {
		if err := p.approved(ctx, req.GetVersion()); err != nil {
			return nil, p.toStatus(ctx, "ActivatePolicy", err)
		}
	}
	c, err := p.store.ActivatePolicy(ctx, policystore.Change{
		To: req.GetVersion(), Actor: actor(ctx), At: p.clock(), Comment: req.GetComment(),
	})
	if err != nil {
		err = versionNotFound(err, req.GetVersion())
		return nil, p.toStatus(ctx, "ActivatePolicy", err)
	}
	p.logChange(ctx, c)
	return &arbiterv1.ActivatePolicyResponse{Change: toPolicyChange(c)}, nil
}

// ApprovePolicy records the caller's approval of a published version, which
// WithRequireApproval makes a condition of its activation. The version's author cannot approve
// it.
func (p *PolicyService) ApprovePolicy(ctx context.Context, req *arbiterv1.ApprovePolicyRequest) (*arbiterv1.ApprovePolicyResponse, error) {
	if req.GetVersion() == "" {
		return nil, p.toStatus(ctx, "ApprovePolicy", rpcstatus.Invalid("version", "required"))
	}
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "ApprovePolicy", err)
	}
	b, err := p.store.Bundle(ctx, req.GetVersion())
	if err != nil {
		return nil, p.toStatus(ctx, "ApprovePolicy", versionNotFound(err, req.GetVersion()))
	}
	who := actor(ctx)
	if who == anonymousActor {
		return nil, p.toStatus(ctx, "ApprovePolicy", rpcstatus.PermissionDenied(
			"approving a policy version needs an authenticated identity (--auth-tokens)"))
	}
	if who == b.Author {
		return nil, p.toStatus(ctx, "ApprovePolicy", rpcstatus.PermissionDenied(
			"policy version "+req.GetVersion()+" was published by "+who+": a second identity must approve it"))
	}
	c, err := p.store.ApprovePolicy(ctx, policystore.Change{To: req.GetVersion(), Actor: who, At: p.clock(), Comment: req.GetComment()})
	if err != nil {
		return nil, p.toStatus(ctx, "ApprovePolicy", versionNotFound(err, req.GetVersion()))
	}
	p.logChange(ctx, c)
	return &arbiterv1.ApprovePolicyResponse{Change: toPolicyChange(c)}, nil
}

// approved returns nil when version was approved by an identity other than its author, and
// FAILED_PRECONDITION naming what is missing otherwise.
func (p *PolicyService) approved(ctx context.Context, version string) error {
	b, err := p.store.Bundle(ctx, version)
	if err != nil {
		return versionNotFound(err, version)
	}
	changes, err := p.store.PolicyChanges(ctx, maxPolicyChanges)
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.Kind == policystore.ChangeApprove && c.To == version && c.Actor != b.Author && c.Actor != anonymousActor {
			return nil
		}
	}
	return rpcstatus.FailedPrecondition("policy version " + version + " is not approved: with --require-approval an identity other than its author (" +
		b.Author + ") must approve it first (arbiter policy approve " + version + ")")
}

// RollbackPolicy re-activates the version active before the current one.
func (p *PolicyService) RollbackPolicy(ctx context.Context, req *arbiterv1.RollbackPolicyRequest) (*arbiterv1.RollbackPolicyResponse, error) {
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "RollbackPolicy", err)
	}
	c, err := p.store.RollbackPolicy(ctx, policystore.Change{Actor: actor(ctx), At: p.clock(), Comment: req.GetComment()})
	if err != nil {
		return nil, p.toStatus(ctx, "RollbackPolicy", err)
	}
	p.logChange(ctx, c)
	return &arbiterv1.RollbackPolicyResponse{Change: toPolicyChange(c)}, nil
}

// GetPolicy returns a published version with its files.
func (p *PolicyService) GetPolicy(ctx context.Context, req *arbiterv1.GetPolicyRequest) (*arbiterv1.GetPolicyResponse, error) {
	if req.GetVersion() == "" {
		return nil, p.toStatus(ctx, "GetPolicy", rpcstatus.Invalid("version", "required"))
	}
	b, err := p.store.Bundle(ctx, req.GetVersion())
	if err != nil {
		err = versionNotFound(err, req.GetVersion())
		return nil, p.toStatus(ctx, "GetPolicy", err)
	}
	return &arbiterv1.GetPolicyResponse{Version: toPolicyVersion(b.PolicyVersion), Files: b.Files}, nil
}

// ListPolicyChanges returns the change log, newest first.
func (p *PolicyService) ListPolicyChanges(ctx context.Context, req *arbiterv1.ListPolicyChangesRequest) (*arbiterv1.ListPolicyChangesResponse, error) {
	if req.GetLimit() < 0 || req.GetLimit() > maxPolicyChanges {
		return nil, p.toStatus(ctx, "ListPolicyChanges", rpcstatus.Invalid("limit", fmt.Sprintf("must be 0 to %d", maxPolicyChanges)))
	}
	cs, err := p.store.PolicyChanges(ctx, int(req.GetLimit()))
	if err != nil {
		return nil, p.toStatus(ctx, "ListPolicyChanges", err)
	}
	resp := &arbiterv1.ListPolicyChangesResponse{Changes: make([]*arbiterv1.PolicyChange, 0, len(cs))}
	for _, c := range cs {
		resp.Changes = append(resp.Changes, toPolicyChange(c))
	}
	return resp, nil
}

// SetShadowPolicy sets or clears the shadow version.
func (p *PolicyService) SetShadowPolicy(ctx context.Context, req *arbiterv1.SetShadowPolicyRequest) (*arbiterv1.SetShadowPolicyResponse, error) {
	share := req.GetShare()
	if req.GetVersion() != "" && (math.IsNaN(share) || share <= 0 || share > 1) {
		return nil, p.toStatus(ctx, "SetShadowPolicy", rpcstatus.Invalid("share", "must be above 0 and at most 1"))
	}
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "SetShadowPolicy", err)
	}
	c, err := p.store.SetShadowPolicy(ctx, policystore.Change{
		To: req.GetVersion(), ShadowShare: share, Actor: actor(ctx), At: p.clock(), Comment: req.GetComment(),
	})
	if err != nil {
		err = versionNotFound(err, req.GetVersion())
		return nil, p.toStatus(ctx, "SetShadowPolicy", err)
	}
	p.logChange(ctx, c)
	return &arbiterv1.SetShadowPolicyResponse{Change: toPolicyChange(c)}, nil
}

// GetShadowReport returns the differences of the shadow run.
func (p *PolicyService) GetShadowReport(ctx context.Context, _ *arbiterv1.GetShadowReportRequest) (*arbiterv1.GetShadowReportResponse, error) {
	rep, err := p.store.ShadowReport(ctx)
	if err != nil {
		return nil, p.toStatus(ctx, "GetShadowReport", err)
	}
	return toShadowReport(rep), nil
}

func (p *PolicyService) logChange(ctx context.Context, c policystore.Change) {
	p.logger.LogAttrs(ctx, slog.LevelInfo, "policy change", slog.String("kind", string(c.Kind)),
		slog.String("from", c.From), slog.String("to", c.To), slog.String("actor", c.Actor), slog.String("id", c.ID))
}

// bundleRefused is the error of a bundle that does not compile.
func bundleRefused(err error) error {
	return rpcstatus.Invalid("files", "bundle does not compile: "+err.Error())
}

// testsFailed is the error of a bundle whose own test cases fail.
func testsFailed(failed, total int, details []string) error {
	return rpcstatus.FailedPrecondition(fmt.Sprintf("policy refused: %d of %d policy test cases failed: %s", failed, total, strings.Join(details, " | ")))
}

// versionNotFound names version in a policystore.ErrNotFound.
func versionNotFound(err error, version string) error {
	if errors.Is(err, policystore.ErrNotFound) {
		return rpcstatus.NotFound("policy version", version)
	}
	return err
}

// storeRefusal turns the policy store's refusals into errors with their public messages.
func storeRefusal(err error) error {
	switch {
	case errors.Is(err, policystore.ErrVersionExists):
		return rpcstatus.AlreadyExists("this version is already published with different content: bump the bundle's version")
	case errors.Is(err, policystore.ErrAlreadyActive):
		return rpcstatus.FailedPrecondition("this version is already active")
	case errors.Is(err, policystore.ErrNoPrevious):
		return rpcstatus.FailedPrecondition("no previously active version to roll back to")
	}
	return err
}

// toStatus turns the error of a PolicyService call into its gRPC status, through
// rpcstatus.Convert.
func (p *PolicyService) toStatus(ctx context.Context, method string, err error) error {
	return rpcstatus.Convert(ctx, p.logger, method, storeRefusal(err))
}

func checkComment(c string) error {
	switch {
	case strings.TrimSpace(c) == "":
		return rpcstatus.Invalid("comment", "required: say why")
	case len(c) > maxCommentBytes:
		return rpcstatus.Invalid("comment", fmt.Sprintf("longer than %d bytes", maxCommentBytes))
	}
	return nil
}

// actor is the identity of the caller, for the change log.
func actor(ctx context.Context) string {
	if id, ok := guard.ClientFromContext(ctx); ok && id.Name != "" {
		return id.Name
	}
	return anonymousActor
}

func toPolicyVersion(v policystore.PolicyVersion) *arbiterv1.PolicyVersion {
	return &arbiterv1.PolicyVersion{
		Id: v.ID, Version: v.Version, Digest: v.Digest, Author: v.Author,
		CreatedAt: ts(v.CreatedAt), Comment: v.Comment, TestCases: int32(v.TestCases),
	}
}

var changeKinds = map[policystore.ChangeKind]arbiterv1.PolicyChangeKind{
	policystore.ChangePublish:  arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_PUBLISH,
	policystore.ChangeActivate: arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_ACTIVATE,
	policystore.ChangeRollback: arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_ROLLBACK,
	policystore.ChangeShadow:   arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_SHADOW,
	policystore.ChangeApprove:  arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_APPROVE,
}

func toPolicyChange(c policystore.Change) *arbiterv1.PolicyChange {
	return &arbiterv1.PolicyChange{
		Id: c.ID, Kind: changeKinds[c.Kind], Actor: c.Actor, At: ts(c.At),
		FromVersion: c.From, ToVersion: c.To, Comment: c.Comment, ShadowShare: c.ShadowShare,
	}
}

func toShadowReport(rep policystore.ShadowReport) *arbiterv1.GetShadowReportResponse {
	resp := &arbiterv1.GetShadowReportResponse{
		ShadowVersion: rep.Config.Version, Share: rep.Config.Share,
		Evaluated: rep.Counts.Evaluated, Different: rep.Counts.Different, Errors: rep.Counts.Errors,
	}
	if !rep.Config.Since.IsZero() {
		resp.Since = ts(rep.Config.Since)
	}
	for pair, n := range rep.Counts.Actions {
		resp.Actions = append(resp.Actions, &arbiterv1.ActionChange{
			Active: arbiterv1.Action(pair.Active), Shadow: arbiterv1.Action(pair.Shadow), Count: n,
		})
	}
	sort.Slice(resp.Actions, func(i, j int) bool {
		a, b := resp.Actions[i], resp.Actions[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Active != b.Active {
			return a.Active < b.Active
		}
		return a.Shadow < b.Shadow
	})
	codes := map[string]*arbiterv1.ReasonChange{}
	get := func(code string) *arbiterv1.ReasonChange {
		if rc, ok := codes[code]; ok {
			return rc
		}
		rc := &arbiterv1.ReasonChange{Code: code}
		codes[code] = rc
		resp.Reasons = append(resp.Reasons, rc)
		return rc
	}
	for code, n := range rep.Counts.ReasonsAdded {
		get(code).Added = n
	}
	for code, n := range rep.Counts.ReasonsRemoved {
		get(code).Removed = n
	}
	sort.Slice(resp.Reasons, func(i, j int) bool {
		a, b := resp.Reasons[i], resp.Reasons[j]
		if a.Added+a.Removed != b.Added+b.Removed {
			return a.Added+a.Removed > b.Added+b.Removed
		}
		return a.Code < b.Code
	})
	for _, s := range rep.Samples {
		resp.Samples = append(resp.Samples, &arbiterv1.ShadowSample{
			EventId: s.EventID, EventType: arbiterv1.EventType(s.EventType),
			ActiveAction: arbiterv1.Action(s.ActiveAction), ActiveReasons: s.ActiveReasons,
			ShadowAction: arbiterv1.Action(s.ShadowAction), ShadowReasons: s.ShadowReasons, At: ts(s.At),
			ChangedFields: s.ChangedFields,
		})
	}
	return resp
}

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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// PolicyAdminStore is what the PolicyService needs from the policy store; both featurestore
// policy stores satisfy it.
type PolicyAdminStore interface {
	PublishPolicy(ctx context.Context, b featurestore.PolicyBundle) (featurestore.PolicyVersion, bool, error)
	PolicyVersions(ctx context.Context) ([]featurestore.PolicyVersion, error)
	PolicyBundle(ctx context.Context, version string) (featurestore.PolicyBundle, error)
	ActivePolicy(ctx context.Context) (string, error)
	ActivatePolicy(ctx context.Context, c featurestore.PolicyChange) (featurestore.PolicyChange, error)
	RollbackPolicy(ctx context.Context, c featurestore.PolicyChange) (featurestore.PolicyChange, error)
	SetShadowPolicy(ctx context.Context, c featurestore.PolicyChange) (featurestore.PolicyChange, error)
	ShadowPolicy(ctx context.Context) (featurestore.ShadowConfig, error)
	PolicyChanges(ctx context.Context, limit int) ([]featurestore.PolicyChange, error)
	ShadowReport(ctx context.Context) (featurestore.ShadowReport, error)
}

var (
	_ PolicyAdminStore = (*featurestore.RedisPolicyStore)(nil)
	_ PolicyAdminStore = (*featurestore.MemoryPolicyStore)(nil)
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
var errNoTestCases = errors.New("bundle has no test cases")

// PolicyService implements arbiterv1.PolicyServiceServer over a policy store: publish
// (compile and test before storing), list, activate, roll back, show, the change log and
// shadow evaluation. Replicas follow the store through a PolicySync. The authentication
// interceptor guards it with the admin role; the caller's identity is the change's actor.
// Create it with NewPolicyService; it is safe for concurrent use.
type PolicyService struct {
	arbiterv1.UnimplementedPolicyServiceServer

	store  PolicyAdminStore
	clock  func() time.Time
	logger *slog.Logger
}

// PolicyServiceOption configures a PolicyService.
type PolicyServiceOption func(*PolicyService)

// WithPolicyClock sets the clock that dates publications and changes (default time.Now).
func WithPolicyClock(now func() time.Time) PolicyServiceOption {
	return func(p *PolicyService) { p.clock = now }
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
		return nil, p.toStatus(ctx, "PublishPolicy", &FieldError{Field: "files", Problem: "required"})
	}
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "PublishPolicy", err)
	}
	pol, err := decision.ParsePolicy(req.GetFiles())
	if err != nil {
		return nil, p.toStatus(ctx, "PublishPolicy", &bundleRefused{err: err})
	}
	ref := pol.Ref()
	if ref.Version == "" || len(ref.Version) > maxVersionBytes || strings.ContainsAny(ref.Version, " \t\n:{}") {
		return nil, p.toStatus(ctx, "PublishPolicy", &FieldError{Field: "files", Problem: "the bundle's version must be 1 to 128 characters without spaces, ':' or braces"})
	}
	n, err := runBundleTests(ctx, pol)
	if err != nil {
		return nil, p.toStatus(ctx, "PublishPolicy", err)
	}
	v, created, err := p.store.PublishPolicy(ctx, featurestore.PolicyBundle{
		PolicyVersion: featurestore.PolicyVersion{
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
		return 0, &testsFailed{failed: n, total: len(results), details: failed}
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
		return nil, p.toStatus(ctx, "ActivatePolicy", &FieldError{Field: "version", Problem: "required"})
	}
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "ActivatePolicy", err)
	}
	c, err := p.store.ActivatePolicy(ctx, featurestore.PolicyChange{
		To: req.GetVersion(), Actor: actor(ctx), At: p.clock(), Comment: req.GetComment(),
	})
	if err != nil {
		return nil, p.toStatus(ctx, "ActivatePolicy", err)
	}
	p.logChange(ctx, c)
	return &arbiterv1.ActivatePolicyResponse{Change: toPolicyChange(c)}, nil
}

// RollbackPolicy re-activates the version active before the current one.
func (p *PolicyService) RollbackPolicy(ctx context.Context, req *arbiterv1.RollbackPolicyRequest) (*arbiterv1.RollbackPolicyResponse, error) {
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "RollbackPolicy", err)
	}
	c, err := p.store.RollbackPolicy(ctx, featurestore.PolicyChange{Actor: actor(ctx), At: p.clock(), Comment: req.GetComment()})
	if err != nil {
		return nil, p.toStatus(ctx, "RollbackPolicy", err)
	}
	p.logChange(ctx, c)
	return &arbiterv1.RollbackPolicyResponse{Change: toPolicyChange(c)}, nil
}

// GetPolicy returns a published version with its files.
func (p *PolicyService) GetPolicy(ctx context.Context, req *arbiterv1.GetPolicyRequest) (*arbiterv1.GetPolicyResponse, error) {
	if req.GetVersion() == "" {
		return nil, p.toStatus(ctx, "GetPolicy", &FieldError{Field: "version", Problem: "required"})
	}
	b, err := p.store.PolicyBundle(ctx, req.GetVersion())
	if err != nil {
		return nil, p.toStatus(ctx, "GetPolicy", err)
	}
	return &arbiterv1.GetPolicyResponse{Version: toPolicyVersion(b.PolicyVersion), Files: b.Files}, nil
}

// ListPolicyChanges returns the change log, newest first.
func (p *PolicyService) ListPolicyChanges(ctx context.Context, req *arbiterv1.ListPolicyChangesRequest) (*arbiterv1.ListPolicyChangesResponse, error) {
	if req.GetLimit() < 0 || req.GetLimit() > maxPolicyChanges {
		return nil, p.toStatus(ctx, "ListPolicyChanges", &FieldError{Field: "limit", Problem: fmt.Sprintf("must be 0 to %d", maxPolicyChanges)})
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
		return nil, p.toStatus(ctx, "SetShadowPolicy", &FieldError{Field: "share", Problem: "must be above 0 and at most 1"})
	}
	if err := checkComment(req.GetComment()); err != nil {
		return nil, p.toStatus(ctx, "SetShadowPolicy", err)
	}
	c, err := p.store.SetShadowPolicy(ctx, featurestore.PolicyChange{
		To: req.GetVersion(), ShadowShare: share, Actor: actor(ctx), At: p.clock(), Comment: req.GetComment(),
	})
	if err != nil {
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

func (p *PolicyService) logChange(ctx context.Context, c featurestore.PolicyChange) {
	p.logger.LogAttrs(ctx, slog.LevelInfo, "policy change", slog.String("kind", string(c.Kind)),
		slog.String("from", c.From), slog.String("to", c.To), slog.String("actor", c.Actor), slog.String("id", c.ID))
}

// bundleRefused is a bundle that does not compile.
type bundleRefused struct{ err error }

func (e *bundleRefused) Error() string { return "bundle does not compile: " + e.err.Error() }
func (e *bundleRefused) Unwrap() error { return e.err }

// testsFailed is a bundle whose own test cases fail.
type testsFailed struct {
	failed, total int
	details       []string
}

func (e *testsFailed) Error() string {
	return fmt.Sprintf("%d of %d policy test cases failed: %s", e.failed, e.total, strings.Join(e.details, " | "))
}

// toStatus turns an error of a PolicyService call into its gRPC status: the one place that
// does for this service. Messages name fields, versions and failing policy test cases (the
// caller's own bundle), never internals.
func (p *PolicyService) toStatus(ctx context.Context, method string, err error) error {
	var fe *FieldError
	var br *bundleRefused
	var tf *testsFailed
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, "invalid "+fe.Error())
	case errors.As(err, &br):
		return status.Error(codes.InvalidArgument, "invalid files: "+br.Error())
	case errors.As(err, &tf):
		return status.Error(codes.FailedPrecondition, "policy refused: "+tf.Error())
	case errors.Is(err, errNoTestCases):
		return status.Error(codes.FailedPrecondition, "policy refused: the bundle has no test cases (add tests/*.yaml)")
	case errors.Is(err, featurestore.ErrVersionExists):
		return status.Error(codes.AlreadyExists, "this version is already published with different content: bump the bundle's version")
	case errors.Is(err, featurestore.ErrAlreadyActive):
		return status.Error(codes.FailedPrecondition, "this version is already active")
	case errors.Is(err, featurestore.ErrNoPrevious):
		return status.Error(codes.FailedPrecondition, "no previously active version to roll back to")
	case errors.Is(err, featurestore.ErrNotFound):
		return status.Error(codes.NotFound, "policy version not found")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "call canceled")
	case errors.Is(err, featurestore.ErrUnavailable):
		p.logger.LogAttrs(ctx, slog.LevelWarn, "policy store unavailable", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.Unavailable, "policy store unavailable; retry with back-off")
	case errors.Is(err, featurestore.ErrCorrupt):
		p.logger.LogAttrs(ctx, slog.LevelError, "malformed policy data", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.DataLoss, "stored policy data is malformed")
	}
	p.logger.LogAttrs(ctx, slog.LevelError, "internal error", slog.String("method", method), slog.Any("err", err))
	return status.Error(codes.Internal, "internal error")
}

func checkComment(c string) error {
	switch {
	case strings.TrimSpace(c) == "":
		return &FieldError{Field: "comment", Problem: "required: say why"}
	case len(c) > maxCommentBytes:
		return &FieldError{Field: "comment", Problem: fmt.Sprintf("longer than %d bytes", maxCommentBytes)}
	}
	return nil
}

// actor is the identity of the caller, for the change log.
func actor(ctx context.Context) string {
	if id, ok := ClientFromContext(ctx); ok && id.Name != "" {
		return id.Name
	}
	return anonymousActor
}

func toPolicyVersion(v featurestore.PolicyVersion) *arbiterv1.PolicyVersion {
	return &arbiterv1.PolicyVersion{
		Id: v.ID, Version: v.Version, Digest: v.Digest, Author: v.Author,
		CreatedAt: ts(v.CreatedAt), Comment: v.Comment, TestCases: int32(v.TestCases),
	}
}

var changeKinds = map[featurestore.PolicyChangeKind]arbiterv1.PolicyChangeKind{
	featurestore.ChangePublish:  arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_PUBLISH,
	featurestore.ChangeActivate: arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_ACTIVATE,
	featurestore.ChangeRollback: arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_ROLLBACK,
	featurestore.ChangeShadow:   arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_SHADOW,
}

func toPolicyChange(c featurestore.PolicyChange) *arbiterv1.PolicyChange {
	return &arbiterv1.PolicyChange{
		Id: c.ID, Kind: changeKinds[c.Kind], Actor: c.Actor, At: ts(c.At),
		FromVersion: c.From, ToVersion: c.To, Comment: c.Comment, ShadowShare: c.ShadowShare,
	}
}

func toShadowReport(rep featurestore.ShadowReport) *arbiterv1.GetShadowReportResponse {
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
		})
	}
	return resp
}

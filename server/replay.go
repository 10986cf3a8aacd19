package server

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
)

// AuditScanner reads the audit trail; both featurestore stores satisfy it.
type AuditScanner interface {
	ScanAudit(ctx context.Context, fn func(decisionID string, record []byte) error) error
}

var (
	_ AuditScanner = (*featurestore.Redis)(nil)
	_ AuditScanner = (*featurestore.Memory)(nil)
)

// ReplayReport says what a policy version would have changed in recorded decisions.
type ReplayReport struct {
	// Policy names the version the decisions were replayed under.
	Policy decision.PolicyRef
	// Replayed counts the decisions re-evaluated; Same those whose answer is identical
	// (action, detail, reasons and policy aside from its version); Changed the others.
	Replayed, Same, Changed int
	// Skipped counts records that can not be replayed: answers the server, not the policy,
	// gave (STORE_CONFLICT) and degraded answers.
	Skipped int
	// Actions counts changed decisions by recorded and replayed action.
	Actions map[policystore.ActionPair]int
	// ReasonsAdded and ReasonsRemoved count changed decisions where a reason code appears or
	// disappears under the replayed version.
	ReasonsAdded, ReasonsRemoved map[string]int
	// DetailOnly counts changed decisions with the same action and reason codes whose detail
	// (channel, template, time, queue...) differs.
	DetailOnly int
	// Examples are the first changed decisions, up to ReplayOptions.Examples.
	Examples []ReplayExample
}

// ReplayExample is one recorded decision that the replayed version answers differently.
type ReplayExample struct {
	DecisionID      string
	EventID         string
	EventType       decision.EventType
	RecordedVersion string
	Recorded        *arbiterv1.DecideResponse
	Replayed        *arbiterv1.DecideResponse
}

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// Examples is how many changed decisions to keep in the report (default 10; negative: none).
	Examples int
	// Filter, when set, selects the records to replay.
	Filter func(rec *arbiterv1.DecisionRecord) bool
}

// Replay re-evaluates every decision of the audit trail under pol, each with the exact request,
// state snapshot and decision time it was recorded with, and reports what would change.
// Replaying under the version that made the decisions reproduces every one of them: the
// engine is deterministic and reads nothing else. Nothing is written anywhere.
func Replay(ctx context.Context, audit AuditScanner, pol *decision.Policy, opts ReplayOptions) (*ReplayReport, error) {
	if opts.Examples == 0 {
		opts.Examples = 10
	}
	rep := &ReplayReport{
		Policy: pol.Ref(), Actions: map[policystore.ActionPair]int{},
		ReasonsAdded: map[string]int{}, ReasonsRemoved: map[string]int{},
	}
	err := audit.ScanAudit(ctx, func(decisionID string, raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var rec arbiterv1.DecisionRecord
		if err := proto.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("audit record %s: %w: %v", decisionID, featurestore.ErrCorrupt, err)
		}
		if opts.Filter != nil && !opts.Filter(&rec) {
			return nil
		}
		return replayOne(ctx, &rec, pol, rep, opts)
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

func replayOne(ctx context.Context, rec *arbiterv1.DecisionRecord, pol *decision.Policy, rep *ReplayReport, opts ReplayOptions) error {
	recorded := rec.GetResponse()
	if recorded == nil || rec.GetRequest() == nil || recorded.GetDegraded() || hasServerReason(recorded) {
		rep.Skipped++
		return nil
	}
	in := inputFromRecord(rec)
	res, err := pol.Decide(ctx, &in)
	if err != nil {
		return fmt.Errorf("replay decision %s: %w", rec.GetDecisionId(), err)
	}
	replayed, err := toResponse(recorded.GetDecisionId(), res, in.Now)
	if err != nil {
		return fmt.Errorf("replay decision %s: %w", rec.GetDecisionId(), err)
	}
	rep.Replayed++
	if sameAnswer(recorded, replayed) {
		rep.Same++
		return nil
	}
	rep.Changed++
	before, after := responseCodes(recorded), responseCodes(replayed)
	added, removed := decision.CodeChanges(before, after)
	rep.Actions[policystore.ActionPair{Active: decision.Action(recorded.GetAction()), Shadow: res.Action}]++
	for _, c := range added {
		rep.ReasonsAdded[c]++
	}
	for _, c := range removed {
		rep.ReasonsRemoved[c]++
	}
	if recorded.GetAction() == replayed.GetAction() && len(added) == 0 && len(removed) == 0 {
		rep.DetailOnly++
	}
	if len(rep.Examples) < opts.Examples {
		rep.Examples = append(rep.Examples, ReplayExample{
			DecisionID: rec.GetDecisionId(), EventID: rec.GetEventId(), EventType: decision.EventType(rec.GetEventType()),
			RecordedVersion: recorded.GetPolicy().GetVersion(), Recorded: replayView(recorded), Replayed: replayView(replayed),
		})
	}
	return nil
}

// sameAnswer reports whether two answers to one event agree in everything the policy decides:
// action, detail, reasons and the policy id. The policy version and digest, the explanation
// and the replayed and dry-run flags (with prior_decision_id) are not compared.
func sameAnswer(a, b *arbiterv1.DecideResponse) bool {
	return proto.Equal(replayView(a), replayView(b))
}

// replayView is resp without what a replay does not reproduce by design.
func replayView(resp *arbiterv1.DecideResponse) *arbiterv1.DecideResponse {
	c := proto.CloneOf(resp)
	c.Explanation, c.Replayed, c.DryRun, c.PriorDecisionId = nil, false, false, ""
	if c.Policy != nil {
		c.Policy.Version, c.Policy.Digest = "", ""
	}
	return c
}

func responseCodes(resp *arbiterv1.DecideResponse) []string {
	out := make([]string, len(resp.GetReasons()))
	for i, r := range resp.GetReasons() {
		out[i] = r.GetCode()
	}
	return out
}

// hasServerReason reports whether the server, not the policy, made the answer.
func hasServerReason(resp *arbiterv1.DecideResponse) bool {
	return slices.ContainsFunc(resp.GetReasons(), func(r *arbiterv1.Reason) bool { return r.GetRuleId() == ruleServer })
}

package server

import (
	"context"
	"errors"
	"fmt"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// ErrNotExplainable is returned by ExplainDecision for a record that cannot be explained
// again: degraded or decided without the policy (a server reason such as STORE_CORRUPT),
// decided by a policy other than the one loaded now, or whose re-evaluation disagrees with it.
var ErrNotExplainable = errors.New("decision cannot be explained again")

// ExplainDecision returns the explanation of a stored decision made without options.explain:
// the policy that decided it, when it is the one loaded now (same digest), evaluated again on
// the request and the state snapshot the record holds, at the time it was decided. Evaluation is
// deterministic, so it is the decision's own explanation; as a check, an evaluation whose answer
// differs from the recorded one is refused. Errors wrap ErrNotExplainable with the reason.
func (s *Server) ExplainDecision(ctx context.Context, rec *arbiterv1.DecisionRecord) (*arbiterv1.Explanation, error) {
	recorded := rec.GetResponse()
	if recorded == nil || rec.GetRequest() == nil || recorded.GetDegraded() || hasServerReason(recorded) {
		return nil, fmt.Errorf("%w: degraded or decided without the policy", ErrNotExplainable)
	}
	pol := s.policies.Load()
	if pol == nil || pol.Ref().Digest != rec.GetPolicy().GetDigest() {
		return nil, fmt.Errorf("%w: decided by policy version %s, not the one loaded now", ErrNotExplainable, rec.GetPolicy().GetVersion())
	}
	in := inputFromRecord(rec)
	in.Explain = true
	res, err := pol.Decide(ctx, &in)
	if err != nil {
		return nil, fmt.Errorf("explain decision %s: %w", rec.GetDecisionId(), err)
	}
	again, err := toResponse(recorded.GetDecisionId(), res, in.Now)
	if err != nil {
		return nil, fmt.Errorf("explain decision %s: %w", rec.GetDecisionId(), err)
	}
	if !sameAnswer(recorded, again) {
		return nil, fmt.Errorf("%w: evaluated again, the policy answers differently", ErrNotExplainable)
	}
	return again.GetExplanation(), nil
}

package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// oneDecision serves one stored decision; the console needs nothing else for the page.
type oneDecision struct {
	Policies
	Customers
	rec *arbiterv1.DecisionRecord
}

func (d oneDecision) GetDecision(context.Context, *arbiterv1.GetDecisionRequest) (*arbiterv1.GetDecisionResponse, error) {
	return &arbiterv1.GetDecisionResponse{Record: d.rec}, nil
}

// The decision page names the experiment arm and lists the confirmations.
func TestDecisionPageExperimentAndConfirmations(t *testing.T) {
	at := timestamppb.Now()
	d := oneDecision{rec: &arbiterv1.DecisionRecord{
		DecisionId: "3f-x", CustomerId: "c-1", Policy: &arbiterv1.PolicyRef{Id: "p", Version: "1"},
		Response: &arbiterv1.DecideResponse{Action: arbiterv1.Action_ACTION_RETRY, DecidedAt: at,
			Experiment: &arbiterv1.ExperimentArm{Id: "retry-backoff", Arm: "challenger-fast"}},
		Confirmations: []*arbiterv1.Confirmation{
			{Proceed: true, ReasonCodes: []string{"STILL_VALID"}, CheckedAt: at},
			{Proceed: false, ReasonCodes: []string{"OPTED_OUT", "QUIET_HOURS"}, CheckedAt: at},
		},
	}}
	c, err := New(Config{Decisions: d, Customers: d, Policies: d})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/decisions?id=3f-x", nil))
	body := w.Body.String()
	for _, want := range []string{`id="experiment">retry-backoff, arm <b>challenger-fast</b>`, "proceed at", "revoked</span> at", "OPTED_OUT, QUIET_HOURS"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /decisions?id=3f-x lacks %q:\n%s", want, body)
		}
	}
}

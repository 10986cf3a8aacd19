package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/report"
)

// TestReportRecoversKnownUplift archives a synthetic experiment whose true recovery rates are
// known (holdout 20%, champion 25%, challenger 31%), reports it from the archive, and checks
// that each uplift's interval holds the true difference; the command prints the table and
// writes the HTML page.
func TestReportRecoversKnownUplift(t *testing.T) {
	if testing.Short() {
		t.Skip("uses PostgreSQL")
	}
	dsn := archivetest.NewDB(t)
	a, err := archive.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	now := time.Now().UTC().Truncate(time.Second)
	rng := rand.New(rand.NewPCG(7, 11))
	arms := []struct {
		name      string
		customers int
		rate      float64
	}{{"holdout", 1500, 0.20}, {"champion", 3000, 0.25}, {"challenger-fast", 3000, 0.31}}
	var recs []archive.Record
	var outs []archive.Outcome
	for _, arm := range arms {
		for i := range arm.customers {
			id := fmt.Sprintf("%s-%d", arm.name, i)
			action := "ACTION_RETRY"
			if arm.name == "holdout" {
				action = "ACTION_SUPPRESS"
			}
			recs = append(recs, archive.Record{DecisionID: id, CustomerID: "cust-" + id, EventID: "ev-" + id,
				EventType: "EVENT_TYPE_PAYMENT_FAILED", Action: action, PolicyID: "p", PolicyVersion: "v1",
				DecidedAt: now.Add(-time.Duration(i) * time.Second), Body: []byte("x"),
				ExperimentID: "exp-synth", ExperimentArm: arm.name})
			if rng.Float64() < arm.rate {
				at := now.Add(time.Duration(1+rng.IntN(48)) * time.Hour)
				outs = append(outs, archive.Outcome{DecisionID: id, Outcome: "OUTCOME_PAID", OccurredAt: at, RecordedAt: at})
			}
		}
	}
	if _, err := a.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AppendOutcomes(t.Context(), outs); err != nil {
		t.Fatal(err)
	}

	stats, err := a.ExperimentArms(t.Context(), "exp-synth", now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	res, err := report.Compute("exp-synth", reportArms(stats), 0.95)
	if err != nil {
		t.Fatal(err)
	}
	truth := map[string]float64{"holdout": 0.20, "champion": 0.25, "challenger-fast": 0.31}
	checked := 0
	for _, ar := range res.Arms {
		for _, u := range ar.Uplifts {
			if !strings.Contains(strings.ToLower(u.Metric), "recovery") {
				continue
			}
			want := truth[ar.Name] - truth[u.Against]
			if u.Diff.Low > want || u.Diff.High < want {
				t.Errorf("%s vs %s: recovery uplift interval [%.4f, %.4f] misses the true %.2f", ar.Name, u.Against, u.Diff.Low, u.Diff.High, want)
			}
			checked++
		}
	}
	if checked != 3 {
		t.Errorf("checked %d recovery uplifts, want 3 (champion and challenger vs holdout, challenger vs champion)", checked)
	}

	html := filepath.Join(t.TempDir(), "report.html")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"report", "--experiment", "exp-synth", "--archive", dsn, "--since", "1d", "--html", html},
		noEnv, nil, &out, io.Discard); err != nil {
		t.Fatalf("report: %v", err)
	}
	t.Logf("arbiter report:\n%s", out.String())
	for _, want := range []string{"challenger-fast", "holdout", "champion", "vs holdout", "z-test"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report output lacks %q:\n%s", want, out.String())
		}
	}
	page, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Errorf("report --html wrote %d bytes (%v), want a page with charts", len(page), err)
	}
	if err := run(t.Context(), []string{"report", "--experiment", "none", "--archive", dsn}, noEnv, nil, io.Discard, io.Discard); err == nil {
		t.Errorf("report of an experiment without decisions = nil, want an error")
	}
}

// TestReportFromRedis: without an archive the report counts the decisions Redis still holds:
// a server deciding with the example bundle, a payment reported for one decision.
func TestReportFromRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	redisAddr := redistest.Start(t)
	grpcAddr, _, _, _ := startServe(t, "--redis", "redis://"+redisAddr, "--policy", "../../policies/examples/champion-challenger")
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dc := arbiterv1.NewDecisionServiceClient(conn)
	arms := map[string]int{}
	var paid string
	for i := range 40 {
		resp, err := dc.Decide(t.Context(), &arbiterv1.DecideRequest{
			Event: &arbiterv1.Event{Id: fmt.Sprintf("ev-%d", i), Type: arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED,
				Payment: &arbiterv1.PaymentFailure{DeclineCode: "51", Network: arbiterv1.CardNetwork_CARD_NETWORK_VISA, AmountMinor: 999,
					Currency: "GBP", Acquirer: "acq-a", CardRef: "tok-1", Initiator: arbiterv1.Initiator_INITIATOR_MERCHANT, MerchantId: "m-1"}},
			Customer: &arbiterv1.Customer{Id: fmt.Sprintf("rc-%d", i), Timezone: "UTC"},
		})
		if err != nil {
			t.Fatal(err)
		}
		arms[resp.GetExperiment().GetArm()]++
		if paid == "" && resp.GetExperiment().GetArm() == "champion" {
			paid = resp.GetDecisionId()
		}
	}
	if paid == "" {
		t.Fatalf("no customer in the champion arm among 40: arms %v", arms)
	}
	if _, err := dc.RecordOutcome(t.Context(), &arbiterv1.RecordOutcomeRequest{DecisionId: paid, Outcome: arbiterv1.Outcome_OUTCOME_PAID}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"report", "--experiment", "retry-backoff-2026q4", "--redis", "redis://" + redisAddr},
		noEnv, nil, &out, io.Discard); err != nil {
		t.Fatalf("report --redis: %v", err)
	}
	for arm, n := range arms {
		if want := fmt.Sprintf("%s  ", arm); !strings.Contains(out.String(), want) || n == 0 {
			t.Errorf("report --redis lacks arm %s (%d customers):\n%s", arm, n, out.String())
		}
	}
	champ := fmt.Sprintf("%.1f%%", 100/float64(arms["champion"]))
	if !strings.Contains(out.String(), champ) {
		t.Errorf("report --redis = \n%s\nwant the champion's recovery rate %s (one payment)", out.String(), champ)
	}
}

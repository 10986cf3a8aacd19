package report

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Role is the part an arm plays in an experiment.
type Role int

// The roles an arm can play. An experiment has at most one champion and at most one
// holdout, and any number of challengers.
const (
	// RoleChampion is the policy in production that challengers must beat.
	RoleChampion Role = 1
	// RoleChallenger is a candidate policy.
	RoleChallenger Role = 2
	// RoleHoldout is the control arm that receives no treatment.
	RoleHoldout Role = 3
)

// String returns "champion", "challenger" or "holdout", and "Role(n)" for any other value.
func (r Role) String() string {
	switch r {
	case RoleChampion:
		return "champion"
	case RoleChallenger:
		return "challenger"
	case RoleHoldout:
		return "holdout"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// Arm is what one arm of an experiment did: counted from archived decisions and outcomes.
// The per-customer counts (Recovered, OptedOut, Complained) count each customer at most
// once and cannot exceed Customers.
type Arm struct {
	// Name names the arm: "champion", "challenger-…", "holdout". It is unique in an experiment.
	Name string
	// Role is the part the arm plays: RoleChampion, RoleChallenger or RoleHoldout.
	Role Role
	// Customers is the number of distinct customers assigned to the arm who had a decision.
	Customers int
	// Decisions is the number of decisions made for the arm's customers.
	Decisions int
	// Messages is the number of MESSAGE decisions.
	Messages int
	// Retries is the number of RETRY decisions.
	Retries int
	// Recovered is the number of customers who paid (OUTCOME_PAID) or whose retry was
	// approved, at least once.
	Recovered int
	// OptedOut is the number of customers with an OUTCOME_OPTED_OUT.
	OptedOut int
	// Complained is the number of customers with an OUTCOME_COMPLAINED.
	Complained int
	// TimeToPay holds, per recovered customer, the time from the first decision to the
	// first payment.
	TimeToPay []time.Duration
}

// Rate is a proportion per customer: Successes out of N, with its Wilson interval.
type Rate struct {
	// Name names the rate: "recovery", "opt-out" or "complaint".
	Name string
	// Successes is the number of customers with the outcome.
	Successes int
	// N is the number of customers in the arm.
	N int
	// Interval is Successes/N with its Wilson score interval.
	Interval Interval
}

// Uplift is the difference of a rate between an arm and another arm.
type Uplift struct {
	// Metric names the rate compared: "recovery" or "opt-out".
	Metric string
	// Against names the arm compared with.
	Against string
	// Diff is the arm's rate minus Against's rate, with Newcombe's hybrid score interval.
	Diff Interval
	// Z is the pooled two-proportion z statistic of the difference.
	Z float64
	// P is the two-sided p-value of Z.
	P float64
	// Significant reports whether P < 1-confidence.
	Significant bool
}

// ArmResult is the result of one arm: its counts, its rates and its uplifts.
type ArmResult struct {
	Arm
	// RecoveryRate, OptOutRate and ComplaintRate are per customer, with Customers as N.
	RecoveryRate, OptOutRate, ComplaintRate Rate
	// MedianTimeToPay is the median of TimeToPay; 0 when it is empty.
	MedianTimeToPay time.Duration
	// MessagesPerRecovery is Messages / Recovered; 0 when Recovered is 0.
	MessagesPerRecovery float64
	// Uplifts holds, for a champion or a challenger, the recovery-rate uplift against the
	// holdout and, for a challenger, against the champion (each when the experiment has
	// one), then the opt-out rate difference against the holdout. The holdout, being the
	// baseline, has none.
	Uplifts []Uplift
}

// Result is the result of an experiment.
type Result struct {
	// Experiment names the experiment.
	Experiment string
	// Confidence is the confidence level of every interval and the significance threshold
	// (1-Confidence) of every test.
	Confidence float64
	// Arms holds one result per arm, in the order given to Compute.
	Arms []ArmResult
	// Test is one sentence naming the test and the interval used.
	Test string
}

// Metric names used in Rate.Name and Uplift.Metric.
const (
	metricRecovery  = "recovery"
	metricOptOut    = "opt-out"
	metricComplaint = "complaint"
)

// defaultConfidence is the confidence level Compute uses when given 0.
const defaultConfidence = 0.95

// Compute returns the result of an experiment's arms at confidence conf (0<conf<1; 0 means
// 0.95). It errors when conf is out of range, an arm name is empty or repeats, an arm has an
// unknown role, a negative count or a per-customer count above Customers, or there is more
// than one champion or holdout. The arms are not modified; the result holds copies.
func Compute(experiment string, arms []Arm, conf float64) (*Result, error) {
	if conf == 0 {
		conf = defaultConfidence
	}
	if !(conf > 0 && conf < 1) {
		return nil, fmt.Errorf("report: confidence %v out of range (0, 1)", conf)
	}
	var champion, holdout *Arm
	seen := make(map[string]bool, len(arms))
	for i := range arms {
		a := &arms[i]
		if err := validate(a); err != nil {
			return nil, err
		}
		if seen[a.Name] {
			return nil, fmt.Errorf("report: arm %q repeats", a.Name)
		}
		seen[a.Name] = true
		switch a.Role {
		case RoleChampion:
			if champion != nil {
				return nil, fmt.Errorf("report: more than one champion: %q and %q", champion.Name, a.Name)
			}
			champion = a
		case RoleHoldout:
			if holdout != nil {
				return nil, fmt.Errorf("report: more than one holdout: %q and %q", holdout.Name, a.Name)
			}
			holdout = a
		}
	}

	r := &Result{
		Experiment: experiment,
		Confidence: conf,
		Arms:       make([]ArmResult, 0, len(arms)),
		Test: "two-sided two-proportion z-test (pooled), Newcombe hybrid score interval for the difference, " +
			formatConfidence(conf) + " confidence",
	}
	for _, a := range arms {
		a.TimeToPay = slices.Clone(a.TimeToPay)
		ar := ArmResult{
			Arm:             a,
			RecoveryRate:    rate(metricRecovery, a.Recovered, a.Customers, conf),
			OptOutRate:      rate(metricOptOut, a.OptedOut, a.Customers, conf),
			ComplaintRate:   rate(metricComplaint, a.Complained, a.Customers, conf),
			MedianTimeToPay: median(a.TimeToPay),
		}
		if a.Recovered > 0 {
			ar.MessagesPerRecovery = float64(a.Messages) / float64(a.Recovered)
		}
		if a.Role != RoleHoldout {
			if holdout != nil {
				ar.Uplifts = append(ar.Uplifts, uplift(metricRecovery, a.Recovered, a.Customers, holdout.Name, holdout.Recovered, holdout.Customers, conf))
			}
			if champion != nil && a.Role != RoleChampion {
				ar.Uplifts = append(ar.Uplifts, uplift(metricRecovery, a.Recovered, a.Customers, champion.Name, champion.Recovered, champion.Customers, conf))
			}
			if holdout != nil {
				ar.Uplifts = append(ar.Uplifts, uplift(metricOptOut, a.OptedOut, a.Customers, holdout.Name, holdout.OptedOut, holdout.Customers, conf))
			}
		}
		r.Arms = append(r.Arms, ar)
	}
	return r, nil
}

// validate checks one arm's name, role and counts.
func validate(a *Arm) error {
	if a.Name == "" {
		return fmt.Errorf("report: arm with empty name")
	}
	if a.Role < RoleChampion || a.Role > RoleHoldout {
		return fmt.Errorf("report: arm %q: unknown role %v", a.Name, a.Role)
	}
	counts := []struct {
		name string
		v    int
	}{
		{"customers", a.Customers}, {"decisions", a.Decisions}, {"messages", a.Messages},
		{"retries", a.Retries}, {"recovered", a.Recovered}, {"opted out", a.OptedOut},
		{"complained", a.Complained},
	}
	for _, c := range counts {
		if c.v < 0 {
			return fmt.Errorf("report: arm %q: negative %s count %d", a.Name, c.name, c.v)
		}
	}
	for _, c := range counts[4:] {
		if c.v > a.Customers {
			return fmt.Errorf("report: arm %q: %s %d exceeds customers %d", a.Name, c.name, c.v, a.Customers)
		}
	}
	return nil
}

func rate(name string, successes, n int, conf float64) Rate {
	return Rate{Name: name, Successes: successes, N: n, Interval: Wilson(successes, n, conf)}
}

func uplift(metric string, s1, n1 int, against string, s2, n2 int, conf float64) Uplift {
	z, p := TwoProportionZ(s1, n1, s2, n2)
	return Uplift{
		Metric:      metric,
		Against:     against,
		Diff:        Newcombe(s1, n1, s2, n2, conf),
		Z:           z,
		P:           p,
		Significant: p < 1-conf,
	}
}

// median returns the median of ds (the mean of the two middle values for an even count),
// or 0 when ds is empty. ds is not modified.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return s[m-1] + (s[m]-s[m-1])/2
}

// formatConfidence writes conf as a percentage: 0.95 is "95%", 0.975 is "97.5%".
func formatConfidence(conf float64) string {
	return strconv.FormatFloat(math.Round(conf*1e4)/100, 'f', -1, 64) + "%"
}

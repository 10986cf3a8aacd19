package report

import (
	"bytes"
	"html"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// approx compares floats to the four decimals that published tables give.
var approx = cmpopts.EquateApprox(0, 1e-4)

func TestZQuantile(t *testing.T) {
	tests := []struct {
		conf float64
		want float64
	}{
		{0.80, 1.281552},
		{0.90, 1.644854},
		{0.95, 1.959964},
		{0.99, 2.575829},
	}
	for _, tt := range tests {
		if got := zQuantile(tt.conf); math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("zQuantile(%v) = %v, want %v", tt.conf, got, tt.want)
		}
	}
}

// The Wilson intervals below are those of Newcombe, "Two-sided confidence intervals for the
// single proportion: comparison of seven methods", Statistics in Medicine 17 (1998) 857-872,
// Table I, method 3; the formula reproduces them to four decimals.
func TestWilson(t *testing.T) {
	tests := []struct {
		name string
		s, n int
		conf float64
		want Interval
	}{
		{"81 of 263", 81, 263, 0.95, Interval{81.0 / 263, 0.2553, 0.3662}},
		{"15 of 148", 15, 148, 0.95, Interval{15.0 / 148, 0.0624, 0.1605}},
		{"0 of 20", 0, 20, 0.95, Interval{0, 0, 0.1611}},
		{"1 of 29", 1, 29, 0.95, Interval{1.0 / 29, 0.0061, 0.1718}},
		{"0 of 10", 0, 10, 0.95, Interval{0, 0, 0.2775}},
		{"10 of 10", 10, 10, 0.95, Interval{1, 0.7225, 1}},
		{"n zero", 0, 0, 0.95, Interval{0, 0, 1}},
		{"successes above n clamped", 12, 10, 0.95, Interval{1, 0.7225, 1}},
		{"negative successes clamped", -1, 10, 0.95, Interval{0, 0, 0.2775}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Wilson(tt.s, tt.n, tt.conf)
			if diff := cmp.Diff(tt.want, got, approx); diff != "" {
				t.Errorf("Wilson(%d, %d, %v) = %+v, want %+v (-want +got):\n%s", tt.s, tt.n, tt.conf, got, tt.want, diff)
			}
		})
	}
}

// The differences below are the worked examples (a) to (f) of Newcombe, "Interval estimation
// for the difference between independent proportions: comparison of eleven methods",
// Statistics in Medicine 17 (1998) 873-890, Table II, method 10. An independent computation
// of the formula (Python, statistics.NormalDist for z) gives the same four decimals:
// 56/70-48/80 [0.052431, 0.333873], 9/10-3/10 [0.170523, 0.809018].
func TestNewcombe(t *testing.T) {
	tests := []struct {
		name           string
		s1, n1, s2, n2 int
		want           Interval
	}{
		{"a 56/70 vs 48/80", 56, 70, 48, 80, Interval{0.2, 0.0524, 0.3339}},
		{"b 9/10 vs 3/10", 9, 10, 3, 10, Interval{0.6, 0.1705, 0.8090}},
		{"c 6/7 vs 2/7", 6, 7, 2, 7, Interval{4.0 / 7, 0.0582, 0.8062}},
		{"d 5/56 vs 0/29", 5, 56, 0, 29, Interval{5.0 / 56, -0.0381, 0.1926}},
		{"e 0/10 vs 0/20", 0, 10, 0, 20, Interval{0, -0.1611, 0.2775}},
		{"f 10/10 vs 0/20", 10, 10, 0, 20, Interval{1, 0.6791, 1}},
		{"swapped arms mirror", 48, 80, 56, 70, Interval{-0.2, -0.3339, -0.0524}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Newcombe(tt.s1, tt.n1, tt.s2, tt.n2, 0.95)
			if diff := cmp.Diff(tt.want, got, approx); diff != "" {
				t.Errorf("Newcombe(%d, %d, %d, %d, 0.95) = %+v, want %+v (-want +got):\n%s",
					tt.s1, tt.n1, tt.s2, tt.n2, got, tt.want, diff)
			}
		})
	}
}

func TestTwoProportionZ(t *testing.T) {
	// 30/100 vs 20/100 by hand: pooled p = 50/200 = 0.25,
	// se = sqrt(0.25 * 0.75 * (1/100 + 1/100)) = sqrt(0.00375) = 0.0612372,
	// z = (0.30 - 0.20) / 0.0612372 = 1.632993, p = 2 * (1 - Phi(1.632993)) = 0.102470.
	tests := []struct {
		name           string
		s1, n1, s2, n2 int
		wantZ, wantP   float64
	}{
		{"hand computed", 30, 100, 20, 100, 1.632993, 0.102470},
		{"hand computed reversed", 20, 100, 30, 100, -1.632993, 0.102470},
		{"identical proportions", 20, 100, 40, 200, 0, 1},
		{"n1 zero", 0, 0, 3, 10, 0, 1},
		{"n2 zero", 3, 10, 0, 0, 0, 1},
		{"no successes anywhere", 0, 10, 0, 20, 0, 1},
		{"all successes everywhere", 10, 10, 20, 20, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, p := TwoProportionZ(tt.s1, tt.n1, tt.s2, tt.n2)
			if math.Abs(z-tt.wantZ) > 1e-6 || math.Abs(p-tt.wantP) > 1e-6 {
				t.Errorf("TwoProportionZ(%d, %d, %d, %d) = %v, %v, want %v, %v",
					tt.s1, tt.n1, tt.s2, tt.n2, z, p, tt.wantZ, tt.wantP)
			}
		})
	}
}

func TestRoleString(t *testing.T) {
	tests := []struct {
		r    Role
		want string
	}{
		{RoleChampion, "champion"},
		{RoleChallenger, "challenger"},
		{RoleHoldout, "holdout"},
		{Role(0), "Role(0)"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("Role(%d).String() = %q, want %q", int(tt.r), got, tt.want)
		}
	}
}

// fixture is a small experiment with all three roles.
func fixture() []Arm {
	return []Arm{
		{
			Name: "champion", Role: RoleChampion, Customers: 1000, Decisions: 3100,
			Messages: 1200, Retries: 1900, Recovered: 230, OptedOut: 12, Complained: 3,
			TimeToPay: []time.Duration{4 * time.Hour, time.Hour, 2 * time.Hour, 3 * time.Hour},
		},
		{
			Name: "challenger-fast", Role: RoleChallenger, Customers: 1000, Decisions: 3400,
			Messages: 1500, Retries: 1900, Recovered: 270, OptedOut: 15, Complained: 4,
			TimeToPay: []time.Duration{90 * time.Minute, 30 * time.Minute, time.Hour},
		},
		{
			Name: "holdout", Role: RoleHoldout, Customers: 1000, Decisions: 1000,
			Retries: 1000, Recovered: 200, OptedOut: 10,
		},
	}
}

func TestCompute(t *testing.T) {
	arms := fixture()
	r, err := Compute("exp-1", arms, 0)
	if err != nil {
		t.Fatalf("Compute(exp-1, fixture, 0) error = %v, want nil", err)
	}
	if r.Confidence != 0.95 {
		t.Errorf("Compute(exp-1, fixture, 0).Confidence = %v, want 0.95", r.Confidence)
	}
	wantTest := "two-sided two-proportion z-test (pooled), Newcombe hybrid score interval for the difference, 95% confidence"
	if r.Test != wantTest {
		t.Errorf("Compute(exp-1, fixture, 0).Test = %q, want %q", r.Test, wantTest)
	}

	// A projection of what Compute derives, so the test reads as a table.
	type upliftKey struct {
		Metric, Against string
		Estimate        float64
	}
	type summary struct {
		Name                string
		Recovery, OptOut    Rate
		Median              time.Duration
		MessagesPerRecovery float64
		Uplifts             []upliftKey
	}
	var got []summary
	for _, a := range r.Arms {
		s := summary{
			Name: a.Name, Recovery: a.RecoveryRate, OptOut: a.OptOutRate,
			Median: a.MedianTimeToPay, MessagesPerRecovery: a.MessagesPerRecovery,
		}
		for _, u := range a.Uplifts {
			s.Uplifts = append(s.Uplifts, upliftKey{u.Metric, u.Against, u.Diff.Estimate})
		}
		got = append(got, s)
	}
	want := []summary{
		{
			Name:                "champion",
			Recovery:            Rate{"recovery", 230, 1000, Wilson(230, 1000, 0.95)},
			OptOut:              Rate{"opt-out", 12, 1000, Wilson(12, 1000, 0.95)},
			Median:              150 * time.Minute,
			MessagesPerRecovery: 1200.0 / 230,
			Uplifts: []upliftKey{
				{"recovery", "holdout", 0.03},
				{"opt-out", "holdout", 0.002},
			},
		},
		{
			Name:                "challenger-fast",
			Recovery:            Rate{"recovery", 270, 1000, Wilson(270, 1000, 0.95)},
			OptOut:              Rate{"opt-out", 15, 1000, Wilson(15, 1000, 0.95)},
			Median:              time.Hour,
			MessagesPerRecovery: 1500.0 / 270,
			Uplifts: []upliftKey{
				{"recovery", "holdout", 0.07},
				{"recovery", "champion", 0.04},
				{"opt-out", "holdout", 0.005},
			},
		},
		{
			Name:     "holdout",
			Recovery: Rate{"recovery", 200, 1000, Wilson(200, 1000, 0.95)},
			OptOut:   Rate{"opt-out", 10, 1000, Wilson(10, 1000, 0.95)},
		},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("Compute(exp-1, fixture, 0) arms mismatch (-want +got):\n%s", diff)
	}

	// Compute must not share the caller's TimeToPay.
	r.Arms[0].TimeToPay[0] = 0
	if arms[0].TimeToPay[0] != 4*time.Hour {
		t.Errorf("Compute(exp-1, fixture, 0) aliases the caller's TimeToPay")
	}
}

func TestComputeNoRecoveries(t *testing.T) {
	r, err := Compute("empty", []Arm{{Name: "champion", Role: RoleChampion, Messages: 5}}, 0.9)
	if err != nil {
		t.Fatalf("Compute(empty) error = %v, want nil", err)
	}
	a := r.Arms[0]
	if a.MessagesPerRecovery != 0 || a.MedianTimeToPay != 0 || len(a.Uplifts) != 0 {
		t.Errorf("Compute(empty) arm = %+v, want zero messages per recovery, median and no uplifts", a)
	}
	if want := (Interval{0, 0, 1}); a.RecoveryRate.Interval != want {
		t.Errorf("Compute(empty) recovery interval = %+v, want %+v", a.RecoveryRate.Interval, want)
	}
}

func TestComputeErrors(t *testing.T) {
	tests := []struct {
		name string
		arms []Arm
		conf float64
	}{
		{"confidence 1", fixture(), 1},
		{"confidence above 1", fixture(), 95},
		{"negative confidence", fixture(), -0.95},
		{"NaN confidence", fixture(), math.NaN()},
		{"duplicate name", []Arm{{Name: "a", Role: RoleChallenger}, {Name: "a", Role: RoleChallenger}}, 0},
		{"two holdouts", []Arm{{Name: "h1", Role: RoleHoldout}, {Name: "h2", Role: RoleHoldout}}, 0},
		{"two champions", []Arm{{Name: "c1", Role: RoleChampion}, {Name: "c2", Role: RoleChampion}}, 0},
		{"empty name", []Arm{{Role: RoleChallenger}}, 0},
		{"unknown role", []Arm{{Name: "x"}}, 0},
		{"negative count", []Arm{{Name: "x", Role: RoleChallenger, Decisions: -1}}, 0},
		{"recovered above customers", []Arm{{Name: "x", Role: RoleChallenger, Customers: 1, Recovered: 2}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := Compute("exp", tt.arms, tt.conf); err == nil {
				t.Errorf("Compute(exp, %s, %v) = %+v, nil, want an error", tt.name, tt.conf, r)
			}
		})
	}
}

// simulate returns an arm of n customers each recovered with probability p.
func simulate(rng *rand.Rand, name string, role Role, n int, p float64) Arm {
	a := Arm{Name: name, Role: role, Customers: n, Decisions: n}
	for range n {
		if rng.Float64() < p {
			a.Recovered++
		}
	}
	return a
}

// syntheticUplift simulates a holdout at 0.20 and a challenger at 0.26, 5,000 customers
// each, and returns the challenger's recovery uplift against the holdout.
func syntheticUplift(t *testing.T, seed uint64) Uplift {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	arms := []Arm{
		simulate(rng, "holdout", RoleHoldout, 5000, 0.20),
		simulate(rng, "challenger", RoleChallenger, 5000, 0.26),
	}
	r, err := Compute("synthetic", arms, 0.95)
	if err != nil {
		t.Fatalf("Compute(synthetic seed %d) error = %v, want nil", seed, err)
	}
	for _, u := range r.Arms[1].Uplifts {
		if u.Metric == "recovery" && u.Against == "holdout" {
			return u
		}
	}
	t.Fatalf("Compute(synthetic seed %d) has no recovery uplift against the holdout", seed)
	return Uplift{}
}

const trueUplift = 0.26 - 0.20

func TestComputeSyntheticRecovery(t *testing.T) {
	u := syntheticUplift(t, 1)
	if !(u.Diff.Low <= trueUplift && trueUplift <= u.Diff.High) {
		t.Errorf("Compute(synthetic seed 1) uplift = %+v, want an interval containing %v", u.Diff, trueUplift)
	}
	if !u.Significant || u.Z <= 0 {
		t.Errorf("Compute(synthetic seed 1) uplift z = %v, p = %v, significant = %v, want positive and significant", u.Z, u.P, u.Significant)
	}
}

// TestComputeCoverage checks that the 95% interval covers the true uplift in at least 90%
// of 200 simulated experiments (the expected coverage is about 95%; 90% is more than three
// standard errors below it, and the seeds are fixed, so the test is deterministic).
func TestComputeCoverage(t *testing.T) {
	const runs = 200
	covered, significant := 0, 0
	for seed := range uint64(runs) {
		u := syntheticUplift(t, seed)
		if u.Diff.Low <= trueUplift && trueUplift <= u.Diff.High {
			covered++
		}
		if u.Significant {
			significant++
		}
	}
	if covered < runs*90/100 {
		t.Errorf("Compute over %d seeds covered the true uplift %d times, want at least %d", runs, covered, runs*90/100)
	}
	if significant != runs {
		t.Errorf("Compute over %d seeds was significant %d times, want %d", runs, significant, runs)
	}
	t.Logf("coverage %d/%d", covered, runs)
}

func TestWriteText(t *testing.T) {
	r, err := Compute("exp-1", fixture(), 0.95)
	if err != nil {
		t.Fatalf("Compute(exp-1, fixture, 0.95) error = %v", err)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatalf("WriteText() error = %v", err)
	}
	out := b.String()
	for _, want := range []string{
		"champion", "challenger-fast", "holdout",
		"27.0% [24.3%, 29.8%]",
		"2h30m",
		"challenger-fast vs holdout: recovery +7.0 pts [3.3, 10.7], z=3.69, p<0.001, significant",
		"challenger-fast vs champion: recovery +4.0 pts",
		"champion vs holdout: opt-out +0.2 pts",
		r.Test,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteText() = %s, want it to contain %q", out, want)
		}
	}
}

func TestWriteHTML(t *testing.T) {
	arms := fixture()
	arms[1].Name = "<b>"
	r, err := Compute("exp-<1>", arms, 0.95)
	if err != nil {
		t.Fatalf("Compute(exp-<1>, fixture, 0.95) error = %v", err)
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatalf("WriteHTML() error = %v", err)
	}
	out := b.String()
	for _, want := range []string{
		"<!DOCTYPE html>", "<svg", "champion", "holdout", "&lt;b&gt;", "exp-&lt;1&gt;",
		`class="zero"`,
		r.Test,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteHTML() = %s, want it to contain %q", out, want)
		}
	}
	// html/template writes "+" as "&#43;"; compare the uplift line as a browser shows it.
	line := "<b> vs holdout: recovery +7.0 pts [3.3, 10.7], z=3.69, p<0.001, significant"
	if !strings.Contains(html.UnescapeString(out), line) {
		t.Errorf("WriteHTML() = %s, want it to show %q", out, line)
	}
	for _, bad := range []string{"<b>", "<script", "src=", "href="} {
		if strings.Contains(out, bad) {
			t.Errorf("WriteHTML() contains %q, want none (escaped names, no assets, no JavaScript)", bad)
		}
	}
	if got, want := strings.Count(out, "<svg"), 2; got != want {
		t.Errorf("WriteHTML() has %d <svg> charts, want %d", got, want)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "-"},
		{30 * time.Second, "30s"},
		{42*time.Minute + 10*time.Second, "42m"},
		{5*time.Hour + 12*time.Minute, "5h12m"},
		{59*time.Minute + 50*time.Second, "1h0m"},
		{51 * time.Hour, "2d3h"},
		{23*time.Hour + 50*time.Minute, "1d0h"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// A significant rise in opt-outs is drawn as harm, a significant rise in recoveries is not.
func TestWriteHTMLMarksHarm(t *testing.T) {
	arms := []Arm{
		{Name: "holdout", Role: RoleHoldout, Customers: 2000, Recovered: 400, OptedOut: 2},
		{Name: "champion", Role: RoleChampion, Customers: 2000, Recovered: 600, OptedOut: 60},
	}
	r, err := Compute("e", arms, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(b.String(), `<g class="harm">`); got != 1 {
		t.Errorf("WriteHTML() has %d harm rows, want 1 (the opt-out rise)", got)
	}
	if !strings.Contains(b.String(), `<g class="sig">`) {
		t.Errorf("WriteHTML() has no significant good-news row, want the recovery rise")
	}
}

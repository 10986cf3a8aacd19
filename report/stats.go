package report

import "math"

// Interval is a point estimate with the low and high ends of its confidence interval.
type Interval struct {
	Estimate, Low, High float64
}

// zQuantile returns the two-sided standard normal quantile for confidence level conf:
// the z with P(-z < Z < z) = conf, 1.959964 for 0.95. conf must lie in (0, 1).
func zQuantile(conf float64) float64 {
	return math.Sqrt2 * math.Erfinv(conf)
}

// Wilson returns the Wilson score interval of successes out of n at confidence level conf
// (e.g. 0.95; it must lie in (0, 1)). The Estimate is successes/n. n == 0 gives {0, 0, 1};
// successes outside [0, n] are clamped to it. The ends are clamped to [0, 1].
func Wilson(successes, n int, conf float64) Interval {
	if n <= 0 {
		return Interval{Estimate: 0, Low: 0, High: 1}
	}
	successes = min(max(successes, 0), n)
	z := zQuantile(conf)
	nf := float64(n)
	p := float64(successes) / nf
	z2 := z * z
	denom := 1 + z2/nf
	center := (p + z2/(2*nf)) / denom
	half := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / denom
	lo, hi := center-half, center+half
	// The ends are exact at the boundaries; do not let rounding move them.
	if successes == 0 {
		lo = 0
	}
	if successes == n {
		hi = 1
	}
	return Interval{Estimate: p, Low: clamp01(lo), High: clamp01(hi)}
}

// Newcombe returns the difference p1-p2 of two proportions, p1 = s1/n1 and p2 = s2/n2,
// with Newcombe's hybrid score interval (method 10 of Newcombe 1998), built from the two
// Wilson intervals at confidence level conf. A zero n contributes the proportion 0 with the
// Wilson interval [0, 1], so the difference interval is wide, as it should be.
func Newcombe(s1, n1, s2, n2 int, conf float64) Interval {
	w1, w2 := Wilson(s1, n1, conf), Wilson(s2, n2, conf)
	p1, p2 := w1.Estimate, w2.Estimate
	d := p1 - p2
	lo := d - math.Hypot(p1-w1.Low, w2.High-p2)
	hi := d + math.Hypot(w1.High-p1, p2-w2.Low)
	return Interval{Estimate: d, Low: max(lo, -1), High: min(hi, 1)}
}

// TwoProportionZ returns the pooled two-proportion z statistic of p1-p2 (p1 = s1/n1,
// p2 = s2/n2) and its two-sided p-value under the normal approximation. Either n zero, or a
// pooled proportion of 0 or 1 (no variance), gives z 0 and p 1.
func TwoProportionZ(s1, n1, s2, n2 int) (z, p float64) {
	if n1 <= 0 || n2 <= 0 {
		return 0, 1
	}
	n1f, n2f := float64(n1), float64(n2)
	pooled := float64(s1+s2) / (n1f + n2f)
	se := math.Sqrt(pooled * (1 - pooled) * (1/n1f + 1/n2f))
	if se == 0 || math.IsNaN(se) {
		return 0, 1
	}
	z = (float64(s1)/n1f - float64(s2)/n2f) / se
	return z, math.Erfc(math.Abs(z) / math.Sqrt2)
}

func clamp01(x float64) float64 { return min(max(x, 0), 1) }

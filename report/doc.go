// Package report computes and renders the results of a policy experiment: per arm,
// decisions and outcome rates with confidence intervals, and uplift against the holdout
// and the champion.
//
// The inputs are counts per arm ([Arm]), tallied by the caller from archived decisions and
// outcomes. [Compute] turns them into a [Result]: per-customer rates with Wilson score
// intervals, and differences against the holdout and the champion with Newcombe's hybrid
// score interval and a pooled two-proportion z-test. [Result.WriteText] renders a terminal
// table and [Result.WriteHTML] a self-contained HTML page with inline SVG charts.
//
// The statistics are normal approximations: they suit arms of a few hundred customers or
// more, which is what a policy experiment is sized for.
package report

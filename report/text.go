package report

import (
	"bufio"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteText writes r as a terminal table: a title line, one row per arm (arm, role,
// customers, decisions, recovery rate with its interval as "12.3% [10.1%, 14.8%]", median
// time to pay, messages per recovery, opt-out rate, complaint rate), then one line per
// uplift ("challenger-fast vs holdout: recovery +4.1 pts [1.2, 7.0], z=2.81, p=0.005,
// significant"), then the Test sentence. A missing value is written as "-".
func (r *Result) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "experiment %s\n\n", r.Experiment)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ARM\tROLE\tCUSTOMERS\tDECISIONS\tRECOVERY\tMEDIAN TIME TO PAY\tMESSAGES/RECOVERY\tOPT-OUT\tCOMPLAINTS")
	for _, row := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			row.Name, row.Role, row.Customers, row.Decisions, row.Recovery,
			row.MedianTimeToPay, row.MessagesPerRecovery, row.OptOut, row.Complaints)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(bw)
	for _, a := range r.Arms {
		for _, u := range a.Uplifts {
			fmt.Fprintln(bw, upliftLine(a.Name, u))
		}
	}
	fmt.Fprintln(bw, r.Test)
	return bw.Flush()
}

// row is one arm formatted for display, shared by the text and HTML renderings.
type row struct {
	Name, Role, Customers, Decisions, Recovery, MedianTimeToPay,
	MessagesPerRecovery, OptOut, Complaints string
}

func (r *Result) rows() []row {
	rows := make([]row, 0, len(r.Arms))
	for _, a := range r.Arms {
		mpr := "-"
		if a.Recovered > 0 {
			mpr = fmt.Sprintf("%.2f", a.MessagesPerRecovery)
		}
		rows = append(rows, row{
			Name:                a.Name,
			Role:                a.Role.String(),
			Customers:           fmt.Sprint(a.Customers),
			Decisions:           fmt.Sprint(a.Decisions),
			Recovery:            formatRate(a.RecoveryRate),
			MedianTimeToPay:     formatDuration(a.MedianTimeToPay),
			MessagesPerRecovery: mpr,
			OptOut:              formatRate(a.OptOutRate),
			Complaints:          formatRate(a.ComplaintRate),
		})
	}
	return rows
}

// formatRate writes a rate as "12.3% [10.1%, 14.8%]", or "-" when N is 0.
func formatRate(r Rate) string {
	if r.N == 0 {
		return "-"
	}
	i := r.Interval
	return fmt.Sprintf("%.1f%% [%.1f%%, %.1f%%]", 100*i.Estimate, 100*i.Low, 100*i.High)
}

// upliftLine writes an uplift of arm as
// "challenger-fast vs holdout: recovery +4.1 pts [1.2, 7.0], z=2.81, p=0.005, significant".
func upliftLine(arm string, u Uplift) string {
	sig := "not significant"
	if u.Significant {
		sig = "significant"
	}
	return fmt.Sprintf("%s vs %s: %s %s, z=%.2f, %s, %s",
		arm, u.Against, u.Metric, formatDiff(u.Diff), u.Z, formatP(u.P), sig)
}

// formatDiff writes a difference of proportions in percentage points: "+4.1 pts [1.2, 7.0]".
func formatDiff(d Interval) string {
	return fmt.Sprintf("%+.1f pts [%.1f, %.1f]", 100*d.Estimate, 100*d.Low, 100*d.High)
}

// formatP writes a p-value to three decimals, "p<0.001" below that.
func formatP(p float64) string {
	if p < 0.001 {
		return "p<0.001"
	}
	return fmt.Sprintf("p=%.3f", p)
}

// formatDuration writes d compactly at a resolution that suits its size: "2d3h", "5h12m",
// "42m", "30s"; "-" for 0.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d >= 24*time.Hour-30*time.Minute:
		d = d.Round(time.Hour)
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour-30*time.Second:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute-time.Second/2:
		return fmt.Sprintf("%dm", d.Round(time.Minute)/time.Minute)
	default:
		return fmt.Sprintf("%ds", d.Round(time.Second)/time.Second)
	}
}

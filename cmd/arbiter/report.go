package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/report"
)

func reportHelp() help {
	return help{
		summary: "report an experiment's arms: outcome rates with intervals and uplift",
		usage:   []string{"report --experiment ID [--archive URL | --redis URL] [flags]"},
		detail: `Counts, per arm of the experiment, the customers, decisions, MESSAGE and RETRY answers and
the outcomes reported for them (RecordOutcome): the recovery rate (customers with
OUTCOME_PAID or OUTCOME_RETRY_APPROVED), the median time from first decision to payment,
messages per recovered customer, the opt-out and complaint rates, each rate with a Wilson
interval; then the uplift of each arm against the holdout and the champion, as a difference
of proportions with Newcombe's hybrid score interval and a pooled two-proportion z-test
(docs/experiments.md). It reads the decision archive (--archive, or ARBITER_ARCHIVE), else
the store (--redis: the decisions still in Redis's replay window). --html also writes the
report as a self-contained page with charts.`,
		examples: []string{
			"arbiter report --experiment retry-backoff-2026q4 --archive postgres://arbiter@db/arbiter",
			"arbiter report --experiment retry-backoff-2026q4 --since 14d --html report.html",
			"arbiter report --experiment retry-backoff-2026q4 --redis redis://127.0.0.1:6379",
		},
	}
}

// runReport is the "report" command.
func runReport(ctx context.Context, args []string, env func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter report"
	fs := newFlagSet(cmd)
	experiment := fs.String("experiment", "", "the experiment's id, as in the policy bundle (required)")
	archiveDSN := fs.String("archive", "", "the decision archive (PostgreSQL URL) to read")
	redisURL := fs.String("redis", "", "without --archive: the Redis store to read (its replay window only)")
	since := fs.String("since", "90d", "count the decisions made since this long ago (Go syntax or whole days) or since an RFC 3339 time")
	confidence := fs.Float64("confidence", 0.95, "confidence level of the intervals and the test")
	htmlFile := fs.String("html", "", "also write the report as an HTML page to this file")
	pos, err := parseArgs(fs, reportHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	from, err := reportSince(*since, time.Now())
	switch {
	case len(pos) > 0:
		return unexpectedArgs(cmd, pos)
	case *experiment == "":
		return usagef(cmd, "report: --experiment is required")
	case *archiveDSN == "" && *redisURL == "":
		return usagef(cmd, "report: --archive (or ARBITER_ARCHIVE) or --redis is required")
	case err != nil:
		return usagef(cmd, "report: --since: %v", err)
	case *confidence <= 0 || *confidence >= 1:
		return usagef(cmd, "report: --confidence must be between 0 and 1")
	}

	var stats []archive.ArmStats
	if *archiveDSN != "" {
		a, err := archive.Open(ctx, *archiveDSN)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		defer a.Close()
		if stats, err = a.ExperimentArms(ctx, *experiment, from); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	} else {
		client, err := featurestore.Dial(*redisURL)
		if err != nil {
			return fmt.Errorf("report: %w", redactError(err, urlPassword(*redisURL)))
		}
		store := featurestore.NewRedis(client)
		defer store.Close()
		if stats, err = storeArms(ctx, store, *experiment, from); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if len(stats) == 0 {
		return fmt.Errorf("report: no decisions of experiment %q since %s", *experiment, from.Format(time.RFC3339))
	}
	res, err := report.Compute(*experiment, reportArms(stats), *confidence)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := res.WriteText(stdout); err != nil {
		return err
	}
	if *htmlFile != "" {
		f, err := os.Create(*htmlFile)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := errors.Join(res.WriteHTML(f), f.Close()); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", *htmlFile)
	}
	return nil
}

// reportSince reads --since: a duration back from now, or a time.
func reportSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := decision.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is neither a positive duration nor an RFC 3339 time", s)
	}
	return now.Add(-d), nil
}

// reportArms turns the counted arms into the report's, each with its role by its name.
func reportArms(stats []archive.ArmStats) []report.Arm {
	out := make([]report.Arm, 0, len(stats))
	for _, s := range stats {
		role := report.RoleChallenger
		switch s.Arm {
		case decision.ChampionArm:
			role = report.RoleChampion
		case decision.HoldoutArm:
			role = report.RoleHoldout
		}
		out = append(out, report.Arm{
			Name: s.Arm, Role: role, Customers: s.Customers, Decisions: s.Decisions,
			Messages: s.Messages, Retries: s.Retries, Recovered: s.Recovered,
			OptedOut: s.OptedOut, Complained: s.Complained, TimeToPay: s.TimeToPay,
		})
	}
	return out
}

// storeArms counts an experiment's arms from the decisions a Redis store still holds, as
// archive.ExperimentArms does from the archive.
func storeArms(ctx context.Context, store *featurestore.Redis, experiment string, since time.Time) ([]archive.ArmStats, error) {
	type key struct{ arm, customer string }
	seen := map[key]*archive.ArmCustomer{}
	err := store.ScanAudit(ctx, func(id string, body []byte) error {
		if len(body) == 0 {
			return nil // an outcome entry
		}
		var rec arbiterv1.DecisionRecord
		if err := proto.Unmarshal(body, &rec); err != nil {
			return fmt.Errorf("decision %s: %w", id, err)
		}
		resp := rec.GetResponse()
		at := resp.GetDecidedAt().AsTime()
		if resp.GetExperiment().GetId() != experiment || resp.GetDegraded() || at.Before(since) {
			return nil
		}
		k := key{resp.GetExperiment().GetArm(), rec.GetCustomerId()}
		c := seen[k]
		if c == nil {
			c = &archive.ArmCustomer{Arm: k.arm, FirstAt: at}
			seen[k] = c
		}
		c.Decisions++
		switch resp.GetAction() {
		case arbiterv1.Action_ACTION_MESSAGE:
			c.Messages++
		case arbiterv1.Action_ACTION_RETRY:
			c.Retries++
		}
		if at.Before(c.FirstAt) {
			c.FirstAt = at
		}
		_, outs, err := store.GetDecision(ctx, id)
		if err != nil && !errors.Is(err, featurestore.ErrNotFound) {
			return err
		}
		for _, o := range outs {
			switch arbiterv1.Outcome(o.Outcome) {
			case arbiterv1.Outcome_OUTCOME_PAID, arbiterv1.Outcome_OUTCOME_RETRY_APPROVED:
				if c.PaidAt == nil || o.OccurredAt.Before(*c.PaidAt) {
					t := o.OccurredAt
					c.PaidAt = &t
				}
			case arbiterv1.Outcome_OUTCOME_OPTED_OUT:
				c.OptedOut = true
			case arbiterv1.Outcome_OUTCOME_COMPLAINED:
				c.Complained = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Grouped by arm, as archive.AddArmCustomer wants them.
	keys := slices.SortedFunc(maps.Keys(seen), func(a, b key) int {
		return cmp.Or(strings.Compare(a.arm, b.arm), strings.Compare(a.customer, b.customer))
	})
	var out []archive.ArmStats
	for _, k := range keys {
		out = archive.AddArmCustomer(out, seen[k])
	}
	return out, nil
}

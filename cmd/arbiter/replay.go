package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/server"
)

func replayHelp() help {
	return help{
		summary: "re-evaluate recorded decisions under a policy version and report what would change",
		usage: []string{"replay --version V [--redis URL] [--examples N] [--event-type T] [--json]", "replay --policy PATH [flags]",
			"replay --policy PATH --archive POSTGRES_URL [--since TIME] [--until TIME] [flags]"},
		detail: `Each decision of the audit trail is decided again with the request, state snapshot and
decision time it was recorded with, under a published version (--version; "active" for the
active one) or a local bundle (--policy). It reads only. With --archive, the decisions come
from the decision archive in PostgreSQL (between --since and --until) instead of Redis, which
keeps them only for the replay window when serve runs with --archive.`,
		examples: []string{
			"arbiter replay --redis redis://127.0.0.1:6379 --version 2026.11.2",
			"arbiter replay --redis redis://127.0.0.1:6379 --policy ./next --event-type PAYMENT_FAILED",
			"ARBITER_REDIS=redis://127.0.0.1:6379 arbiter replay --version active --json",
			"arbiter replay --policy ./next --archive postgres://arbiter@db:5432/arbiter --since 2026-11-01T00:00:00Z",
		},
	}
}

// runReplay is the "replay" command: re-evaluate the recorded decisions of the audit trail
// under a policy version, each with the request, state snapshot and decision time it was
// recorded with, and report what would have changed. It reads only.
func runReplay(ctx context.Context, args []string, env func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter replay"
	fs := newFlagSet(cmd)
	redisURL := fs.String("redis", env("ARBITER_REDIS"), "Redis holding the audit trail and the published policies (ARBITER_REDIS)")
	version := fs.String("version", "", `published policy version to replay under ("active" for the active one)`)
	bundle := fs.String("policy", "", "replay under a local bundle (file or folder) instead of a published version")
	examples := fs.Int("examples", 10, "how many changed decisions to show")
	eventType := fs.String("event-type", "", "replay only events of this type, e.g. PAYMENT_FAILED")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	archiveDSN := fs.String("archive", "", "replay the decisions of this decision archive (PostgreSQL URL) instead of Redis's audit trail")
	since := fs.String("since", "", "with --archive: the first decision time to replay (RFC 3339; default: the archive's beginning)")
	until := fs.String("until", "", "with --archive: the decision time to stop before (RFC 3339; default: now)")
	pos, err := parseArgs(fs, replayHelp(), args, nil, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return unexpectedArgs(cmd, pos)
	case (*version == "") == (*bundle == ""):
		return usagef(cmd, "replay: give exactly one of --version and --policy")
	case *redisURL == "" && (*archiveDSN == "" || *version != ""):
		return usagef(cmd, "replay: --redis (or ARBITER_REDIS) is required: the audit trail and the published versions live in Redis")
	}
	var audit server.AuditScanner
	if *archiveDSN != "" {
		from, to, err := exportWindow(*since, *until)
		if err != nil {
			return usagef(cmd, "replay: %v", err)
		}
		a, err := archive.Open(ctx, *archiveDSN)
		if err != nil {
			return fmt.Errorf("replay: archive %s: %w", redactDSN(*archiveDSN), err)
		}
		defer a.Close()
		audit = archiveScanner{a: a, from: from, to: to}
	}
	var filter func(*arbiterv1.DecisionRecord) bool
	if *eventType != "" {
		name := "EVENT_TYPE_" + strings.TrimPrefix(strings.ToUpper(*eventType), "EVENT_TYPE_")
		et, ok := arbiterv1.EventType_value[name]
		if !ok {
			return usagef(cmd, "replay: unknown --event-type %q; valid values: %s", *eventType, eventTypeNames())
		}
		filter = func(rec *arbiterv1.DecisionRecord) bool { return int32(rec.GetEventType()) == et }
	}

	// Policy: a published version, or a local bundle.
	var pol *decision.Policy
	if *bundle != "" {
		if pol, err = decision.LoadPolicy(*bundle); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	} else {
		rdb, err := featurestore.Dial(*redisURL)
		if err != nil {
			return fmt.Errorf("replay: %w", redactError(err, urlPassword(*redisURL)))
		}
		defer rdb.Close()
		policies := policystore.NewRedis(rdb)
		v := *version
		if v == "active" {
			if v, err = policies.ActivePolicy(ctx); err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			if v == "" {
				return errors.New("replay: no version is active")
			}
		}
		b, err := policies.Bundle(ctx, v)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		if pol, err = decision.ParsePolicy(b.Files); err != nil {
			return fmt.Errorf("replay: version %s does not compile: %w", v, err)
		}
	}

	// Replay: the archive's decisions, or Redis's audit trail.
	if audit == nil {
		rdb, err := featurestore.Dial(*redisURL)
		if err != nil {
			return fmt.Errorf("replay: %w", redactError(err, urlPassword(*redisURL)))
		}
		defer rdb.Close()
		audit = featurestore.NewRedis(rdb)
	}
	rep, err := server.Replay(ctx, audit, pol, server.ReplayOptions{Examples: max(*examples, -1), Filter: filter})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if *asJSON {
		return writeReplayJSON(stdout, rep)
	}
	writeReplayText(stdout, rep)
	return nil
}

// replayJSON is the JSON form of a replay report.
type replayJSON struct {
	Policy         decision.PolicyRef `json:"policy"`
	Replayed       int                `json:"replayed"`
	Same           int                `json:"same"`
	Changed        int                `json:"changed"`
	Skipped        int                `json:"skipped"`
	DetailOnly     int                `json:"detail_only"`
	Actions        []replayActionJSON `json:"actions"`
	ReasonsAdded   map[string]int     `json:"reasons_added"`
	ReasonsRemoved map[string]int     `json:"reasons_removed"`
	Examples       []json.RawMessage  `json:"examples"`
}

type replayActionJSON struct {
	Recorded string `json:"recorded"`
	Replayed string `json:"replayed"`
	Count    int    `json:"count"`
}

func writeReplayJSON(w io.Writer, rep *server.ReplayReport) error {
	out := replayJSON{
		Policy: rep.Policy, Replayed: rep.Replayed, Same: rep.Same, Changed: rep.Changed, Skipped: rep.Skipped,
		DetailOnly: rep.DetailOnly, Actions: replayActions(rep), ReasonsAdded: rep.ReasonsAdded, ReasonsRemoved: rep.ReasonsRemoved,
	}
	for _, ex := range rep.Examples {
		b, err := json.Marshal(map[string]any{
			"decision_id": ex.DecisionID, "event_id": ex.EventID,
			"event_type":       strings.TrimPrefix(arbiterv1.EventType(ex.EventType).String(), "EVENT_TYPE_"),
			"recorded_version": ex.RecordedVersion,
			"recorded":         replayAnswer(ex.Recorded), "replayed": replayAnswer(ex.Replayed),
		})
		if err != nil {
			return err
		}
		out.Examples = append(out.Examples, b)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// replayAnswer is the short form of an answer: action, its main detail and reason codes.
func replayAnswer(r *arbiterv1.DecideResponse) map[string]any {
	m := map[string]any{"action": adminAction(r.GetAction())}
	var codes []string
	for _, x := range r.GetReasons() {
		codes = append(codes, x.GetCode())
	}
	m["reasons"] = codes
	switch {
	case r.GetMessage() != nil:
		m["channel"] = strings.TrimPrefix(r.GetMessage().GetChannel().String(), "CHANNEL_")
		m["template"] = r.GetMessage().GetTemplateId()
	case r.GetEscalate() != nil:
		m["queue"] = r.GetEscalate().GetQueue()
	case r.GetRetry() != nil:
		m["not_before"] = r.GetRetry().GetNotBefore().AsTime()
	}
	return m
}

func replayActions(rep *server.ReplayReport) []replayActionJSON {
	out := make([]replayActionJSON, 0, len(rep.Actions))
	for p, n := range rep.Actions {
		out = append(out, replayActionJSON{
			Recorded: adminAction(arbiterv1.Action(p.Active)), Replayed: adminAction(arbiterv1.Action(p.Shadow)), Count: n,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Recorded+out[i].Replayed < out[j].Recorded+out[j].Replayed
	})
	return out
}

func writeReplayText(w io.Writer, rep *server.ReplayReport) {
	fmt.Fprintf(w, "replayed %d recorded decisions under %s %s (%s)\n", rep.Replayed, rep.Policy.ID, rep.Policy.Version, rep.Policy.Digest)
	pct := func(n int) float64 {
		if rep.Replayed == 0 {
			return 0
		}
		return 100 * float64(n) / float64(rep.Replayed)
	}
	fmt.Fprintf(w, "  same     %d (%.1f%%)\n  changed  %d (%.1f%%), of which detail only %d\n  skipped  %d (answers the server gave itself: store conflicts, degraded)\n",
		rep.Same, pct(rep.Same), rep.Changed, pct(rep.Changed), rep.DetailOnly, rep.Skipped)
	if acts := replayActions(rep); len(acts) > 0 {
		fmt.Fprintln(w, "\nchanged decisions by action (recorded → replayed):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, a := range acts {
			fmt.Fprintf(tw, "  %s → %s\t%d\n", a.Recorded, a.Replayed, a.Count)
		}
		tw.Flush()
	}
	codes := map[string]bool{}
	for c := range rep.ReasonsAdded {
		codes[c] = true
	}
	for c := range rep.ReasonsRemoved {
		codes[c] = true
	}
	if len(codes) > 0 {
		names := make([]string, 0, len(codes))
		for c := range codes {
			names = append(names, c)
		}
		sort.Strings(names)
		fmt.Fprintln(w, "\nreason codes on changed decisions:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  CODE\tADDED\tREMOVED")
		for _, c := range names {
			fmt.Fprintf(tw, "  %s\t%d\t%d\n", c, rep.ReasonsAdded[c], rep.ReasonsRemoved[c])
		}
		tw.Flush()
	}
	if len(rep.Examples) > 0 {
		fmt.Fprintln(w, "\nexamples:")
		for _, ex := range rep.Examples {
			fmt.Fprintf(w, "  %s (event %s, %s, recorded under %s)\n    recorded: %s\n    replayed: %s\n", ex.DecisionID, ex.EventID,
				strings.TrimPrefix(arbiterv1.EventType(ex.EventType).String(), "EVENT_TYPE_"), ex.RecordedVersion,
				replayAnswerText(ex.Recorded), replayAnswerText(ex.Replayed))
		}
	}
}

func replayAnswerText(r *arbiterv1.DecideResponse) string {
	m := replayAnswer(r)
	var b strings.Builder
	b.WriteString(m["action"].(string))
	for _, k := range []string{"channel", "template", "queue", "not_before"} {
		if v, ok := m[k]; ok {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
	}
	codes, _ := m["reasons"].([]string)
	fmt.Fprintf(&b, " [%s]", strings.Join(codes, ","))
	return b.String()
}

// eventTypeNames lists the event types as --event-type takes them.
func eventTypeNames() string {
	var names []string
	for _, i := range slices.Sorted(maps.Keys(arbiterv1.EventType_name)) {
		n := arbiterv1.EventType_name[i]
		if i != 0 {
			names = append(names, strings.TrimPrefix(n, "EVENT_TYPE_"))
		}
	}
	return strings.Join(names, ", ")
}

// archiveScanner is the archive's decisions of [from, to) as a server.AuditScanner.
type archiveScanner struct {
	a        *archive.Archive
	from, to time.Time
}

func (s archiveScanner) ScanAudit(ctx context.Context, fn func(decisionID string, record []byte) error) error {
	return s.a.Scan(ctx, s.from, s.to, func(r archive.Record) error { return fn(r.DecisionID, r.Body) })
}

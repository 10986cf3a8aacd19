package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// maxEventFile bounds the size of an event file (the server's own limits are lower).
const maxEventFile = 1 << 20

func decideHelp() help {
	return help{
		summary: "ask a running server for a decision and print it",
		usage:   []string{"decide [FILE] [flags]", "decide --file FILE [flags]", "decide [flags] < FILE"},
		detail: `The input is a DecideRequest in protobuf JSON: from FILE (or --file), or from standard input
when neither is given or FILE is -. The answer is printed for a person: the action, its
reasons, the policy version; --explain adds the trace (rules, candidates, guardrails), --json
prints the raw response. The server is "arbiter serve" (or "make run").`,
		examples: []string{
			"arbiter decide event.json",
			"arbiter decide event.json --explain",
			"arbiter decide event.json --dry-run --json      # evaluate only; print the raw response",
			"arbiter decide --addr 10.0.0.5:50051 --tls --token \"$TOKEN\" < event.json",
		},
	}
}

// runDecide is the "decide" command: it sends one DecideRequest (protojson, from a file or
// stdin) to a running server and prints the decision, its reasons and, when asked for, the
// explanation; --json prints the raw response.
func runDecide(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	const cmd = "arbiter decide"
	fs := newFlagSet(cmd)
	addr := fs.String("addr", "127.0.0.1:50051", "server gRPC address")
	file := fs.String("file", "", "DecideRequest JSON file (the same as the FILE argument); - reads stdin (default: stdin)")
	raw := fs.Bool("json", false, "print the raw response as protobuf JSON")
	explain := fs.Bool("explain", false, "ask for the explanation (sets options.explain)")
	dryRun := fs.Bool("dry-run", false, "evaluate only: reserve and record nothing (sets options.dry_run)")
	token := fs.String("token", "", "bearer token, when the server requires authentication")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of the call")
	ctls := clientTLSFlags(fs, env)
	pos, err := parseArgs(fs, decideHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return usagef(cmd, "decide: want one event FILE, got %d arguments %q", len(pos), pos)
	case len(pos) == 1 && *file != "" && *file != pos[0]:
		return usagef(cmd, "decide: give the event file as FILE or as --file, not both (%q and %q)", pos[0], *file)
	case len(pos) == 1:
		*file = pos[0]
	}

	in := stdin
	if *file != "" && *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("decide: %w", err)
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, maxEventFile+1))
	if err != nil {
		return fmt.Errorf("decide: read event: %w", err)
	}
	if len(data) > maxEventFile {
		return fmt.Errorf("decide: event larger than %d bytes", maxEventFile)
	}
	req := &arbiterv1.DecideRequest{}
	if err := unmarshalRequest(data, req); err != nil {
		return fmt.Errorf("decide: parse event (a DecideRequest in protobuf JSON): %w", err)
	}
	if *explain || *dryRun {
		if req.Options == nil {
			req.Options = &arbiterv1.DecideOptions{}
		}
		req.Options.Explain = req.Options.Explain || *explain
		req.Options.DryRun = req.Options.DryRun || *dryRun
	}

	conn, ctx, cancel, err := ctls.dial(ctx, *addr, *token, *timeout)
	if err != nil {
		return fmt.Errorf("decide: %w", err)
	}
	defer conn.Close()
	defer cancel()
	resp, err := arbiterv1.NewDecisionServiceClient(conn).Decide(ctx, req)
	if err != nil {
		return fmt.Errorf("decide: %w", callError(ctx, *addr, "", err))
	}
	if *raw {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return renderDecision(stdout, resp)
}

// enumName strips an enum value's prefix: "ACTION_MESSAGE" → "MESSAGE".
func enumName(s fmt.Stringer, prefix string) string { return strings.TrimPrefix(s.String(), prefix) }

func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "now"
	}
	return ts.AsTime().Format(time.RFC3339)
}

// renderDecision prints a decision for a person.
func renderDecision(w io.Writer, r *arbiterv1.DecideResponse) error {
	var b strings.Builder
	fmt.Fprintf(&b, "decision   %s\n", r.GetDecisionId())
	fmt.Fprintf(&b, "action     %s\n", describeAction(r))
	if len(r.GetReasons()) > 0 {
		for i, rs := range r.GetReasons() {
			label := ""
			if i == 0 {
				label = "reasons"
			}
			fmt.Fprintf(&b, "%-10s %s", label, rs.GetCode())
			if rs.GetRuleId() != "" {
				fmt.Fprintf(&b, " [%s]", rs.GetRuleId())
			}
			if rs.GetMessage() != "" {
				fmt.Fprintf(&b, ": %s", rs.GetMessage())
			}
			b.WriteByte('\n')
		}
	}
	if p := r.GetPolicy(); p != nil {
		fmt.Fprintf(&b, "policy     %s %s (%s)\n", p.GetId(), p.GetVersion(), p.GetDigest())
	}
	if x := r.GetExperiment(); x != nil {
		fmt.Fprintf(&b, "experiment %s, arm %s\n", x.GetId(), x.GetArm())
	}
	fmt.Fprintf(&b, "decided at %s\n", when(r.GetDecidedAt()))
	var flags []string
	if r.GetReplayed() {
		flags = append(flags, "replayed (this event id was decided before)")
	}
	if r.GetDegraded() {
		flags = append(flags, "degraded (decided without the customer's stored state)")
	}
	if r.GetDryRun() {
		flags = append(flags, "dry run (nothing reserved or recorded)")
	}
	if p := r.GetPriorDecisionId(); p != "" {
		flags = append(flags, "this event id was already decided as "+p+": evaluated afresh here; without --dry-run it replays that decision")
	}
	for i, f := range flags {
		label := ""
		if i == 0 {
			label = "note"
		}
		fmt.Fprintf(&b, "%-10s %s\n", label, f)
	}
	if a := r.GetAction(); (a == arbiterv1.Action_ACTION_MESSAGE || a == arbiterv1.Action_ACTION_RETRY) && !r.GetDryRun() && !r.GetDegraded() {
		fmt.Fprintf(&b, "confirm    right before executing it: arbiter confirm %s (DecisionService/Confirm)\n", r.GetDecisionId())
	}
	if x := r.GetExplanation(); x != nil {
		renderExplanation(&b, x)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeAction(r *arbiterv1.DecideResponse) string {
	switch d := r.GetDetail().(type) {
	case *arbiterv1.DecideResponse_Retry:
		s := fmt.Sprintf("RETRY not before %s", when(d.Retry.GetNotBefore()))
		if d.Retry.GetAcquirer() != "" {
			s += " via acquirer " + d.Retry.GetAcquirer()
		}
		if d.Retry.GetAttempt() > 0 {
			s += fmt.Sprintf(" (attempt %d)", d.Retry.GetAttempt())
		}
		return s
	case *arbiterv1.DecideResponse_Message:
		m := d.Message
		s := fmt.Sprintf("MESSAGE by %s, template %q, purpose %s, send %s",
			enumName(m.GetChannel(), "CHANNEL_"), m.GetTemplateId(), enumName(m.GetPurpose(), "PURPOSE_"), when(m.GetSendAt()))
		if fb := m.GetFallbackChannels(); len(fb) > 0 {
			names := make([]string, len(fb))
			for i, c := range fb {
				names[i] = enumName(c, "CHANNEL_")
			}
			s += "; fallback " + strings.Join(names, ", ")
		}
		return s
	case *arbiterv1.DecideResponse_Escalate:
		e := d.Escalate
		s := fmt.Sprintf("ESCALATE to queue %q, priority %d", e.GetQueue(), e.GetPriority())
		if len(e.GetContext()) > 0 {
			keys := make([]string, 0, len(e.GetContext()))
			for k := range e.GetContext() {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				s += fmt.Sprintf("\n           context %s = %s", k, e.GetContext()[k])
			}
		}
		return s
	case *arbiterv1.DecideResponse_Suppress:
		if d.Suppress.GetUntil() != nil {
			return "SUPPRESS until " + when(d.Suppress.GetUntil())
		}
		return "SUPPRESS"
	}
	return enumName(r.GetAction(), "ACTION_")
}

func renderExplanation(b *strings.Builder, x *arbiterv1.Explanation) {
	b.WriteString("\nexplanation\n")
	if x.GetSummary() != "" {
		fmt.Fprintf(b, "  %s\n", x.GetSummary())
	}
	if x.GetDeclineClass() != "" {
		fmt.Fprintf(b, "  decline class: %s\n", x.GetDeclineClass())
	}
	if len(x.GetRules()) > 0 {
		b.WriteString("  rules:\n")
		for _, r := range x.GetRules() {
			mark := "no match"
			if r.GetMatched() {
				mark = "matched"
			}
			if r.GetError() != "" {
				mark = "error: " + r.GetError()
			}
			fmt.Fprintf(b, "    %-32s %s\n", r.GetRuleId(), mark)
		}
	}
	if len(x.GetCandidates()) > 0 {
		b.WriteString("  candidates:\n")
		for _, c := range x.GetCandidates() {
			fmt.Fprintf(b, "    %-7s %-8s %s (priority %d)", c.GetOutcome(), enumName(c.GetAction(), "ACTION_"), c.GetRuleId(), c.GetPriority())
			if c.GetWhy() != "" {
				fmt.Fprintf(b, ": %s", c.GetWhy())
			}
			b.WriteByte('\n')
		}
	}
	if len(x.GetGuardrails()) > 0 {
		b.WriteString("  guardrails:\n")
		for _, g := range x.GetGuardrails() {
			fmt.Fprintf(b, "    %-20s %-6s on %s", g.GetGuardrail(), g.GetVerdict(), g.GetRuleId())
			if g.GetReasonCode() != "" {
				fmt.Fprintf(b, " %s", g.GetReasonCode())
			}
			if g.GetDetail() != "" {
				fmt.Fprintf(b, ": %s", g.GetDetail())
			}
			b.WriteByte('\n')
		}
	}
	if len(x.GetCounters()) > 0 {
		b.WriteString("  counters:\n")
		for _, c := range x.GetCounters() {
			fmt.Fprintf(b, "    %-32s %d of %d in %s\n", c.GetName(), c.GetCount(), c.GetLimit(), c.GetWindow().AsDuration())
		}
	}
	if len(x.GetFeatures()) > 0 {
		keys := make([]string, 0, len(x.GetFeatures()))
		for k := range x.GetFeatures() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("  features:\n")
		for _, k := range keys {
			v, _ := protojson.Marshal(x.GetFeatures()[k])
			fmt.Fprintf(b, "    %s = %s\n", k, v)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

func confirmHelp() help {
	return help{
		summary: "ask a running server whether a MESSAGE or RETRY decision may still be executed",
		usage:   []string{"confirm DECISION_ID [flags]"},
		detail: `An executor confirms a decision right before it sends the message or runs the retry: the
server re-checks what can have changed since (opt-out, consent, fraud hold, vulnerability,
payment, a newer decision, quiet hours, expiry; docs/guardrails.md). "proceed" means execute
it; "do not execute" gives the reasons, and the decision's cap reservation or ledger slot has
been released. The exit status is 0 either way; 1 when the call failed.`,
		examples: []string{
			"arbiter confirm a3-01a211a3-3fa9-75e6-b012-2c693d9dfa6d",
			"arbiter confirm --addr 10.0.0.5:50051 --tls --token \"$TOKEN\" a3-01a211a3-3fa9-75e6-b012-2c693d9dfa6d",
		},
	}
}

// runConfirm is the "confirm" command: DecisionService/Confirm for one decision id.
func runConfirm(ctx context.Context, args []string, env func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter confirm"
	fs := newFlagSet(cmd)
	addr := fs.String("addr", "127.0.0.1:50051", "server gRPC address")
	token := fs.String("token", "", "bearer token, when the server requires authentication")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of the call")
	ctls := clientTLSFlags(fs, env)
	pos, err := parseArgs(fs, confirmHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef(cmd, "confirm: want one DECISION_ID, got %d arguments", len(pos))
	}
	conn, ctx, cancel, err := ctls.dial(ctx, *addr, *token, *timeout)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	defer conn.Close()
	defer cancel()
	resp, err := arbiterv1.NewDecisionServiceClient(conn).Confirm(ctx, &arbiterv1.ConfirmRequest{DecisionId: pos[0]})
	if err != nil {
		return fmt.Errorf("confirm: %w", callError(ctx, *addr, "", err))
	}
	var b strings.Builder
	if resp.GetProceed() {
		b.WriteString("proceed    execute it\n")
	} else {
		b.WriteString("proceed    NO: do not execute it\n")
	}
	for i, r := range resp.GetReasons() {
		label := ""
		if i == 0 {
			label = "reasons"
		}
		fmt.Fprintf(&b, "%-10s %s: %s\n", label, r.GetCode(), r.GetMessage())
	}
	fmt.Fprintf(&b, "checked at %s\n", when(resp.GetCheckedAt()))
	_, err = io.WriteString(stdout, b.String())
	return err
}

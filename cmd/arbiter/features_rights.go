package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

func featuresExportHelp() help {
	return help{
		summary: "write everything Arbiter holds about a customer, as JSON (GDPR article 15)",
		usage:   []string{"features export CUSTOMER_ID [flags]"},
		detail: `Calls FeatureService/ExportCustomer on a running server (admin role) and writes the answer as
JSON: the customer's live state, every decision with its outcomes and confirmations (from
the store and, when the server has one, the archive), and the tombstones of earlier erasures.`,
		examples: []string{
			"arbiter features export cust-42 > cust-42.json",
			"arbiter features export --addr 10.0.0.5:50051 --tls --token \"$TOKEN\" cust-42",
		},
	}
}

func featuresEraseHelp() help {
	return help{
		summary: "erase a customer's data, keeping the suppression record (GDPR article 17)",
		usage:   []string{"features erase CUSTOMER_ID --reason TEXT [flags]"},
		detail: `Calls FeatureService/EraseCustomer on a running server (admin role). The customer's features,
decisions, outcomes and confirmations are erased from the store and the archive. Kept, and
listed with the basis for keeping them: protective flags (opt-out, fraud hold, vulnerability)
and consent denials, so the customer is never contacted against them; frequency-cap
reservations until they age out; the retry ledger for the 120-day dispute window; retry
stops. A tombstone records who erased what and when (docs/guardrails.md, "The customer's
rights"). Repeating the command is safe.`,
		examples: []string{
			"arbiter features erase cust-42 --reason \"DSR-1234\"",
		},
	}
}

func runFeaturesExport(ctx context.Context, args []string, env func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter features export"
	fs := newFlagSet(cmd)
	addr := fs.String("addr", "127.0.0.1:50051", "server gRPC address")
	token := fs.String("token", "", "bearer token of a client with the admin role, when the server requires one (ARBITER_TOKEN)")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline of the call")
	ctls := clientTLSFlags(fs, env)
	pos, err := parseArgs(fs, featuresExportHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef(cmd, "features export: want one CUSTOMER_ID, got %d arguments", len(pos))
	}
	conn, ctx, cancel, err := ctls.dial(ctx, *addr, *token, *timeout)
	if err != nil {
		return fmt.Errorf("features export: %w", err)
	}
	defer conn.Close()
	defer cancel()
	resp, err := arbiterv1.NewFeatureServiceClient(conn).ExportCustomer(ctx, &arbiterv1.ExportCustomerRequest{CustomerId: pos[0]})
	if err != nil {
		return fmt.Errorf("features export: %w", callError(ctx, *addr, "", err))
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
	if err != nil {
		return fmt.Errorf("features export: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

func runFeaturesErase(ctx context.Context, args []string, env func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter features erase"
	fs := newFlagSet(cmd)
	addr := fs.String("addr", "127.0.0.1:50051", "server gRPC address")
	token := fs.String("token", "", "bearer token of a client with the admin role, when the server requires one (ARBITER_TOKEN)")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline of the call")
	reason := fs.String("reason", "", "why, for the tombstone: a request or ticket id, never customer data (required)")
	ctls := clientTLSFlags(fs, env)
	pos, err := parseArgs(fs, featuresEraseHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usagef(cmd, "features erase: want one CUSTOMER_ID, got %d arguments", len(pos))
	case strings.TrimSpace(*reason) == "":
		return usagef(cmd, "features erase: --reason is required")
	}
	conn, ctx, cancel, err := ctls.dial(ctx, *addr, *token, *timeout)
	if err != nil {
		return fmt.Errorf("features erase: %w", err)
	}
	defer conn.Close()
	defer cancel()
	resp, err := arbiterv1.NewFeatureServiceClient(conn).EraseCustomer(ctx, &arbiterv1.EraseCustomerRequest{CustomerId: pos[0], Reason: *reason})
	if err != nil {
		return fmt.Errorf("features erase: %w", callError(ctx, *addr, "", err))
	}
	e := resp.GetErasure()
	var b strings.Builder
	fmt.Fprintf(&b, "erased     %s at %s by %s\n", e.GetCustomerId(), when(e.GetErasedAt()), e.GetActor())
	kinds := make([]string, 0, len(e.GetErased()))
	for k := range e.GetErased() {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-20s %d\n", k, e.GetErased()[k])
	}
	if len(e.GetKept()) > 0 {
		b.WriteString("kept\n")
	}
	for _, k := range e.GetKept() {
		until := "as long as the suppression record"
		if k.GetUntil() != nil {
			until = "until " + when(k.GetUntil())
		}
		fmt.Fprintf(&b, "  %-20s %d, %s: %s\n", k.GetKind(), k.GetCount(), until, k.GetBasis())
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

// Command arbiter is Arbiter's single binary: the decision service and the tools around it.
//
//	arbiter serve            run the gRPC decision service
//	arbiter decide           ask a running server for a decision and print it
//	arbiter policy ...       lint, test and diff policy bundles
//	arbiter features ...     import customer features
//	arbiter loadtest         drive load against a server and report latency
//
// Run "arbiter COMMAND -h" for the flags of a command. Every flag can also be set with an
// ARBITER_* environment variable (for example --grpc-addr as ARBITER_GRPC_ADDR).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "arbiter:", err)
		os.Exit(1)
	}
}

// command is one subcommand of the arbiter binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the gRPC decision service", runServe},
		{"decide", "ask a running server for a decision and print it", runDecide},
		{"policy", "lint, test and diff policy bundles", runPolicy},
		{"features", "import customer features into the store", runFeatures},
		{"loadtest", "drive load against a server and report latency", runLoadtest},
		{"replay", "re-evaluate recorded decisions under a policy version", runReplay},
		{"audit", "export the audit trail from Redis to a JSON-lines file", runAudit},
	}
}

// run dispatches to a subcommand. It is main without the process: tests call it directly.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], env, stdin, stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: arbiter COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

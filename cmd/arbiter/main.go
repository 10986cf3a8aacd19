// Command arbiter is Arbiter's single binary: the decision service and the tools around it.
//
//	arbiter serve            run the gRPC decision service
//	arbiter decide           ask a running server for a decision and print it
//	arbiter policy ...       lint, test and diff policy bundles; publish and activate versions
//	arbiter features ...     import customer features
//	arbiter audit ...        export the audit trail
//	arbiter loadtest         drive load against a server and report latency
//	arbiter replay           re-evaluate recorded decisions under a policy version
//	arbiter version          print the version, commit, Go version and policy schema version
//
// Run "arbiter COMMAND --help" for the description, flags and examples of a command. Every
// flag can also be set with an ARBITER_* environment variable (for example --grpc-addr as
// ARBITER_GRPC_ADDR). Every command exits 0 on success, 1 when it fails and 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	reportError(os.Stderr, err)
	os.Exit(exitCode(err))
}

// runFunc is how a command runs: its arguments after its name, the environment, and the
// process's standard streams.
type runFunc func(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error

// command is a command of the arbiter binary: a leaf that runs, or a parent with
// subcommands.
type command struct {
	name    string
	help    func() help
	run     runFunc   // a leaf's
	subs    []command // a parent's, in the order its help lists them
	section string    // the heading its parent's help lists it under; empty: "Subcommands"
}

// exec runs c, named path ("arbiter policy lint"), with args.
func (c command) exec(ctx context.Context, path string, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if c.subs != nil {
		return runParent(ctx, path, c, args, env, stdin, stdout, stderr)
	}
	return c.run(ctx, args, env, stdin, stdout, stderr)
}

func commands() []command {
	cmds := []command{
		{name: "serve", help: serveHelp, run: runServe},
		{name: "decide", help: decideHelp, run: runDecide},
		{name: "confirm", help: confirmHelp, run: runConfirm},
		{name: "policy", help: policyHelp, subs: policyCommands()},
		{name: "features", help: featuresHelp, subs: []command{
			{name: "import", help: featuresImportHelp, run: runFeaturesImport},
			{name: "export", help: featuresExportHelp, run: runFeaturesExport},
			{name: "erase", help: featuresEraseHelp, run: runFeaturesErase},
		}},
		{name: "audit", help: auditHelp, subs: []command{
			{name: "export", help: auditExportHelp, run: runAuditExport},
		}},
		{name: "loadtest", help: loadtestHelp, run: runLoadtest},
		{name: "replay", help: replayHelp, run: runReplay},
		{name: "report", help: reportHelp, run: runReport},
		{name: "version", help: versionHelp, run: runVersion},
	}
	for i := range cmds {
		cmds[i].section = "Commands"
	}
	return cmds
}

// arbiterHelp is the help of the binary itself.
func arbiterHelp() help {
	return help{
		summary: "Arbiter's real-time decisioning service and the tools around it",
		usage:   []string{"COMMAND [SUBCOMMAND] [flags]", "--version"},
		detail: `Every flag can also be set with an ARBITER_* environment variable: --grpc-addr as
ARBITER_GRPC_ADDR. A flag on the command line wins.`,
		examples: []string{
			"arbiter serve                            # serve on 127.0.0.1:50051 with the default policy",
			"arbiter decide event.json --explain      # ask it for a decision",
			"arbiter policy test policies/default     # run a bundle's test cases",
			"arbiter help policy lint                 # the help of a command",
		},
	}
}

// run dispatches to a command. It is main without the process: tests call it directly. A
// request for help returns nil.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := command{name: "arbiter", help: arbiterHelp, subs: commands()}
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		return runVersion(ctx, args[1:], env, stdin, stdout, stderr)
	}
	err := runParent(ctx, "arbiter", root, args, env, stdin, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// newFlagSet returns the flag set of the command named path ("arbiter decide"): parseArgs
// reports its errors and prints its help.
func newFlagSet(path string) *flag.FlagSet {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// unexpectedArgs is the usage error of the command cmd for positional arguments it does not
// take.
func unexpectedArgs(cmd string, pos []string) error {
	return usagef(cmd, "%s: unexpected arguments %q", shortName(cmd), pos)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit statuses, the same for every command.
const (
	exitOK      = 0 // the command did what it was asked
	exitFailure = 1 // it could not: a failed test, an invalid bundle, a server that is down...
	exitUsage   = 2 // it was called wrongly: an unknown flag, a bad value, a missing argument
)

// exitStatusHelp ends every command's help.
const exitStatusHelp = "Exit status: 0 on success, 1 when the command fails, 2 on bad usage (an unknown flag or\nsubcommand, a bad value, a missing or extra argument)."

// usageError is an error in how a command was called. It exits with status 2, and the message
// says where the usage is instead of printing it.
type usageError struct {
	cmd string // "arbiter decide"
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError of the command cmd ("arbiter policy lint").
func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// exitCode returns the exit status for the error run returned.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	}
	return exitFailure
}

// reportError prints the error run returned, the way main does, and for a usage error where
// the usage is.
func reportError(w io.Writer, err error) {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	fmt.Fprintln(w, "arbiter:", err)
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd != "" {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", ue.cmd)
	}
}

// help is what a command prints for -h and --help.
type help struct {
	summary  string   // one line: what the command does, lower case, no period
	usage    []string // synopsis lines, after "arbiter "
	detail   string   // optional paragraphs between the usage and the flags
	examples []string // command lines; a "# comment" may follow
}

// write prints the help of the command named cmd ("arbiter decide"), with the flags of fs
// when it has any, and the subcommands subs for a parent command.
func (h help) write(w io.Writer, cmd string, fs *flag.FlagSet, subs []command) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n\nUsage:\n", cmd, h.summary)
	for _, u := range h.usage {
		fmt.Fprintf(&b, "  arbiter %s\n", u)
	}
	if h.detail != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(h.detail, "\n"))
	}
	if len(subs) > 0 {
		section := ""
		for i, s := range subs {
			if s.section != section || i == 0 {
				section = s.section
				title := "Subcommands"
				if section != "" {
					title = section
				}
				fmt.Fprintf(&b, "\n%s:\n", title)
			}
			fmt.Fprintf(&b, "  %-14s %s\n", s.name, s.help().summary)
		}
	}
	_, _ = io.WriteString(w, b.String())
	b.Reset()
	hasFlags := false
	if fs != nil {
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	}
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	b.WriteString("\nExamples:\n")
	for _, e := range h.examples {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	if len(subs) > 0 {
		word := "SUBCOMMAND"
		if cmd == "arbiter" {
			word = "COMMAND"
		}
		fmt.Fprintf(&b, "\nRun '%s %s --help' for the flags of a %s.\n", cmd, word, strings.ToLower(word))
	}
	fmt.Fprintf(&b, "\n%s\n", exitStatusHelp)
	_, _ = io.WriteString(w, b.String())
}

// isHelpArg reports whether arg asks for help.
func isHelpArg(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// parseArgs parses the flags of the command fs names ("arbiter decide"), which may come
// before, between or after its positional arguments (all are positional after "--"), and
// returns the positional ones. A flag not on the command line takes its value from
// ARBITER_<NAME> (upper case, dashes as underscores) when env is not nil and the variable is
// set. With -h or --help it prints h to stdout and returns flag.ErrHelp; a bad flag or value
// is a usageError naming it, without the whole usage.
func parseArgs(fs *flag.FlagSet, h help, args []string, env func(string) string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			h.write(stdout, fs.Name(), fs, nil)
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", shortName(fs.Name()), err)}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if env == nil {
		return pos, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		name := "ARBITER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := env(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, &usageError{cmd: fs.Name(), err: fmt.Errorf("%s: %w", shortName(fs.Name()), err)}
	}
	return pos, nil
}

// runParent runs the subcommand of the parent command c that args name. Without one it
// prints c's subcommands to stderr (a usage error); with -h, --help or help it prints them to
// stdout, and "help SUB" is "SUB --help".
func runParent(ctx context.Context, path string, c command, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		c.help().write(stderr, path, nil, c.subs)
		if path == "arbiter" {
			return usagef(path, "no command given")
		}
		return usagef(path, "%s: want a subcommand", shortName(path))
	}
	if isHelpArg(args[0]) {
		if args[0] == "help" && len(args) > 1 {
			return runParent(ctx, path, c, append(args[1:], "--help"), env, stdin, stdout, stderr)
		}
		c.help().write(stdout, path, nil, c.subs)
		return flag.ErrHelp
	}
	for _, s := range c.subs {
		if s.name == args[0] {
			return s.exec(ctx, path+" "+s.name, args[1:], env, stdin, stdout, stderr)
		}
	}
	if path == "arbiter" {
		return usagef(path, "unknown command %q", args[0])
	}
	return usagef(path, "%s: unknown subcommand %q", shortName(path), args[0])
}

// shortName is a command's name in its error messages: "policy lint" for "arbiter policy
// lint".
func shortName(path string) string { return strings.TrimPrefix(path, "arbiter ") }

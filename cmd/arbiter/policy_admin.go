package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/server"
)

// policyAdminCommand is one governance subcommand of "arbiter policy": it talks to a running
// server's PolicyService (admin role).
type policyAdminCommand struct {
	name     string
	usage    string
	summary  string
	examples []string
	// version is set for the commands whose first argument is a policy version: a NotFound
	// answer names it.
	version bool
	run     func(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, args []string, stdout io.Writer) error
	flags   func(fs *flag.FlagSet)
}

// help is the command's help.
func (c policyAdminCommand) help() help {
	return help{
		summary:  c.summary,
		usage:    []string{"policy " + c.usage + " [flags]"},
		detail:   "The server is a running \"arbiter serve\" (--addr, ARBITER_ADDR); the call needs a token with the\nadmin role when the server requires tokens (--token, ARBITER_TOKEN). See docs/governance.md.",
		examples: c.examples,
	}
}

// policyAdminCommands are the governance subcommands, in the order the help lists them.
func policyAdminCommands() []policyAdminCommand {
	return []policyAdminCommand{
		{name: "publish", usage: "publish PATH --comment WHY", summary: "upload a bundle (file or folder); it must compile and pass its own test cases",
			examples: []string{`arbiter policy publish ./next --comment "refer arrears at 30 days"`}, run: runPolicyPublish, flags: adminCommentFlag},
		{name: "list", usage: "list", summary: "list published versions, newest first; * marks the active one, s the shadow",
			examples: []string{"arbiter policy list", "ARBITER_ADDR=10.0.0.5:50051 arbiter policy list --tls"}, run: runPolicyList},
		{name: "show", usage: "show VERSION [--files]", summary: "show a version's metadata (and its files)", version: true,
			examples: []string{"arbiter policy show 2026.11.1", "arbiter policy show 2026.11.1 --files"}, run: runPolicyShow,
			flags: func(fs *flag.FlagSet) { fs.Bool("files", false, "print the files too") }},
		{name: "activate", usage: "activate VERSION --comment WHY", summary: "make a published version the one every replica serves", version: true,
			examples: []string{`arbiter policy activate 2026.11.2 --comment "refer arrears at 30 days"`}, run: runPolicyActivate, flags: adminCommentFlag},
		{name: "approve", usage: "approve VERSION --comment WHAT-WAS-REVIEWED", summary: "approve a published version for activation (four eyes: not by its author)", version: true,
			examples: []string{`arbiter policy approve 2026.11.2 --comment "reviewed the diff and the shadow report"`}, run: runPolicyApprove, flags: adminCommentFlag},
		{name: "rollback", usage: "rollback --comment WHY", summary: "re-activate the version active before the current one",
			examples: []string{`arbiter policy rollback --comment "too many referrals"`}, run: runPolicyRollback, flags: adminCommentFlag},
		{name: "shadow", usage: "shadow VERSION --share S --comment WHY | shadow --stop --comment WHY", summary: "evaluate a version beside the active one on a share of live traffic", version: true,
			run: runPolicyShadow, flags: adminShadowFlags,
			examples: []string{`arbiter policy shadow 2026.11.2 --share 0.1 --comment "compare before activating"`, `arbiter policy shadow --stop --comment "seen enough"`}},
		{name: "shadow-report", usage: "shadow-report", summary: "how the shadow version's answers differ from the active one's",
			examples: []string{"arbiter policy shadow-report"}, run: runPolicyShadowReport},
		{name: "log", usage: "log [--limit N]", summary: "show the change log, newest first",
			examples: []string{"arbiter policy log", "arbiter policy log --limit 100"}, run: runPolicyLog,
			flags: func(fs *flag.FlagSet) { fs.Int("limit", 20, "most changes to show") }},
	}
}

func adminCommentFlag(fs *flag.FlagSet) {
	fs.String("comment", "", "why (required; recorded in the change log)")
}

func adminShadowFlags(fs *flag.FlagSet) {
	adminCommentFlag(fs)
	fs.Float64("share", 0.1, "share of live decisions to evaluate in shadow, above 0 and at most 1")
	fs.Bool("stop", false, "stop the shadow evaluation")
}

// runPolicyAdmin runs a governance subcommand of "arbiter policy". handled is false when
// args do not name one, and "arbiter policy" goes on with its other subcommands.
func runPolicyAdmin(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) (handled bool, err error) {
	if len(args) == 0 {
		return false, nil
	}
	cmds := policyAdminCommands()
	i := slices.IndexFunc(cmds, func(c policyAdminCommand) bool { return c.name == args[0] })
	if i < 0 {
		return false, nil
	}
	cmd := cmds[i]
	path := "arbiter policy " + cmd.name
	fs := newFlagSet(path)
	conn := policyAdminConnFlags(fs, env)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseArgs(fs, cmd.help(), args[1:], nil, stdout)
	if err != nil {
		return true, err
	}
	if conn.token == "" {
		// Read after parsing, not as the flag's default: the help would print the default.
		conn.token = env("ARBITER_TOKEN")
	}
	c, err := conn.dial()
	if err != nil {
		return true, err
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	err = cmd.run(c.outgoing(ctx), c, fs, pos, stdout)
	var ue *adminUsageError
	if errors.As(err, &ue) {
		return true, usagef(path, "policy %s: %s", cmd.name, ue.msg)
	}
	what := ""
	if cmd.version && len(pos) > 0 {
		what = fmt.Sprintf("policy version %q", pos[0])
	}
	err = callError(ctx, conn.addr, what, err)
	var nf *notFoundError
	if isServerDown(err) || errors.As(err, &nf) {
		return true, fmt.Errorf("policy %s: %w", cmd.name, err)
	}
	return true, err
}

// policyAdminConn are the connection flags of the governance subcommands.
type policyAdminConn struct {
	addr    string
	token   string
	tls     *clientTLS
	timeout time.Duration
}

func policyAdminConnFlags(fs *flag.FlagSet, env func(string) string) *policyAdminConn {
	c := &policyAdminConn{}
	fs.StringVar(&c.addr, "addr", adminEnvOr(env, "ARBITER_ADDR", "127.0.0.1:50051"), "server gRPC address (ARBITER_ADDR)")
	fs.StringVar(&c.token, "token", "", "bearer token of a client with the admin role (ARBITER_TOKEN)")
	c.tls = clientTLSFlags(fs, env)
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline of the call")
	return c
}

func adminEnvOr(env func(string) string, name, def string) string {
	if v := env(name); v != "" {
		return v
	}
	return def
}

// policyAdminClient is a PolicyService client with the caller's token.
type policyAdminClient struct {
	arbiterv1.PolicyServiceClient
	conn  *grpc.ClientConn
	token string
}

func (c *policyAdminConn) dial() (*policyAdminClient, error) {
	creds, err := c.tls.credentials()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	return &policyAdminClient{PolicyServiceClient: arbiterv1.NewPolicyServiceClient(conn), conn: conn, token: c.token}, nil
}

func (c *policyAdminClient) close() { c.conn.Close() }

func (c *policyAdminClient) outgoing(ctx context.Context) context.Context {
	if c.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
}

func adminFlagString(fs *flag.FlagSet, name string) string { return fs.Lookup(name).Value.String() }

func adminFlagBool(fs *flag.FlagSet, name string) bool {
	g, ok := fs.Lookup(name).Value.(flag.Getter)
	return ok && g.Get() == true
}

// adminUsageError is a governance command called with the wrong arguments; runPolicyAdmin
// makes it a usage error of the command.
type adminUsageError struct{ msg string }

func (e *adminUsageError) Error() string { return e.msg }

func adminWantArgs(pos []string, n int, what string) error {
	if len(pos) != n {
		return &adminUsageError{msg: fmt.Sprintf("want %s, got %d arguments", what, len(pos))}
	}
	return nil
}

func runPolicyPublish(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 1, "the bundle's PATH"); err != nil {
		return err
	}
	files, err := readPolicyBundleFiles(pos[0])
	if err != nil {
		return err
	}
	resp, err := c.PublishPolicy(ctx, &arbiterv1.PublishPolicyRequest{Files: files, Comment: adminFlagString(fs, "comment")})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	v := resp.GetVersion()
	if !resp.GetCreated() {
		fmt.Fprintf(stdout, "version %s of %s was already published with this content (%s); nothing changed\n", v.GetVersion(), v.GetId(), v.GetDigest())
		return nil
	}
	fmt.Fprintf(stdout, "published %s version %s (%s): %d test cases passed\nactivate it with: arbiter policy activate %s --comment WHY\n",
		v.GetId(), v.GetVersion(), v.GetDigest(), v.GetTestCases(), v.GetVersion())
	return nil
}

// readPolicyBundleFiles reads a bundle as the server compiles it: one YAML file, or a folder's
// *.yaml and *.yml files with the test files under tests/.
func readPolicyBundleFiles(p string) (map[string][]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read bundle: %w", err)
		}
		return map[string][]byte{filepath.Base(p): b}, nil
	}
	fsys := os.DirFS(p)
	files := map[string][]byte{}
	for _, sub := range []string{".", "tests"} {
		entries, err := fs.ReadDir(fsys, sub)
		if err != nil {
			if sub != "." && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("read bundle: %w", err)
		}
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				continue
			}
			name := path.Join(sub, n)
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, fmt.Errorf("read bundle: %w", err)
			}
			files[name] = b
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read bundle %s: no *.yaml files", p)
	}
	return files, nil
}

func runPolicyList(ctx context.Context, c *policyAdminClient, _ *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	resp, err := c.ListPolicies(ctx, &arbiterv1.ListPoliciesRequest{})
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\tVERSION\tPOLICY\tDIGEST\tAUTHOR\tPUBLISHED\tTESTS\tCOMMENT")
	for _, v := range resp.GetVersions() {
		mark := ""
		if v.GetVersion() == resp.GetActiveVersion() {
			mark += "*"
		}
		if v.GetVersion() == resp.GetShadowVersion() {
			mark += "s"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", mark, v.GetVersion(), v.GetId(), adminShortDigest(v.GetDigest()),
			v.GetAuthor(), v.GetCreatedAt().AsTime().Format(time.RFC3339), v.GetTestCases(), adminOneLine(v.GetComment()))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if resp.GetActiveVersion() == "" {
		fmt.Fprintln(stdout, "no version is active: replicas serve their file or default policy")
	}
	if resp.GetShadowVersion() != "" {
		fmt.Fprintf(stdout, "shadow: %s on %g of live decisions\n", resp.GetShadowVersion(), resp.GetShadowShare())
	}
	return nil
}

func runPolicyActivate(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 1, "the VERSION to activate"); err != nil {
		return err
	}
	resp, err := c.ActivatePolicy(ctx, &arbiterv1.ActivatePolicyRequest{Version: pos[0], Comment: adminFlagString(fs, "comment")})
	if err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	printPolicyChange(stdout, resp.GetChange())
	return nil
}

func runPolicyApprove(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 1, "the VERSION to approve"); err != nil {
		return err
	}
	resp, err := c.ApprovePolicy(ctx, &arbiterv1.ApprovePolicyRequest{Version: pos[0], Comment: adminFlagString(fs, "comment")})
	if err != nil {
		return fmt.Errorf("approve: %w", err)
	}
	printPolicyChange(stdout, resp.GetChange())
	return nil
}

func runPolicyRollback(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	resp, err := c.RollbackPolicy(ctx, &arbiterv1.RollbackPolicyRequest{Comment: adminFlagString(fs, "comment")})
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	printPolicyChange(stdout, resp.GetChange())
	return nil
}

func runPolicyShow(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 1, "the VERSION to show"); err != nil {
		return err
	}
	resp, err := c.GetPolicy(ctx, &arbiterv1.GetPolicyRequest{Version: pos[0]})
	if err != nil {
		return fmt.Errorf("show: %w", err)
	}
	v := resp.GetVersion()
	fmt.Fprintf(stdout, "policy:     %s\nversion:    %s\ndigest:     %s\nauthor:     %s\npublished:  %s\ntest cases: %d\ncomment:    %s\nfiles:\n",
		v.GetId(), v.GetVersion(), v.GetDigest(), v.GetAuthor(), v.GetCreatedAt().AsTime().Format(time.RFC3339), v.GetTestCases(), v.GetComment())
	names := make([]string, 0, len(resp.GetFiles()))
	for n := range resp.GetFiles() {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(stdout, "  %s (%d bytes)\n", n, len(resp.GetFiles()[n]))
	}
	if adminFlagBool(fs, "files") {
		for _, n := range names {
			fmt.Fprintf(stdout, "\n--- %s\n%s", n, resp.GetFiles()[n])
		}
	}
	return nil
}

func runPolicyLog(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	g, _ := fs.Lookup("limit").Value.(flag.Getter)
	limit, _ := g.Get().(int)
	resp, err := c.ListPolicyChanges(ctx, &arbiterv1.ListPolicyChangesRequest{Limit: int32(limit)})
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "WHEN\tWHO\tWHAT\tFROM\tTO\tWHY")
	for _, ch := range resp.GetChanges() {
		what := policyChangeKindName(ch.GetKind())
		if ch.GetKind() == arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_SHADOW && ch.GetToVersion() != "" {
			what = fmt.Sprintf("shadow %g", ch.GetShadowShare())
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", ch.GetAt().AsTime().Format(time.RFC3339), ch.GetActor(), what,
			adminOrDash(ch.GetFromVersion()), adminOrDash(ch.GetToVersion()), adminOneLine(ch.GetComment()))
	}
	return w.Flush()
}

func runPolicyShadow(ctx context.Context, c *policyAdminClient, fs *flag.FlagSet, pos []string, stdout io.Writer) error {
	req := &arbiterv1.SetShadowPolicyRequest{Comment: adminFlagString(fs, "comment")}
	if adminFlagBool(fs, "stop") {
		if err := adminWantArgs(pos, 0, "no VERSION with --stop"); err != nil {
			return err
		}
	} else {
		if err := adminWantArgs(pos, 1, "the VERSION to run in shadow"); err != nil {
			return err
		}
		g, _ := fs.Lookup("share").Value.(flag.Getter)
		req.Version = pos[0]
		req.Share, _ = g.Get().(float64)
	}
	resp, err := c.SetShadowPolicy(ctx, req)
	if err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	printPolicyChange(stdout, resp.GetChange())
	return nil
}

func runPolicyShadowReport(ctx context.Context, c *policyAdminClient, _ *flag.FlagSet, pos []string, stdout io.Writer) error {
	if err := adminWantArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	rep, err := c.GetShadowReport(ctx, &arbiterv1.GetShadowReportRequest{})
	if err != nil {
		return fmt.Errorf("shadow-report: %w", err)
	}
	if rep.GetShadowVersion() == "" {
		fmt.Fprintln(stdout, "no shadow version is set: arbiter policy shadow VERSION --share S --comment WHY")
		return nil
	}
	pct := 0.0
	if rep.GetEvaluated() > 0 {
		pct = 100 * float64(rep.GetDifferent()) / float64(rep.GetEvaluated())
	}
	fmt.Fprintf(stdout, "shadow %s on %g of live decisions since %s\nevaluated %d, different %d (%.1f%%), errors %d\n",
		rep.GetShadowVersion(), rep.GetShare(), rep.GetSince().AsTime().Format(time.RFC3339),
		rep.GetEvaluated(), rep.GetDifferent(), pct, rep.GetErrors())
	if len(rep.GetActions()) > 0 {
		fmt.Fprintln(stdout, "\nby action (active → shadow):")
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, a := range rep.GetActions() {
			fmt.Fprintf(w, "  %s → %s\t%d\n", adminAction(a.GetActive()), adminAction(a.GetShadow()), a.GetCount())
		}
		w.Flush()
	}
	if len(rep.GetReasons()) > 0 {
		fmt.Fprintln(stdout, "\nby reason code:")
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  CODE\tADDED\tREMOVED")
		for _, r := range rep.GetReasons() {
			fmt.Fprintf(w, "  %s\t%d\t%d\n", r.GetCode(), r.GetAdded(), r.GetRemoved())
		}
		w.Flush()
	}
	if len(rep.GetSamples()) > 0 {
		fmt.Fprintln(stdout, "\nsamples (newest first):")
		for _, s := range rep.GetSamples() {
			fmt.Fprintf(stdout, "  %s %s %s: %s [%s] → %s [%s]\n", s.GetAt().AsTime().Format(time.RFC3339), s.GetEventId(),
				strings.TrimPrefix(s.GetEventType().String(), "EVENT_TYPE_"),
				adminAction(s.GetActiveAction()), strings.Join(s.GetActiveReasons(), ","),
				adminAction(s.GetShadowAction()), strings.Join(s.GetShadowReasons(), ","))
			if len(s.GetChangedFields()) > 0 {
				fmt.Fprintf(stdout, "    changed: %s\n", strings.Join(s.GetChangedFields(), ","))
			}
		}
	}
	return nil
}

func printPolicyChange(w io.Writer, ch *arbiterv1.PolicyChange) {
	switch ch.GetKind() {
	case arbiterv1.PolicyChangeKind_POLICY_CHANGE_KIND_SHADOW:
		if ch.GetToVersion() == "" {
			fmt.Fprintf(w, "shadow %s stopped\n", adminOrDash(ch.GetFromVersion()))
		} else {
			fmt.Fprintf(w, "shadow: %s on %g of live decisions (was %s); see arbiter policy shadow-report\n", ch.GetToVersion(), ch.GetShadowShare(), adminOrDash(ch.GetFromVersion()))
		}
	default:
		fmt.Fprintf(w, "%s: %s → %s (change %s by %s); replicas switch within a second\n",
			policyChangeKindName(ch.GetKind()), adminOrDash(ch.GetFromVersion()), ch.GetToVersion(), ch.GetId(), ch.GetActor())
	}
}

func policyChangeKindName(k arbiterv1.PolicyChangeKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "POLICY_CHANGE_KIND_"))
}

func adminAction(a arbiterv1.Action) string { return strings.TrimPrefix(a.String(), "ACTION_") }

func adminShortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func adminOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func adminOneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// serveGovernance is the policy governance of one serving replica (docs/governance.md): the
// PolicyService, the sync that keeps the replica on the fleet's active version, and the shadow
// evaluator. "arbiter serve" wires it.
type serveGovernance struct {
	service *server.PolicyService
	sync    *rollout.Sync
	shadow  *rollout.Shadow
	close   func() error
}

// newServeGovernance keeps the policy versions in the Redis at redisURL (empty: in the process,
// for the embedded mode), and syncs holder once before returning, so a replica that starts
// after an activation serves the active version from its first request. A store that does not
// answer is not fatal: the replica serves what holder has and the sync retries.
func newServeGovernance(ctx context.Context, redisURL string, holder *rollout.Holder, logger *slog.Logger, mp metric.MeterProvider, requireApproval bool) (*serveGovernance, error) {
	var store interface {
		rollout.Source
		server.PolicyAdminStore
	}
	closeStore := func() error { return nil }
	if redisURL == "" {
		store = policystore.NewMemory()
	} else {
		rdb, err := featurestore.Dial(redisURL)
		if err != nil {
			return nil, fmt.Errorf("policy store: %w", err)
		}
		store, closeStore = policystore.NewRedis(rdb), rdb.Close
	}
	shadow := rollout.NewShadow(mp)
	g := &serveGovernance{
		service: server.NewPolicyService(store, server.WithPolicyLogger(logger), server.WithRequireApproval(requireApproval)),
		sync:    rollout.NewSync(store, holder, shadow, rollout.WithSyncLogger(logger), rollout.WithSyncMeterProvider(mp)),
		shadow:  shadow,
		close:   closeStore,
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := g.sync.Sync(sctx); err != nil {
		logger.Warn("policy governance: first sync failed; serving the start-up policy until it succeeds", "err", err)
	}
	return g, nil
}

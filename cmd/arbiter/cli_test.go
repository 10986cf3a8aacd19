package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"google.golang.org/grpc"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/server"
)

// commandPaths returns every command and subcommand as its arguments, parents first.
func commandPaths(prefix []string, cmds []command) [][]string {
	var out [][]string
	for _, c := range cmds {
		p := append(append([]string(nil), prefix...), c.name)
		out = append(out, p)
		out = append(out, commandPaths(p, c.subs)...)
	}
	return out
}

// TestHelpEveryCommand: every command and subcommand prints a one-line description, its
// usage, an example and the exit statuses on --help and -h, to stdout, and exits 0; a parent
// without a subcommand lists its subcommands and exits 2.
func TestHelpEveryCommand(t *testing.T) {
	paths := append([][]string{nil}, commandPaths(nil, commands())...)
	if len(paths) < 20 {
		t.Fatalf("found %d commands, want every command and subcommand", len(paths))
	}
	for _, path := range paths {
		name := strings.Join(append([]string{"arbiter"}, path...), " ")
		for _, flag := range []string{"--help", "-h"} {
			t.Run(name+" "+flag, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				args := append(append([]string(nil), path...), flag)
				err := run(t.Context(), args, noEnv, strings.NewReader(""), &stdout, &stderr)
				if code := exitCode(err); code != 0 {
					t.Fatalf("%s %s exits %d (%v), want 0", name, flag, code, err)
				}
				out := stdout.String()
				first, _, _ := strings.Cut(out, "\n")
				if summary, ok := strings.CutPrefix(first, name+": "); !ok || len(summary) < 10 {
					t.Errorf("%s %s: first line %q, want %q and a one-line description", name, flag, first, name+": ")
				}
				for _, want := range []string{"Usage:\n  " + name, "Examples:\n  arbiter ", "Exit status: 0 on success, 1 when the command fails, 2 on bad usage"} {
					if !strings.Contains(out, want) {
						t.Errorf("%s %s printed:\n%s\nwant it to contain %q", name, flag, out, want)
					}
				}
				if stderr.Len() > 0 {
					t.Errorf("%s %s wrote to stderr: %s", name, flag, stderr.String())
				}
			})
		}
	}
	for _, c := range append([]command{{name: "", subs: commands()}}, commands()...) {
		if c.subs == nil {
			continue
		}
		name := strings.TrimSpace("arbiter " + c.name)
		t.Run(name+" without a subcommand", func(t *testing.T) {
			var args []string
			if c.name != "" {
				args = []string{c.name}
			}
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, noEnv, nil, &stdout, &stderr)
			if code := exitCode(err); code != 2 {
				t.Errorf("%s exits %d (%v), want 2", name, code, err)
			}
			for _, s := range c.subs {
				if !strings.Contains(stderr.String(), "\n  "+s.name+" ") {
					t.Errorf("%s printed:\n%s\nwant it to list %s", name, stderr.String(), s.name)
				}
			}
		})
	}
	// "arbiter help X" is "arbiter X --help".
	var a, b bytes.Buffer
	if err := run(context.Background(), []string{"help", "policy", "lint"}, noEnv, nil, &a, &a); err != nil {
		t.Errorf("arbiter help policy lint = %v", err)
	}
	_ = run(context.Background(), []string{"policy", "lint", "--help"}, noEnv, nil, &b, &b)
	if a.String() != b.String() {
		t.Errorf("arbiter help policy lint printed:\n%s\nwant what arbiter policy lint --help prints:\n%s", a.String(), b.String())
	}
}

// TestExitCodes: 0 on success, 1 when the command fails, 2 on bad usage, for every kind of
// command; a usage error prints the error and where the help is, not the whole usage.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("id: x\nversion: \"1\"\nrules:\n  - {id: r, action: CALL, reasons: [A]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	event := filepath.Join(dir, "event.json")
	if err := os.WriteFile(event, []byte(`{"event": {"id": "e1", "type": "EVENT_TYPE_INBOUND_CONTACT"}, "customer": {"id": "c"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	down := closedAddr(t)
	tests := []struct {
		args []string
		code int
		want string // in what main prints to stderr
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"policy", "lint", "default"}, 0, ""},
		{[]string{"policy", "lint", invalid}, 1, "the bundle is invalid"},
		{[]string{"decide", "--addr", down, event}, 1, "no Arbiter server answers at " + down},
		{[]string{"features", "import", "--file", filepath.Join(dir, "missing.jsonl"), "--addr", down}, 1, "no such file"},
		{[]string{"nope"}, 2, "unknown command \"nope\"\nRun 'arbiter --help' for usage."},
		{[]string{"serve", "--log-level", "verbose"}, 2, "serve: invalid value \"verbose\" for flag -log-level: want debug, info, warn or error\nRun 'arbiter serve --help' for usage.\n"},
		{[]string{"serve", "extra"}, 2, "unexpected arguments"},
		{[]string{"decide", "a.json", "b.json"}, 2, "want one event FILE"},
		{[]string{"decide", "--nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"policy", "lint"}, 2, "want one PATH"},
		{[]string{"policy", "lint", "default", "--format", "xml"}, 2, "want text, json or junit"},
		{[]string{"policy", "test", "default", "-run", "("}, 2, "-run"},
		{[]string{"policy", "show", "--addr", down}, 2, "want the VERSION to show"},
		{[]string{"policy", "nope"}, 2, "policy: unknown subcommand \"nope\""},
		{[]string{"features", "import"}, 2, "--file is required"},
		{[]string{"audit", "export", "--to", filepath.Join(dir, "a.jsonl")}, 2, "--redis"},
		{[]string{"loadtest", "--compare", "a.json"}, 2, "want two report files"},
		{[]string{"replay"}, 2, "exactly one of --version and --policy"},
		{[]string{"version", "extra"}, 2, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, noEnv, strings.NewReader(""), &stdout, &stderr)
			if code := exitCode(err); code != tc.code {
				t.Errorf("arbiter %s exits %d (%v), want %d", strings.Join(tc.args, " "), code, err, tc.code)
			}
			reportError(&stderr, err)
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("arbiter %s printed:\n%s\nwant it to contain %q", strings.Join(tc.args, " "), stderr.String(), tc.want)
			}
			if tc.code == 2 && strings.Contains(stderr.String(), "Flags:") {
				t.Errorf("arbiter %s printed the whole usage on a usage error:\n%s", strings.Join(tc.args, " "), stderr.String())
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if err := run(t.Context(), args, noEnv, nil, &out, &out); err != nil {
			t.Fatalf("arbiter %s = %v", args[0], err)
		}
		for _, want := range []string{"arbiter ", "\ncommit:", "\ngo:                    go1.", "\npolicy schema version: v1\n"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("arbiter %s printed:\n%s\nwant it to contain %q", args[0], out.String(), want)
			}
		}
	}
	tests := []struct {
		name    string
		release string
		info    *debug.BuildInfo
		want    buildVersion
	}{
		{"no build information", "", nil, buildVersion{Version: "(devel)", Commit: "unknown"}},
		{"checkout without VCS stamp", "", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}},
			buildVersion{Version: "(devel)", Commit: "unknown", GoVersion: "go1.26.0"}},
		{"VCS stamp, modified tree", "", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "4330b18"}, {Key: "vcs.modified", Value: "true"}}},
			buildVersion{Version: "(devel)", Commit: "4330b18-dirty", GoVersion: "go1.26.0"}},
		{"release set by the linker", "v1.2.0", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.1.9"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}},
			buildVersion{Version: "v1.2.0", Commit: "abc", GoVersion: "go1.26.0"}},
		{"module version", "", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.1.9"}},
			buildVersion{Version: "v1.1.9", Commit: "unknown", GoVersion: "go1.26.0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func(v string) { version = v }(version)
			version = tc.release
			got := readBuildVersion(tc.info)
			tc.want.Schema = "v1"
			if tc.want.GoVersion == "" {
				tc.want.GoVersion = got.GoVersion // the runtime's
			}
			if got != tc.want {
				t.Errorf("readBuildVersion() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// decideEcho answers Decide with the event id as the decision id, to show which request came.
type decideEcho struct {
	arbiterv1.UnimplementedDecisionServiceServer
}

func (decideEcho) Decide(_ context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	return &arbiterv1.DecideResponse{DecisionId: "for-" + req.GetEvent().GetId(), Action: arbiterv1.Action_ACTION_SUPPRESS}, nil
}

// TestDecideFile: the event file may be given as an argument, as --file, or on stdin.
func TestDecideFile(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	arbiterv1.RegisterDecisionServiceServer(gs, decideEcho{})
	go gs.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(gs.Stop)
	addr := lis.Addr().String()
	file := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(file, []byte(`{"event": {"id": "from-file", "type": "EVENT_TYPE_INBOUND_CONTACT"}, "customer": {"id": "c"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdin := `{"event": {"id": "from-stdin", "type": "EVENT_TYPE_INBOUND_CONTACT"}, "customer": {"id": "c"}}`
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"decide", file, "--addr", addr}, "for-from-file"},
		{[]string{"decide", "--addr", addr, file}, "for-from-file"},
		{[]string{"decide", "--addr", addr, "--file", file}, "for-from-file"},
		{[]string{"decide", "--addr", addr, "--file", file, file}, "for-from-file"},
		{[]string{"decide", "--addr", addr}, "for-from-stdin"},
		{[]string{"decide", "--addr", addr, "-"}, "for-from-stdin"},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		if err := run(t.Context(), tc.args, noEnv, strings.NewReader(stdin), &out, &out); err != nil {
			t.Errorf("arbiter %q = %v", tc.args, err)
			continue
		}
		if !strings.Contains(out.String(), "decision   "+tc.want) {
			t.Errorf("arbiter %q printed:\n%s\nwant the decision %s", tc.args, out.String(), tc.want)
		}
	}
	// An unknown enum value in the file names the field and the valid values.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"event": {"id": "e", "type": "EVENT_TYPE_BOGUS"}, "customer": {"id": "c"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), []string{"decide", "--addr", addr, bad}, noEnv, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `event.type: unknown value "EVENT_TYPE_BOGUS"; valid values: EVENT_TYPE_PAYMENT_FAILED`) || exitCode(err) != 1 {
		t.Errorf("arbiter decide with EVENT_TYPE_BOGUS = %v, want the field and the valid values, exit 1", err)
	}
}

// TestServerDown: the commands that call a server say which address did not answer and how
// to start a server.
func TestServerDown(t *testing.T) {
	down := closedAddr(t)
	event := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(event, []byte(`{"event": {"id": "e1", "type": "EVENT_TYPE_INBOUND_CONTACT"}, "customer": {"id": "c"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	features := filepath.Join(t.TempDir(), "f.jsonl")
	if err := os.WriteFile(features, []byte(`{"customer_id": "c", "features": {"a": 1}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"decide", "--addr", down, event},
		{"policy", "list", "--addr", down},
		{"policy", "show", "1", "--addr", down},
		{"features", "import", "--file", features, "--addr", down},
	} {
		var out bytes.Buffer
		err := run(t.Context(), args, noEnv, nil, &out, &out)
		if err == nil || !isServerDown(err) || exitCode(err) != 1 {
			t.Errorf("arbiter %q with no server = %v, want a server-down error, exit 1", args, err)
			continue
		}
		for _, want := range []string{"no Arbiter server answers at " + down, "connection refused", `"make run"`, `"arbiter serve"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("arbiter %q with no server = %v, want it to contain %q", args, err, want)
			}
		}
	}
}

// TestPolicyNotFoundNamesVersion: a version the server does not have is named in the error.
func TestPolicyNotFoundNamesVersion(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	server.NewPolicyService(policystore.NewMemory()).Register(gs)
	go gs.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(gs.Stop)
	addr := lis.Addr().String()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "show", "2026.1", "--addr", addr}, `policy show: policy version "2026.1" not found`},
		{[]string{"policy", "activate", "2026.2", "--comment", "go", "--addr", addr}, `policy activate: policy version "2026.2" not found`},
		{[]string{"policy", "shadow", "2026.3", "--comment", "try", "--addr", addr}, `policy shadow: policy version "2026.3" not found`},
	} {
		var out bytes.Buffer
		err := run(t.Context(), tc.args, noEnv, nil, &out, &out)
		if err == nil || err.Error() != tc.want || exitCode(err) != 1 {
			t.Errorf("arbiter %q = %v, want %q, exit 1", tc.args, err, tc.want)
		}
	}
}

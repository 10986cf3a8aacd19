package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/arbiter-dev/arbiter/decision"
)

// version is the release this binary was built as, set by the linker:
// go build -ldflags "-X main.version=v1.2.0". Empty: the module version of the build, which
// is "(devel)" for a build from a checkout.
var version string

// buildVersion is what "arbiter version" prints about the binary.
type buildVersion struct {
	Version   string // the release, or the module version, or "(devel)"
	Commit    string // vcs.revision, "-dirty" appended when the tree was modified; "unknown" when not recorded
	GoVersion string
	Schema    string // the policy bundle schema version the binary reads
}

// readBuildVersion reads the binary's version from the linker variable and the build
// information info (nil when the binary has none).
func readBuildVersion(info *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: version, Commit: "unknown", GoVersion: runtime.Version(), Schema: decision.BundleSchemaVersion}
	if info == nil {
		if v.Version == "" {
			v.Version = "(devel)"
		}
		return v
	}
	if v.Version == "" {
		v.Version = info.Main.Version
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	if info.GoVersion != "" {
		v.GoVersion = info.GoVersion
	}
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				v.Commit = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && v.Commit != "unknown" {
		v.Commit += "-dirty"
	}
	return v
}

func versionHelp() help {
	return help{
		summary: "print the version, commit, Go version and policy schema version of this binary",
		usage:   []string{"version", "--version"},
		detail: `The commit is the VCS revision the binary was built from ("unknown" when the build did not
record one, as with go run); the policy schema version is the bundle format it reads.`,
		examples: []string{"arbiter version", "arbiter --version"},
	}
}

// runVersion is the "version" command.
func runVersion(_ context.Context, args []string, _ func(string) string, _ io.Reader, stdout, _ io.Writer) error {
	const cmd = "arbiter version"
	pos, err := parseArgs(newFlagSet(cmd), versionHelp(), args, nil, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return unexpectedArgs(cmd, pos)
	}
	info, _ := debug.ReadBuildInfo()
	writeVersion(stdout, readBuildVersion(info))
	return nil
}

func writeVersion(w io.Writer, v buildVersion) {
	fmt.Fprintf(w, "arbiter %s\ncommit:                %s\ngo:                    %s\npolicy schema version: %s\n",
		v.Version, v.Commit, v.GoVersion, v.Schema)
}

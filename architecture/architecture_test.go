package architecture

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/arbiter-dev/arbiter"

// layers lists, for every package of the module, the packages of the module its code may
// import (its tests may import more, except where testRules says). A package missing here fails
// the test: a new package takes its place in docs/architecture.md and here.
var layers = map[string][]string{
	"cardnumber":             {},
	"policies":               {},
	"gen/arbiter/v1":         {},
	"gen/openapi":            {},
	"archive":                {},
	"archive/archivetest":    {},
	"report":                 {},
	"decision":               {"policies"},
	"featurestore":           {"decision"},
	"featurestore/redistest": {},
	"featurestore/storetest": {"decision", "featurestore"},
	"policystore":            {"decision"},
	"rpcstatus":              {"featurestore", "policystore", "archive"},
	"breaker":                {"featurestore"},
	"spool":                  {"featurestore", "gen/arbiter/v1"},
	"auditfile":              {"featurestore", "gen/arbiter/v1"},
	"guard":                  {"cardnumber", "rpcstatus", "gen/arbiter/v1"},
	"rollout":                {"decision", "policystore"},
	"server": {"decision", "featurestore", "policystore", "archive", "rollout", "guard", "spool", "breaker",
		"rpcstatus", "gen/arbiter/v1"},
	"relay":           {"archive", "featurestore", "gen/arbiter/v1"},
	"stream":          {"cardnumber", "guard", "rpcstatus", "gen/arbiter/v1"},
	"stream/natstest": {},
	"loadtest":        {"decision", "gen/arbiter/v1"},
	"console":         {"guard", "gen/arbiter/v1", "gen/openapi"},
	"cmd/arbiter":     nil, // main wires everything: no restriction
	"bench/floor":     {"featurestore", "gen/arbiter/v1"},
}

// redisSpeakers are the only packages whose code may import a Redis client: the stores keep
// every key, script and error of Redis to themselves.
// bench/floor measures the Redis round trips themselves, with none of the stores' commands.
var redisSpeakers = []string{"featurestore", "featurestore/redistest", "policystore", "bench/floor"}

// postgresSpeakers are the only packages whose code may import a PostgreSQL driver.
var postgresSpeakers = []string{"archive", "archive/archivetest"}

// testRules forbid imports in a package's tests (internal and external) too.
var testRules = map[string][]string{
	// The load tester is a client: its tests drive a server through the API, never its code.
	"loadtest": {"server"},
	// The decision core is tested on its own.
	"decision": {"server", "featurestore", "policystore"},
}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := modulePackages(t, root)
	if len(pkgs) < 10 {
		t.Fatalf("found %d packages under %s, want the whole module", len(pkgs), root)
	}
	for rel, p := range pkgs {
		allowed, listed := layers[rel]
		if !listed {
			t.Errorf("package %s is not in the layer table: add it here and to docs/architecture.md", rel)
			continue
		}
		for _, imp := range p.Imports {
			if isRedis(imp) && !slices.Contains(redisSpeakers, rel) {
				t.Errorf("%s imports %s: only %v speak Redis", rel, imp, redisSpeakers)
			}
			if strings.HasPrefix(imp, "github.com/jackc/") && !slices.Contains(postgresSpeakers, rel) {
				t.Errorf("%s imports %s: only %v speak PostgreSQL", rel, imp, postgresSpeakers)
			}
			ours, ok := strings.CutPrefix(imp, module+"/")
			if !ok || rel == "cmd/arbiter" {
				continue
			}
			if !slices.Contains(allowed, ours) {
				t.Errorf("%s imports %s: the layers allow only %v", rel, ours, allowed)
			}
		}
		for _, imp := range slices.Concat(p.TestImports, p.XTestImports) {
			ours, ok := strings.CutPrefix(imp, module+"/")
			if ok && slices.Contains(testRules[rel], ours) {
				t.Errorf("the tests of %s import %s, which they must not", rel, ours)
			}
		}
	}
}

// TestRulesCatchViolations checks the checker: a package that imports what its layer forbids is
// reported.
func TestRulesCatchViolations(t *testing.T) {
	if slices.Contains(layers["featurestore"], "gen/arbiter/v1") || slices.Contains(layers["server"], "cardnumber") {
		t.Fatal("the table allows what docs/architecture.md forbids")
	}
	if !isRedis("github.com/redis/go-redis/v9") || !isRedis("github.com/redis/go-redis/extra/redisotel/v9") || isRedis("github.com/jackc/pgx/v5") {
		t.Errorf("isRedis misclassifies client packages")
	}
}

func isRedis(path string) bool { return strings.HasPrefix(path, "github.com/redis/go-redis") }

// modulePackages returns the module's Go packages by their path relative to root, skipping
// nested modules (bench/opa), testdata and hidden folders.
func modulePackages(t *testing.T, root string) map[string]*build.Package {
	t.Helper()
	out := map[string]*build.Package{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		if path != root {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		p, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if rel == "architecture" {
			return nil
		}
		out[rel] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

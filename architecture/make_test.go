package architecture

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// makeDryRun returns what `make -n target` would run, from the repository root.
func makeDryRun(t *testing.T, target string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	cmd := exec.CommandContext(t.Context(), "make", "-n", "--no-print-directory", target)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n %s: %v\n%s", target, err, out)
	}
	return string(out)
}

// TestMakeTestStaysShort: the default `make test` runs the tests with the race detector (the
// fuzz targets on their seed corpora, as ordinary tests) and no fuzzing, which takes minutes of
// instrumented builds; `make test-long` does the fuzzing.
func TestMakeTestStaysShort(t *testing.T) {
	test := makeDryRun(t, "test")
	if !strings.Contains(test, "go test -race") {
		t.Errorf("make test does not run go test -race:\n%s", test)
	}
	if strings.Contains(test, "-fuzz ") {
		t.Errorf("make test fuzzes; the fuzzing belongs in make test-long:\n%s", test)
	}
	if long := makeDryRun(t, "test-long"); !strings.Contains(long, "go test -race") || !strings.Contains(long, "-fuzz ") {
		t.Errorf("make test-long does not run the tests and the fuzzing:\n%s", long)
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"make test\n", "make fuzz-short\n"} {
		if !strings.Contains(string(ci), want) {
			t.Errorf(".ci/run lacks %q", want)
		}
	}
}

// TestMakeBuildSaysWhatItDoes: a cold `make build` (and so `make run`) takes minutes; it says
// what it is doing before each long step.
func TestMakeBuildSaysWhatItDoes(t *testing.T) {
	lines := strings.Split(makeDryRun(t, "run"), "\n")
	said := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "echo ") && strings.Contains(l, "compiling"):
			said = true
		case strings.HasPrefix(l, "go build"):
			if !said {
				t.Errorf("make run compiles before it says so:\n%s", strings.Join(lines, "\n"))
			}
			return
		}
	}
	t.Errorf("make run does not build bin/arbiter:\n%s", strings.Join(lines, "\n"))
}

package decision

import (
	"context"
	"strings"
	"testing"
)

// TestDefaultPolicy runs the default bundle's own test cases as subtests.
func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if n := len(p.Tests()); n < 40 {
		t.Errorf("default policy ships %d test cases, want at least 40", n)
	}
	for i := range p.Tests() {
		tc := &p.Tests()[i]
		t.Run(tc.Name, func(t *testing.T) {
			r := p.RunTest(context.Background(), tc)
			if !r.Passed() {
				t.Errorf("%s: %s\n%s", tc.File, strings.Join(r.Failures, "\n"), describeResult(r.Result))
			}
		})
	}
}

package decision

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestParsePolicySyntaxError: a YAML syntax error is reported once, at the line of the
// problem (the decoder names the line where the enclosing block starts), without the false
// "id: required" and "version: required" of a file that could not be read, and the bundle's
// other files are still checked.
func TestParsePolicySyntaxError(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name: "bad indentation in the file that sets id and version",
			files: map[string]string{
				"bundle.yaml": "id: t\nversion: \"1\"\npayments:\n  retry_limits: {later: 4}\n  backoff: [4h]\n    acquirers: [oops\n",
				"rules.yaml":  "rules:\n  - {id: r, on: [INBOUND_CONTACT], action: CALL, reasons: [A]}\n",
			},
			want: []string{
				"bundle.yaml:6: YAML syntax error: did not find expected key",
				`rules.yaml:2: rule r: action: "CALL" must be RETRY, MESSAGE, ESCALATE or SUPPRESS`,
			},
		},
		{
			name:  "a tab",
			files: map[string]string{"bundle.yaml": "id: t\nversion: \"1\"\nrules:\n  - id: a\n\twhen: x\n"},
			want:  []string{"bundle.yaml:5: YAML syntax error: found a tab character that violates indentation"},
		},
		{
			name:  "unclosed flow sequence",
			files: map[string]string{"bundle.yaml": "id: t\nversion: \"1\"\nrules:\n  - {id: a, on: [X}\n  - {id: b}\n"},
			want:  []string{"bundle.yaml:4: YAML syntax error: did not find expected ',' or ']'"},
		},
		{
			name: "in a test file",
			files: map[string]string{
				"bundle.yaml":  "id: t\nversion: \"1\"\n",
				"tests/a.yaml": "tests:\n  - name: a\n    now: 2026-01-01T00:00:00Z\n   event: {type: INBOUND_CONTACT}\n",
			},
			want: []string{"tests/a.yaml:4: YAML syntax error: did not find expected '-' indicator"},
		},
		{
			name:  "type errors, each at its line",
			files: map[string]string{"bundle.yaml": "id: t\nversion: \"1\"\nrules:\n  - id: a\n    action: SUPPRESS\n    suppress: {for: 7x}\n    colour: red\n    reasons: [A]\n"},
			want: []string{
				`bundle.yaml:6: invalid duration "7x"`,
				"bundle.yaml:7: field colour not found in type rule",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string][]byte{}
			for n, c := range tc.files {
				files[n] = []byte(c)
			}
			checkBundleErrors(t, files, tc.want)
		})
	}
}

// checkBundleErrors parses files and checks that they fail with exactly the errors want.
func checkBundleErrors(t *testing.T, files map[string][]byte, want []string) {
	t.Helper()
	_, err := ParsePolicy(files)
	if !errors.Is(err, ErrInvalidBundle) {
		t.Fatalf("ParsePolicy() error = %v, want ErrInvalidBundle", err)
	}
	var got []string
	for _, be := range BundleErrors(err) {
		got = append(got, be.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParsePolicy() errors mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7d", 7 * 24 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{" 4h ", 4 * time.Hour, true},
		{"0d", 0, true},
		{"3651d", 0, false},
		{"-1h", 0, false},
		{"1w", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

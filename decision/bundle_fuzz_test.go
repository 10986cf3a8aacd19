package decision

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/arbiter-dev/arbiter/policies"
)

// FuzzLoadPolicy feeds arbitrary bytes to the bundle loader as one bundle file and as a test
// file: it must never panic, and a bundle it accepts must decide without panicking.
func FuzzLoadPolicy(f *testing.F) {
	// Seeds: every file of the default bundle, and the broken bundles under testdata.
	err := fs.WalkDir(policies.Default, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.Default, path)
		f.Add(b)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	seeds, _ := filepath.Glob(filepath.Join("testdata", "bundles", "*.yaml"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("id: x\nversion: \"1\"\nrules:\n  - {id: r, action: SUPPRESS, reasons: [A], when: 'now > now'}\n"))
	// The champion/challenger example as one file: its experiment and the rules it replaces.
	var example []byte
	for _, name := range []string{"bundle.yaml", "payments.yaml"} {
		b, err := os.ReadFile(filepath.Join(exampleBundle, name))
		if err != nil {
			f.Fatal(err)
		}
		example = append(example, b...)
	}
	f.Add(example)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(map[string][]byte{"bundle.yaml": data})
		if err == nil {
			for typ := EventType(1); typ < eventTypeCount; typ++ {
				in := testInput(typ)
				in.Explain = true
				if _, err := p.Decide(context.Background(), in); err != nil {
					t.Fatalf("Decide(%s) error = %v", bundleEventTypeName(typ), err)
				}
			}
		}
		_, _ = ParsePolicy(map[string][]byte{"bundle.yaml": []byte("id: x\nversion: \"1\"\n"), "tests/t.yaml": data})
	})
}

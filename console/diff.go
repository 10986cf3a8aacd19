package console

import (
	"slices"
	"strings"
)

// fileDiff is the line diff of one policy file between two versions.
type fileDiff struct {
	Name    string
	Lines   []diffLine
	TooLong bool
}

// diffLine is one line of a diff: Op is ' ' (same), '-' (only in the old) or '+' (only in the
// new).
type diffLine struct {
	Op   string
	Text string
}

// maxDiffLines bounds the files diffed line by line (the diff is quadratic in lines).
const maxDiffLines = 3000

// diffFiles returns the diff of every file that differs between from and to, by name.
func diffFiles(from, to map[string][]byte) []fileDiff {
	names := make([]string, 0, len(from)+len(to))
	for n := range from {
		names = append(names, n)
	}
	for n := range to {
		if _, ok := from[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []fileDiff
	for _, n := range names {
		a, b := string(from[n]), string(to[n])
		if a == b {
			continue
		}
		out = append(out, diffText(n, a, b))
	}
	return out
}

// diffText is the line diff of a and b (longest common subsequence).
func diffText(name, a, b string) fileDiff {
	x, y := splitLines(a), splitLines(b)
	if len(x) > maxDiffLines || len(y) > maxDiffLines {
		return fileDiff{Name: name, TooLong: true}
	}
	// lcs[i][j] is the length of the LCS of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	d := fileDiff{Name: name}
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		switch {
		case x[i] == y[j]:
			d.Lines = append(d.Lines, diffLine{" ", x[i]})
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			d.Lines = append(d.Lines, diffLine{"-", x[i]})
			i++
		default:
			d.Lines = append(d.Lines, diffLine{"+", y[j]})
			j++
		}
	}
	for ; i < len(x); i++ {
		d.Lines = append(d.Lines, diffLine{"-", x[i]})
	}
	for ; j < len(y); j++ {
		d.Lines = append(d.Lines, diffLine{"+", y[j]})
	}
	return d
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

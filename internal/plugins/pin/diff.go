package pin

import (
	"encoding/json"
	"strings"
)

// maxDiffCells bounds the LCS table of Diff (lines of the old part times
// lines of the new part, after common leading and trailing lines); past
// it the changed part is shown as removed then added.
const maxDiffCells = 1 << 22

// Diff returns a line diff of two definitions (Record.Definition and
// Record.PendingDefinition, or any JSON) for an admin: each is
// pretty-printed canonically (keys sorted, two-space indentation, hidden
// characters escaped as \uXXXX), and every line is prefixed "  " (in both),
// "- " (only in oldDef) or "+ " (only in newDef), removals before additions
// in a changed part, each line ending in "\n". nil or empty is no lines
// (a tool never accepted diffs as all additions); what is not JSON is
// compared as text.
func Diff(oldDef, newDef json.RawMessage) string {
	a, b := lines(display(oldDef)), lines(display(newDef))
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var out strings.Builder
	emit := func(prefix string, ls []string) {
		for _, l := range ls {
			out.WriteString(prefix)
			out.WriteString(l)
			out.WriteByte('\n')
		}
	}
	emit("  ", a[:pre])
	diffMiddle(&out, a[pre:len(a)-suf], b[pre:len(b)-suf])
	emit("  ", a[len(a)-suf:])
	return out.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// diffMiddle writes an LCS diff of a and b, whose first and last lines
// differ.
func diffMiddle(out *strings.Builder, a, b []string) {
	line := func(prefix, l string) {
		out.WriteString(prefix)
		out.WriteString(l)
		out.WriteByte('\n')
	}
	n, m := len(a), len(b)
	if n == 0 || m == 0 || n*m > maxDiffCells {
		for _, l := range a {
			line("- ", l)
		}
		for _, l := range b {
			line("+ ", l)
		}
		return
	}
	// lcs[i*(m+1)+j] is the LCS length of a[i:] and b[j:].
	lcs := make([]int32, (n+1)*(m+1))
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*(m+1)+j] = lcs[(i+1)*(m+1)+j+1] + 1
			} else {
				lcs[i*(m+1)+j] = max(lcs[(i+1)*(m+1)+j], lcs[i*(m+1)+j+1])
			}
		}
	}
	var adds []string
	flush := func() {
		for _, l := range adds {
			line("+ ", l)
		}
		adds = adds[:0]
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			flush()
			line("  ", a[i])
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i*(m+1)+j+1] > lcs[(i+1)*(m+1)+j]):
			adds = append(adds, b[j])
			j++
		default:
			line("- ", a[i])
			i++
		}
	}
	flush()
}

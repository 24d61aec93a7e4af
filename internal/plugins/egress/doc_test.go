package egress

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// TestReasonsDocumented: every Reason* constant appears in the package
// comment and maps to the status its comment names.
func TestReasonsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "egress.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	doc := file.Doc.Text()
	n := 0
	for _, d := range file.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if len(vs.Names) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Reason") {
				continue
			}
			n++
			code, err := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(doc, code) {
				t.Errorf("reason %s is not in the package comment", code)
			}
			if st := strconv.Itoa(statusOf(code)); !strings.Contains(vs.Comment.Text(), st) {
				t.Errorf("reason %s: status %s not in its comment %q", code, st, vs.Comment.Text())
			}
		}
	}
	if n != 6 {
		t.Errorf("found %d reason codes, want 6", n)
	}
}

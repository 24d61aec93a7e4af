package audit_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
)

// typeConstants parses event.go and returns the value of every constant of
// type Type, so that a new event type cannot be declared and forgotten in
// audit.Types.
func typeConstants(t *testing.T) []audit.Type {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Type
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Type" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok {
					t.Fatalf("event type %v is not a string literal", v)
				}
				out = append(out, audit.Type(strings.Trim(lit.Value, `"`)))
			}
		}
	}
	return out
}

func TestTypesComplete(t *testing.T) {
	declared := typeConstants(t)
	if len(declared) < 10 {
		t.Fatalf("found only %d Type constants in event.go: parser out of date?", len(declared))
	}
	got := slices.Clone(audit.Types)
	slices.Sort(got)
	slices.Sort(declared)
	if diff := cmp.Diff(declared, got); diff != "" {
		t.Errorf("audit.Types differs from the Type constants in event.go (-declared +Types):\n%s", diff)
	}
}

var typeName = regexp.MustCompile(`^[a-z]+(\.[a-z_]+)+$`)

func TestTypesStableNames(t *testing.T) {
	seen := map[audit.Type]bool{}
	for _, typ := range audit.Types {
		if !typeName.MatchString(string(typ)) {
			t.Errorf("event type %q is not a lower-case dotted name", typ)
		}
		if seen[typ] {
			t.Errorf("event type %q listed twice", typ)
		}
		seen[typ] = true
	}
}

// TestTypesDocumented: every event type appears in docs/audit-events.md
// (the catalogue event.go promises).
func TestTypesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "audit-events.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range audit.Types {
		if !strings.Contains(string(doc), "`"+string(typ)+"`") {
			t.Errorf("event type %q is not documented in docs/audit-events.md", typ)
		}
	}
}

// TestEventJSON pins the JSON field names of an audit record: they are read
// by the admin API, the CLI and offline verification.
func TestEventJSON(t *testing.T) {
	e := audit.Event{
		Seq: 7, ID: "evt_1", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Type: audit.ToolCallEnd,
		Principal: "alice", Roles: []string{"developer"}, Session: "s", RequestID: "r", RemoteAddr: "127.0.0.1:1",
		Tool: "read_file", Server: "srv", ArgsDigest: "d", Args: json.RawMessage(`{"path":"a"}`),
		Decision: audit.DecisionAllow, Reason: "OK", Status: audit.StatusOK, Duration: 1500,
		ResultDigest: "rd", Error: "e", Detail: "why",
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{
		"args", "args_digest", "decision", "detail", "duration_ns", "error", "id", "principal", "reason",
		"remote_addr", "request_id", "result_digest", "roles", "seq", "server", "session", "status", "time",
		"tool", "type",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("JSON keys (-want +got):\n%s", diff)
	}
	var back audit.Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	// Empty optional fields are omitted.
	b, _ = json.Marshal(audit.Event{ID: "evt_2", Type: audit.ServerStart})
	for _, k := range []string{"principal", "args", "detail", "error", "duration_ns"} {
		if strings.Contains(string(b), `"`+k+`"`) {
			t.Errorf("empty %s not omitted: %s", k, b)
		}
	}
}

// TestTypeCodes: every type has a unique, stable numeric code, and the
// catalogue's row for the type starts with that code.
func TestTypeCodes(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "audit-events.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]audit.Type{}
	for _, typ := range audit.Types {
		c := typ.Code()
		if c < 100 || c > 999 {
			t.Errorf("%s has code %d, want 100-999", typ, c)
		}
		if other, dup := seen[c]; dup {
			t.Errorf("%s and %s share code %d", typ, other, c)
		}
		seen[c] = typ
		if !typ.Known() {
			t.Errorf("%s not Known", typ)
		}
		row := fmt.Sprintf("| %d | `%s` |", c, typ)
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/audit-events.md has no row starting %q", row)
		}
	}
	if audit.Type("made.up").Known() || audit.Type("made.up").Code() != 0 {
		t.Error("an unknown type is Known")
	}
}

// TestNoAdHocTypes: production code emits only the declared constants,
// never a type made up on the spot (which would bypass the catalogue).
func TestNoAdHocTypes(t *testing.T) {
	adHoc := regexp.MustCompile(`audit\.Type\("|Type:\s*"[a-z]+\.`)
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".tools" || d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := adHoc.FindIndex(b); loc != nil {
			t.Errorf("%s: ad hoc audit event type near %q", path, b[loc[0]:min(loc[1]+30, len(b))])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

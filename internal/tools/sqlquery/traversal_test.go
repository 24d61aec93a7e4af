//go:build unix

package sqlquery_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/portcullis/portcullis/internal/tools/toolstest"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/sqlquery"
)

// Traversal corpus (issue 8) against sql_query's database argument. The
// fixture mirrors the file tools' (internal/tools/files/attack8_test.go):
//
//	base/
//	  canary.db                  valid SQLite database next to the workspace
//	  workspace_evil/canary.db   the same in the prefix sibling (CVE-2025-53110)
//	  workspace/app.db           the workspace's own database (no canary table)
//
// Each canary database holds table canary(secret) with a random string;
// /etc/passwd's lines are the second canary.

// travCorpusDir is the shared corpus, kept once in the repository with the
// file tools (see its README.md for attribution).
const travCorpusDir = "../files/testdata/traversal"

// travQuery reads the canary from whichever database a payload opens.
const travQuery = "SELECT secret FROM canary"

type travPayload = toolstest.Payload

// travCorpus returns the payloads of the shared lists in file and line
// order, {FILE} replaced by the canary database next to the workspace,
// the one in the prefix sibling and etc/passwd (deep payloads climb to /
// from the temporary directory), without duplicates.
func travCorpus(t *testing.T) []travPayload {
	return toolstest.Corpus(t, travCorpusDir, "canary.db", "workspace_evil/canary.db", "etc/passwd")
}

type travFixture struct {
	base, ws, tmp string
	secrets       []string
	tl            *sqlquery.Tool
}

func travSetup(t *testing.T) *travFixture {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &travFixture{base: base, ws: filepath.Join(base, "workspace"), tmp: t.TempDir()}
	for _, d := range []string{f.ws, filepath.Join(base, "workspace_evil")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ rel, prefix string }{
		{"canary.db", "CANARY-NEXT"},
		{"workspace_evil/canary.db", "CANARY-EVIL"},
	} {
		s := c.prefix + "-" + rand.Text()
		f.secrets = append(f.secrets, s)
		makeDB(t, filepath.Join(base, c.rel), "", "CREATE TABLE canary(secret TEXT)", "INSERT INTO canary VALUES ('"+s+"')")
	}
	makeDB(t, filepath.Join(f.ws, "app.db"), "", "CREATE TABLE t(x)", "INSERT INTO t VALUES (1)")
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) >= 16 {
				f.secrets = append(f.secrets, line)
			}
		}
	}
	f.tl = f.open(t, f.ws)
	return f
}

// open returns sql_query on workspace ws, closed at cleanup.
func (f *travFixture) open(t *testing.T, ws string) *sqlquery.Tool {
	t.Helper()
	tl, err := sqlquery.New(sqlquery.Config{Workspace: ws, TempDir: f.tmp})
	if err != nil {
		t.Fatalf("sqlquery.New: %v", err)
	}
	t.Cleanup(func() { tl.Close() })
	return tl
}

// call runs sql_query on tl and fails t if anything a client would see
// carries a canary, a line of /etc/passwd or a host path the request did
// not contain.
func (f *travFixture) call(t *testing.T, tl *sqlquery.Tool, database string) (*tool.Result, error) {
	t.Helper()
	req, err := json.Marshal(map[string]string{"database": database, "query": travQuery})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tl.Call(t.Context(), req)
	var seen []string
	if res != nil {
		b, _ := json.Marshal(res.Structured)
		seen = append(seen, res.Text, string(b))
	}
	if err != nil {
		te, ok := tool.AsError(err)
		if !ok {
			t.Errorf("%s: error is not a *tool.Error: %v", travClip(string(req)), err)
		} else {
			seen = append(seen, te.ClientMessage())
		}
	}
	for _, c := range seen {
		for _, s := range f.secrets {
			if strings.Contains(c, s) {
				t.Errorf("%s LEAKED secret %q in %q", travClip(string(req)), s, travClip(c))
			}
		}
		if strings.Contains(c, f.base) && !strings.Contains(string(req), f.base) {
			t.Errorf("%s leaked host path %q in %q", travClip(string(req)), f.base, travClip(c))
		}
	}
	return res, err
}

type travEntry struct {
	Mode fs.FileMode
	Sum  string
	Link string
}

// snapshot records every entry under base (the workspace included), the
// snapshot directory and some host files, to prove that nothing was
// written, created, removed or re-linked anywhere.
func (f *travFixture) snapshot(t *testing.T) map[string]travEntry {
	t.Helper()
	out := map[string]travEntry{}
	add := func(p string) {
		fi, err := os.Lstat(p)
		if err != nil {
			out[p] = travEntry{Sum: "absent"}
			return
		}
		e := travEntry{Mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			e.Sum = hex.EncodeToString(sum[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, _ = os.Readlink(p)
		}
		out[p] = e
	}
	for _, dir := range []string{f.base, f.tmp} {
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			add(p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/etc/passwd", "/etc/shadow", "/etc/hosts", "/etc/group", "/etc/hostname"} {
		if _, err := os.Lstat(p); err == nil {
			add(p)
		}
	}
	return out
}

// travTooLong reports whether p is longer than MaxPathBytes or has a
// component longer than NAME_MAX (255 bytes): the only payloads that may
// be INVALID_ARGUMENTS, as in the file tools (ENAMETOOLONG).
func travTooLong(p string) bool {
	return len(p) > sqlquery.MaxPathBytes || slices.ContainsFunc(strings.Split(p, "/"), func(c string) bool { return len(c) > 255 })
}

// travClip shortens s for a failure message.
func travClip(s string) string {
	if len(s) <= 300 {
		return s
	}
	return s[:150] + "..." + s[len(s)-150:]
}

// TestTraversalCorpusSQLQuery sends every payload of the shared traversal
// lists as sql_query's database, with a query that reads the canary
// table. Pass: every call is refused — outside the workspace, forbidden,
// or not found inside it (INVALID_ARGUMENTS only for a path or a name
// over the system limits, travTooLong: "not a SQLite database" would mean
// a payload opened /etc/passwd); no canary row, no /etc/passwd line and no host path
// reaches the client; nothing under base, in the snapshot directory or in
// /etc changed.
func TestTraversalCorpusSQLQuery(t *testing.T) {
	corpus := travCorpus(t)
	f := travSetup(t)

	// Control: the canaries are valid databases that would leak if
	// reached.
	outside := f.open(t, f.base)
	for _, rel := range []string{"canary.db", "workspace_evil/canary.db"} {
		res, err := outside.Call(t.Context(), json.RawMessage(fmt.Sprintf(`{"database":%q,"query":%q}`, rel, travQuery)))
		if err != nil || !slices.ContainsFunc(f.secrets[:2], func(s string) bool { return strings.Contains(res.Text, s) }) {
			t.Fatalf("control: %s from a workspace at base: %v %+v", rel, err, res)
		}
	}

	before := f.snapshot(t)
	allowed := []reason.Code{reason.PathOutsideWorkspace, reason.PathForbidden, reason.NotFound}
	counts := map[reason.Code]int{}
	unexpected := map[reason.Code][]string{} // code -> payloads, reported once per code
	start := time.Now()
	for _, pl := range corpus {
		res, err := f.call(t, f.tl, pl.Path)
		code := reason.OK
		if te, ok := tool.AsError(err); ok {
			code = te.Code
		} else if err != nil {
			code = "GO_ERROR"
		} else if res.IsError {
			code = res.Code
		}
		counts[code]++
		if !slices.Contains(allowed, code) && (code != reason.InvalidArguments || !travTooLong(pl.Path)) {
			unexpected[code] = append(unexpected[code], fmt.Sprintf("%s line %d %q (err %v)", pl.List, pl.Line, travClip(pl.Path), err))
		}
	}
	for code, examples := range unexpected {
		t.Errorf("%d payloads answered %s, want %v (INVALID_ARGUMENTS only for a path or name over the system limits); first: %s",
			len(examples), code, allowed, travClip(examples[0]))
	}
	t.Logf("%d payloads x 1 tool in %v: %v", len(corpus), time.Since(start), counts)
	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("files changed (-before +after):\n%s", diff)
	}
}

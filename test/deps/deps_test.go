// Package deps guards the architecture (Tailscale's deptest idea): the
// folder tree is the architecture and dependencies point inward. A core
// package that starts importing what it must not — the pipeline reaching
// for HTTP, a tool reaching for the server, a second SQLite driver — fails
// this test, whoever wrote the import.
package deps

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/portcullis/portcullis"

type pkg struct {
	ImportPath string
	Deps       []string
	Imports    []string
}

// listPackages returns every package of the module with its transitive
// dependencies (go list -deps of each, test files excluded).
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// rule forbids packages matching from (a prefix of the import path after
// the module) to depend, directly or not, on any of deny.
type rule struct {
	from string
	deny []string
	why  string
}

var rules = []rule{
	{"internal/gateway", []string{"net/http", module + "/internal/server", module + "/internal/mcpserver",
		module + "/internal/adminapi", "github.com/modelcontextprotocol/go-sdk/mcp", module + "/internal/store/sqlite"},
		"the pipeline is transport- and backend-independent: HTTP, MCP wire types and a concrete store stay at the edge"},
	{"internal/tool", []string{"net/http", module + "/internal/gateway", module + "/internal/server", module + "/internal/mcpserver"},
		"the tool contract has no dependencies on who calls it"},
	{"internal/tools/", []string{module + "/internal/server", module + "/internal/mcpserver", module + "/internal/adminapi",
		module + "/internal/gateway", module + "/internal/app", module + "/internal/store/sqlite"},
		"tools never import the HTTP layer, the pipeline or a store backend (DESIGN §3)"},
	{"internal/sandbox", []string{"net/http", module + "/internal/server", module + "/internal/mcpserver", module + "/internal/gateway",
		module + "/internal/store", module + "/internal/audit", module + "/internal/policy"},
		"runtimes only run programs"},
	{"internal/policy", []string{"net/http", module + "/internal/server", module + "/internal/gateway", module + "/internal/store/sqlite"},
		"decisions do not depend on transport or backend"},
	{"internal/audit", []string{"net/http", module + "/internal/server", module + "/internal/gateway", module + "/internal/store"},
		"the audit package defines the Backend interface; backends import it, not the reverse"},
	{"internal/audit/forward", []string{module + "/internal/server", module + "/internal/gateway", module + "/internal/store/sqlite"},
		"forwarding reads committed records through the store interface, never a backend or the pipeline"},
	{"internal/violation", []string{module + "/internal/server", module + "/internal/gateway", module + "/internal/store/sqlite"},
		"violations and quarantine are decided apart from transport, pipeline and backend"},
	{"internal/limits", []string{"net/http", module + "/internal/server", module + "/internal/gateway", module + "/internal/store"},
		"limits are pure in-memory decisions"},
	{"internal/authn", []string{module + "/internal/server", module + "/internal/gateway", module + "/internal/store/sqlite"},
		"authentication is used by the edge, not the other way round"},
	{"internal/principal", []string{module + "/"}, "the principal type is a leaf"},
	{"internal/reason", []string{module + "/"}, "reason codes are a leaf"},
	{"internal/hostname", []string{module + "/", "net/http"}, "host parsing is a leaf that every outbound path shares"},
	{"internal/store/sqlite", []string{module + "/internal/gateway", module + "/internal/server", "net/http"},
		"a store backend knows nothing of the pipeline"},
}

// ruleExcept lists sub-packages a rule for their parent does not cover:
// they are outer layers that live beside what they serve.
var ruleExcept = map[string][]string{
	"internal/audit": {"internal/audit/forward"}, // a consumer of committed records, with its own rule
}

func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	for _, r := range rules {
		matched := 0
		for path, p := range pkgs {
			rel := strings.TrimPrefix(path, module+"/")
			if rel != r.from && !strings.HasPrefix(rel, strings.TrimSuffix(r.from, "/")+"/") || slices.Contains(ruleExcept[r.from], rel) {
				continue
			}
			matched++
			for _, d := range p.Deps {
				for _, deny := range r.deny {
					if d == deny || (strings.HasSuffix(deny, "/") && strings.HasPrefix(d, deny)) {
						t.Errorf("%s depends on %s: %s", rel, d, r.why)
					}
				}
			}
		}
		if matched == 0 {
			t.Errorf("rule for %s matched no package: update the rule", r.from)
		}
	}
}

// sqliteDrivers are SQLite drivers for database/sql. Exactly one may be
// linked: modernc.org/sqlite (pure Go, DESIGN §4). A second would register
// another "sqlite" driver and split the store between two engines.
var sqliteDrivers = []string{
	"modernc.org/sqlite",
	"github.com/mattn/go-sqlite3",
	"github.com/ncruces/go-sqlite3",
	"github.com/glebarez/go-sqlite",
	"github.com/glebarez/sqlite",
	"zombiezen.com/go/sqlite",
	"crawshaw.io/sqlite",
	"github.com/cznic/sqlite",
	"gorm.io/driver/sqlite",
}

func TestOneSQLiteDriver(t *testing.T) {
	pkgs := listPackages(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		for _, d := range p.Deps {
			for _, drv := range sqliteDrivers {
				if d == drv || strings.HasPrefix(d, drv+"/") {
					seen[drv] = true
				}
			}
		}
	}
	var got []string
	for d := range seen {
		got = append(got, d)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"modernc.org/sqlite"}) {
		t.Errorf("SQLite drivers linked: %v; want exactly [modernc.org/sqlite]", got)
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

var (
	fixtureOnce sync.Once
	fixtureBin  string
	fixtureErr  error
)

// pluginFixture builds the fixture MCP server (test/fixtures/mcpfixture)
// into a world-readable directory (plugins run as an unprivileged user)
// and returns that directory.
func pluginFixture(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("plugins run in the native sandbox, which needs root")
	}
	fixtureOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(binary), "fixture")
		if fixtureErr = os.MkdirAll(dir, 0o755); fixtureErr != nil {
			return
		}
		_ = os.Chmod(filepath.Dir(binary), 0o755)
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "mcpfixture"), "../fixtures/mcpfixture")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fixtureErr = &exec.ExitError{Stderr: out}
			return
		}
		fixtureBin = dir
	})
	if fixtureErr != nil {
		t.Fatalf("building the fixture: %v", fixtureErr)
	}
	return fixtureBin
}

// hostService serves a fixed body on a loopback port (a destination for
// the plugin's egress).
func hostService(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("host service says hi"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// jsonEnv renders v as a PORTCULLIS_* value.
func jsonEnv(t *testing.T, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return name + "=" + string(b)
}

// waitTools polls tools/list until every name in want is offered.
func waitTools(t *testing.T, cs *mcp.ClientSession, want ...string) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := cs.ListTools(ctx, nil)
		cancel()
		var names []string
		if err == nil {
			for _, tl := range res.Tools {
				names = append(names, tl.Name)
			}
		}
		missing := false
		for _, w := range want {
			if !slices.Contains(names, w) {
				missing = true
			}
		}
		if !missing {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("tools %v not offered within 60s; offered: %v (err %v)", want, names, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func auditEvents(t *testing.T, g *gateway, typ string) []abuseEvent {
	t.Helper()
	return abuseAudit(t, g, url.Values{"type": {typ}})
}

// TestPluginThroughGateway runs the fixture as a plugin of the real binary
// at level strict: its tools pass the pipeline (listed as fx__*, arguments
// validated against the server's inputSchema), egress goes only to the
// allow-listed host, a poisoned tool is withheld until an admin accepts it
// with the CLI, and a flow rule stops private data from reaching an
// external sink in the same session.
func TestPluginThroughGateway(t *testing.T) {
	dir := pluginFixture(t)
	allowed, other := hostService(t), hostService(t)
	notes := t.TempDir()
	os.Chmod(notes, 0o755)
	if err := os.WriteFile(filepath.Join(notes, "inbox.txt"), []byte("private mail"), 0o644); err != nil {
		t.Fatal(err)
	}
	servers := []map[string]any{{
		"name": "fx", "command": []string{"/opt/fixture/mcpfixture"}, "security_level": "strict",
		"mounts":  []map[string]any{{"source": dir, "target": "/opt/fixture"}, {"source": notes, "target": "/data"}},
		"network": map[string]any{"allow": []string{allowed}},
		"env":     map[string]string{"FIXTURE_POISON": "1"},
		"tools": map[string]any{"allow": []string{"*"}, "deny": []string{"crash"},
			"labels": map[string][]string{"read_file": {"private-data"}, "http_get": {"external-sink"}}},
	}}
	flows := []map[string]any{{"name": "no-exfiltration", "after": map[string]string{"label": "private-data"},
		"then": map[string]string{"label": "external-sink", "action": "deny"}}}
	g := startGateway(t, jsonEnv(t, "PORTCULLIS_SERVERS", servers), jsonEnv(t, "PORTCULLIS_FLOWS", flows))
	// Protocol 2025-11-25 has sessions: flow rules track each session
	// (stateless clients are tracked per principal).
	cs := g.connect(g.adminKey, "2025-11-25")
	names := waitTools(t, cs, "fx__echo", "fx__http_get", "fx__read_file")
	for _, hidden := range []string{"fx__poisoned_helper", "fx__crash"} {
		if slices.Contains(names, hidden) {
			t.Errorf("%s offered (poisoned or denied by tools.deny)", hidden)
		}
	}

	if res := call(t, cs, "fx__echo", map[string]any{"text": "through the gateway"}); res.IsError || text(res) != "through the gateway" {
		t.Fatalf("fx__echo: %v %q", res.IsError, text(res))
	}
	if res := call(t, cs, "fx__echo", map[string]any{"text": 42}); !res.IsError || code(res) != "INVALID_ARGUMENTS" {
		t.Fatalf("fx__echo with a number: %v %q; want INVALID_ARGUMENTS from the server's inputSchema", res.IsError, code(res))
	}
	if res := call(t, cs, "fx__http_get", map[string]any{"url": "http://" + allowed + "/"}); !strings.Contains(text(res), "host service says hi") {
		t.Fatalf("allowed egress: %q", text(res))
	}
	if res := call(t, cs, "fx__http_get", map[string]any{"url": "http://" + other + "/"}); strings.Contains(text(res), "says hi") {
		t.Fatalf("egress to an unlisted host got through: %q", text(res))
	}
	if res := call(t, cs, "fx__dial", map[string]any{"address": allowed}); !res.IsError {
		t.Fatalf("direct dial from the sandbox: %q", text(res))
	}

	// Flow rule: after private data, the external sink is refused to this
	// principal, in this session and in a new one (taint follows the
	// principal), and not to another principal.
	if res := call(t, cs, "fx__read_file", map[string]any{"path": "/data/inbox.txt"}); res.IsError || text(res) != "private mail" {
		t.Fatalf("read_file: %v %q", res.IsError, text(res))
	}
	res := call(t, cs, "fx__http_get", map[string]any{"url": "http://" + allowed + "/"})
	if !res.IsError || code(res) != "PERMISSION_DENIED" || strings.Contains(text(res), "no-exfiltration") {
		t.Fatalf("external sink after private data: %v %q %q; want a generic PERMISSION_DENIED", res.IsError, code(res), text(res))
	}
	sameAgain := g.connect(g.adminKey, "2025-11-25")
	if res := call(t, sameAgain, "fx__http_get", map[string]any{"url": "http://" + allowed + "/"}); !res.IsError || code(res) != "PERMISSION_DENIED" {
		t.Fatalf("a new session of the tainted principal reached the sink: %v %q", res.IsError, text(res))
	}
	other2 := g.connect(g.createKey("flowpeer", "admin"), "2025-11-25")
	if res := call(t, other2, "fx__http_get", map[string]any{"url": "http://" + allowed + "/"}); res.IsError {
		t.Fatalf("another principal was tainted: %q", text(res))
	}

	// The poisoned tool: listed as pending with its findings, accepted
	// with the CLI, then offered.
	out, err := g.cli("plugins", "list")
	if err != nil || !strings.Contains(out, "poisoned_helper") || !strings.Contains(out, "pending") {
		t.Fatalf("plugins list: %v\n%s", err, out)
	}
	out, err = g.cli("plugins", "inspect", "fx/poisoned_helper")
	if err != nil || !strings.Contains(out, "hidden-instruction") {
		t.Fatalf("plugins inspect: %v\n%s", err, out)
	}
	if res := call(t, cs, "fx__poisoned_helper", map[string]any{"a": 1, "b": 2}); !res.IsError {
		t.Fatal("a withheld tool ran")
	}
	if out, err = g.cli("plugins", "accept", "fx/poisoned_helper"); err != nil || !strings.Contains(out, "accepted fx/poisoned_helper") {
		t.Fatalf("plugins accept: %v\n%s", err, out)
	}
	waitTools(t, cs, "fx__poisoned_helper")

	for typ, min := range map[string]int{"plugin.start": 1, "plugin.tool.flagged": 1, "plugin.tool.accept": 1,
		"egress.connect": 1, "egress.refused": 1, "flow.deny": 1} {
		if n := len(auditEvents(t, g, typ)); n < min {
			t.Errorf("%d %s audit events, want at least %d", n, typ, min)
		}
	}
}

// TestPluginQuarantine: a strict plugin that keeps trying to reach hosts
// off its allow-list is quarantined at its level's threshold (3), its
// tools are refused, and `portcullis quarantine release` restores them.
func TestPluginQuarantine(t *testing.T) {
	dir := pluginFixture(t)
	allowed, other := hostService(t), hostService(t)
	servers := []map[string]any{{
		"name": "fx", "command": []string{"/opt/fixture/mcpfixture"}, "security_level": "strict",
		"mounts":  []map[string]any{{"source": dir, "target": "/opt/fixture"}},
		"network": map[string]any{"allow": []string{allowed}},
		"tools":   map[string]any{"allow": []string{"echo", "http_get"}},
	}}
	g := startGateway(t, jsonEnv(t, "PORTCULLIS_SERVERS", servers))
	cs := g.connect(g.adminKey, "")
	waitTools(t, cs, "fx__echo", "fx__http_get")
	for range 3 {
		call(t, cs, "fx__http_get", map[string]any{"url": "http://" + other + "/"})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := call(t, cs, "fx__echo", map[string]any{"text": "x"})
		if res.IsError && code(res) == "PERMISSION_DENIED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin not quarantined after 3 egress refusals: %v %q", res.IsError, text(res))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := g.cli("violations", "--type", "egress_refused"); err != nil || strings.Count(out, "egress_refused") < 3 {
		t.Fatalf("violations --type egress_refused: %v\n%s", err, out)
	}
	if out, err := g.cli("quarantine", "release", "fx", "--reason", "test: egress reviewed"); err != nil {
		t.Fatalf("quarantine release: %v\n%s", err, out)
	}
	if res := call(t, cs, "fx__echo", map[string]any{"text": "back"}); res.IsError || text(res) != "back" {
		t.Fatalf("after release: %v %q", res.IsError, text(res))
	}
	if n := len(auditEvents(t, g, "quarantine.create")); n != 1 {
		t.Errorf("%d quarantine.create events, want 1", n)
	}
}

// TestServerFilesystemPlugin runs the reference MCP filesystem server from
// npm with Debian's nodejs inside the sandbox at level strict with one
// writable mount, and lists and reads through the gateway. CI installs
// nodejs and npm; without them the test is skipped.
func TestServerFilesystemPlugin(t *testing.T) {
	pluginFixture(t) // root check
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (CI installs Debian's nodejs)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed (CI installs Debian's npm)")
	}
	prefix := filepath.Join(filepath.Dir(binary), "npm")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	install := exec.Command(npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", prefix,
		"@modelcontextprotocol/server-filesystem")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install @modelcontextprotocol/server-filesystem: %v\n%s", err, out)
	}
	entry := filepath.Join(prefix, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	if _, err := os.Stat(entry); err != nil {
		t.Fatal(err)
	}
	// The sandbox user must be able to read the package.
	_ = filepath.Walk(prefix, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			_ = os.Chmod(p, fi.Mode().Perm()|0o444|map[bool]os.FileMode{true: 0o111}[fi.IsDir()])
		}
		return nil
	})
	data := t.TempDir()
	os.Chmod(data, 0o777)
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("hello from the host workspace"), 0o644); err != nil {
		t.Fatal(err)
	}
	servers := []map[string]any{{
		"name": "fs", "command": []string{node, "/opt/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", "/data"},
		"security_level": "strict",
		"mounts": []map[string]any{{"source": prefix, "target": "/opt/npm"},
			{"source": data, "target": "/data", "read_only": false}},
		"tools": map[string]any{"allow": []string{"*"}},
	}}
	g := startGateway(t, jsonEnv(t, "PORTCULLIS_SERVERS", servers))
	cs := g.connect(g.adminKey, "")
	names := waitTools(t, cs, "fs__list_directory")
	res := call(t, cs, "fs__list_directory", map[string]any{"path": "/data"})
	if res.IsError || !strings.Contains(text(res), "hello.txt") {
		t.Fatalf("fs__list_directory: %v %q\nstderr:\n%s", res.IsError, text(res), g.stderr)
	}
	read := "fs__read_text_file"
	if !slices.Contains(names, read) {
		read = "fs__read_file"
	}
	if res := call(t, cs, read, map[string]any{"path": "/data/hello.txt"}); res.IsError || !strings.Contains(text(res), "hello from the host workspace") {
		t.Fatalf("%s: %v %q", read, res.IsError, text(res))
	}
	// Outside its one mount the server sees nothing of the host.
	if res := call(t, cs, read, map[string]any{"path": "/data/../etc/passwd"}); !res.IsError && strings.Contains(text(res), "root:") {
		t.Fatalf("read outside the mount: %q", text(res))
	}
	if slices.Contains(names, "fs__write_file") {
		if res := call(t, cs, "fs__write_file", map[string]any{"path": "/data/new.txt", "content": "written in the sandbox"}); res.IsError {
			t.Fatalf("fs__write_file into the writable mount: %q", text(res))
		}
		if b, err := os.ReadFile(filepath.Join(data, "new.txt")); err != nil || string(b) != "written in the sandbox" {
			t.Fatalf("host file after write: %q, %v", b, err)
		}
	}
}

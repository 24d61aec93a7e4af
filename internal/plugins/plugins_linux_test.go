//go:build linux

package plugins_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/plugins/pin/pintest"
	"github.com/portcullis/portcullis/internal/sandbox/native"
	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/violation"
)

// ---- harness --------------------------------------------------------------

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  error
)

// fixture builds test/fixtures/mcpfixture once into a world-readable
// directory (the sandbox runs as an unprivileged user) and returns it.
func fixture(t *testing.T) string {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portcullis-fixture-")
		if err != nil {
			fixtureErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			fixtureErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		goBin := os.Getenv("GO")
		if goBin == "" {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(dir, "mcpfixture"), "./test/fixtures/mcpfixture")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fixtureErr = fmt.Errorf("building the fixture: %v\n%s", err, out)
			return
		}
		fixtureDir = dir
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureDir
}

func TestMain(m *testing.M) {
	native.Main() // the runtime re-executes this binary as the sandbox init
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

var (
	rtOnce sync.Once
	rt     *native.Runtime
	rtErr  error
)

func sandboxRuntime(t *testing.T) *native.Runtime {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the native sandbox needs root")
	}
	rtOnce.Do(func() {
		rt, rtErr = native.New(native.Config{ReadOnlyPaths: config.Default().Sandbox.ReadOnlyPaths, PoolSize: -1},
			slog.New(slog.DiscardHandler))
	})
	if rtErr != nil {
		t.Fatal(rtErr)
	}
	return rt
}

// registry records the tools each server offers.
type registry struct {
	mu    sync.Mutex
	tools map[string][]tool.Tool
	sets  int
}

func (r *registry) SetServerTools(server string, tools []tool.Tool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tools == nil {
		r.tools = map[string][]tool.Tool{}
	}
	r.tools[server] = tools
	r.sets++
	return nil
}

func (r *registry) names(server string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, t := range r.tools[server] {
		out = append(out, t.Definition().Name)
	}
	return out
}

func (r *registry) get(server, name string) tool.Tool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tools[server] {
		if t.Definition().Name == name {
			return t
		}
	}
	return nil
}

type violations struct {
	mu   sync.Mutex
	list []store.Violation
}

func (v *violations) record(_ context.Context, x store.Violation) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.list = append(v.list, x)
}

func (v *violations) of(typ string) []store.Violation {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []store.Violation
	for _, x := range v.list {
		if x.Type == typ {
			out = append(out, x)
		}
	}
	return out
}

type fakeSecrets map[string]string

// Get falls back to the shared value, as secrets.Store.Get does.
func (f fakeSecrets) Get(ctx context.Context, name, user string) ([]byte, error) {
	v, err := f.GetOwn(ctx, name, user)
	if errors.Is(err, secrets.ErrNotFound) && user != "" {
		return f.GetOwn(ctx, name, "")
	}
	return v, err
}

func (f fakeSecrets) GetOwn(_ context.Context, name, user string) ([]byte, error) {
	v, ok := f[name+"/"+user]
	if !ok {
		return nil, fmt.Errorf("%w: %q", secrets.ErrNotFound, name)
	}
	return []byte(v), nil
}

// logLines counts log records (stderr capture).
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.lines = append(l.lines, b.String())
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }
func (l *logLines) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}

// alerts keeps raised alerts.
type alerts struct {
	mu   sync.Mutex
	list []alert.Alert
}

func (a *alerts) Alert(_ context.Context, x alert.Alert) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, x)
}

func (a *alerts) kinds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, x := range a.list {
		out = append(out, x.Kind+" "+x.Subject)
	}
	return out
}

type env struct {
	alerts *alerts
	m      *plugins.Manager
	reg    *registry
	rec    *audittest.Recorder
	vio    *violations
	logs   *logLines
	pins   *pin.Pinner
}

// start runs one fixture server configured by sc (Command and the fixture
// mount are filled in) and waits until it is ready.
func start(t *testing.T, sc config.ServerConfig, sec fakeSecrets) *env {
	t.Helper()
	return startWith(t, plugins.Config{}, sc, sec)
}

// startWith is start with manager settings (servers, backoff and stderr
// limits are filled in).
func startWith(t *testing.T, mc plugins.Config, sc config.ServerConfig, sec fakeSecrets) *env {
	t.Helper()
	rt := sandboxRuntime(t)
	dir := fixture(t)
	if sc.Name == "" {
		sc.Name = "fx"
	}
	if len(sc.Command) == 0 {
		sc.Command = []string{"/opt/fixture/mcpfixture"}
	}
	sc.Mounts = append(sc.Mounts, config.MountConfig{Source: dir, Target: "/opt/fixture"})
	if sc.Tools.Allow == nil {
		sc.Tools.Allow = []string{"*"}
	}
	e := &env{reg: &registry{}, rec: &audittest.Recorder{}, vio: &violations{}, logs: &logLines{}, alerts: &alerts{}}
	var err error
	if e.pins, err = pin.New(pintest.NewMemory(), nil); err != nil {
		t.Fatal(err)
	}
	mc.Servers, mc.MinBackoff, mc.MaxBackoff, mc.StderrLines = []config.ServerConfig{sc}, 50*time.Millisecond,
		200*time.Millisecond, 20
	e.m, err = plugins.New(mc,
		plugins.Deps{Runtime: rt, Registry: e.reg, Pins: e.pins, Secrets: sec, Audit: e.rec, Alerts: e.alerts,
			Violations: e.vio.record, Logger: slog.New(e.logs)})
	if err != nil {
		t.Fatal(err)
	}
	e.m.Start(t.Context())
	t.Cleanup(func() { e.m.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := e.m.WaitReady(ctx); err != nil {
		t.Fatalf("%v; status %+v; logs %v", err, e.m.Status(), e.logs.matching(""))
	}
	return e
}

// call runs an offered tool and returns its text and error flag.
func (e *env) call(t *testing.T, name string, args map[string]any) (string, bool) {
	t.Helper()
	tl := e.reg.get("fx", "fx__"+name)
	if tl == nil {
		t.Fatalf("tool fx__%s not offered (offered: %v)", name, e.reg.names("fx"))
	}
	raw, _ := json.Marshal(args)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := tl.Call(ctx, raw)
	if err != nil {
		return "CALL FAILED: " + err.Error(), true
	}
	return res.Text, res.IsError
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loopbackHTTP serves "hello" on a loopback port.
func loopbackHTTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hello from the host"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// ---- tests ----------------------------------------------------------------

// TestSecurityLevels runs the fixture at each level and tries what a
// hostile server would: reach a loopback service directly and through the
// proxy, resolve names, read a host file outside its mounts, start a
// program. Each level's expectation (DESIGN §5) is asserted.
func TestSecurityLevels(t *testing.T) {
	allowed := loopbackHTTP(t)
	other := loopbackHTTP(t)
	canaryDir := t.TempDir()
	canary := filepath.Join(canaryDir, "host-secret.txt")
	if err := os.WriteFile(canary, []byte("CANARY-host-file"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		level     string
		allow     []string
		proxyOK   bool // http_get of the allowed address through the proxy succeeds
		spawnOK   bool
		egressOut bool // a refused proxy request is audited and counted
	}{
		{level: "maximum", proxyOK: false, spawnOK: false},
		{level: "strict", allow: []string{allowed}, proxyOK: true, spawnOK: true, egressOut: true},
		{level: "standard", allow: []string{allowed, "*.example.test:443"}, proxyOK: true, spawnOK: true, egressOut: true},
		{level: "minimal", proxyOK: false, spawnOK: true, egressOut: true},
	}
	for _, tc := range tests {
		t.Run(tc.level, func(t *testing.T) {
			e := start(t, config.ServerConfig{SecurityLevel: tc.level, Network: config.ServerNetwork{Allow: tc.allow}}, nil)

			if out, isErr := e.call(t, "dial", map[string]any{"address": allowed}); !isErr || strings.Contains(out, "CONNECTED") {
				t.Errorf("direct dial to the host's loopback: %q; want refused (empty network namespace)", out)
			}
			if out, isErr := e.call(t, "resolve", map[string]any{"name": "example.com"}); !isErr {
				t.Errorf("DNS resolution inside the sandbox: %q; want failure", out)
			}
			out, _ := e.call(t, "http_get", map[string]any{"url": "http://" + allowed + "/"})
			if got := strings.Contains(out, "hello from the host"); got != tc.proxyOK {
				t.Errorf("http_get of the allowed address through the proxy: %q; want success=%v", out, tc.proxyOK)
			}
			out, _ = e.call(t, "http_get", map[string]any{"url": "http://" + other + "/"})
			if strings.Contains(out, "hello from the host") {
				t.Errorf("http_get of an address not on the allow-list reached it: %q", out)
			}
			if tc.egressOut {
				if !strings.Contains(out, "STATUS 403") {
					t.Errorf("unlisted destination through the proxy: %q; want the proxy's 403", out)
				}
				waitFor(t, "egress.refused audit", func() bool { return len(e.rec.Of(audit.EgressRefused)) > 0 })
				if v := e.vio.of(violation.EgressRefused); len(v) == 0 || v[0].Plugin != "fx" {
					t.Errorf("egress refusal violations: %+v; want one for plugin fx", v)
				}
			}
			if tc.proxyOK {
				waitFor(t, "egress.connect audit", func() bool { return len(e.rec.Of(audit.EgressConnect)) > 0 })
			}
			if out, isErr := e.call(t, "read_file", map[string]any{"path": canary}); !isErr || strings.Contains(out, "CANARY") {
				t.Errorf("read a host file outside the mounts: %q", out)
			}
			if out, _ := e.call(t, "read_file", map[string]any{"path": "/etc/shadow"}); strings.Contains(out, "root:") {
				t.Errorf("read /etc/shadow: %q", out)
			}
			if out, _ := e.call(t, "getuid", nil); strings.Contains(out, "uid=0 ") {
				t.Errorf("server runs as root inside: %q", out)
			}
			out, isErr := e.call(t, "spawn", map[string]any{"argv": []string{"/bin/true"}})
			if got := !isErr && strings.HasPrefix(out, "EXIT 0"); got != tc.spawnOK {
				t.Errorf("spawn /bin/true: %q; want success=%v", out, tc.spawnOK)
			}
			if out, isErr := e.call(t, "write_file", map[string]any{"path": "/opt/fixture/planted", "content": "x"}); !isErr {
				t.Errorf("wrote into a read-only mount: %q", out)
			}
		})
	}
}

// TestRugPull: a server that changes a tool's description between restarts
// gets that tool withheld (plugin.tools.changed, a definition_changed
// violation) until an administrator accepts the new definition; the other
// tools stay offered.
func TestRugPull(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	variant := filepath.Join(dir, "variant")
	if err := os.WriteFile(variant, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := start(t, config.ServerConfig{SecurityLevel: "strict",
		Env:    map[string]string{"FIXTURE_VARIANT_FILE": "/opt/variant/variant"},
		Mounts: []config.MountConfig{{Source: dir, Target: "/opt/variant"}}}, nil)
	if e.reg.get("fx", "fx__echo") == nil {
		t.Fatalf("echo not offered on first sight: %v", e.reg.names("fx"))
	}
	if err := os.WriteFile(variant, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.call(t, "crash", nil) // the server exits; the supervisor restarts it
	waitFor(t, "restart with a changed echo", func() bool { return len(e.rec.Of(audit.PluginToolsChanged)) > 0 })
	waitFor(t, "echo withheld", func() bool { return e.reg.get("fx", "fx__echo") == nil && e.reg.get("fx", "fx__getuid") != nil })
	if v := e.vio.of(violation.DefinitionChanged); len(v) != 1 || v[0].Plugin != "fx" {
		t.Fatalf("definition_changed violations: %+v", v)
	}
	if got := e.alerts.kinds(); len(got) != 1 || got[0] != "plugin.tools.changed fx__echo" {
		t.Fatalf("alerts: %v; want one plugin.tools.changed for fx__echo", got)
	}
	rec, err := e.m.Pin(t.Context(), "fx", "echo")
	if err != nil || rec.Status != pin.Pending || !strings.Contains(pin.Diff(rec.Definition, rec.PendingDefinition), "variant two") {
		t.Fatalf("pin after the change: %+v, %v", rec, err)
	}
	if _, err := e.m.Accept(t.Context(), "fx", "echo", "sha256:"+strings.Repeat("0", 64), "admin"); err == nil {
		t.Fatal("accepting a hash other than the pending one succeeded")
	}
	if _, err := e.m.Accept(t.Context(), "fx", "echo", rec.PendingHash, "admin"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "echo offered again", func() bool { return e.reg.get("fx", "fx__echo") != nil })
	if out, _ := e.call(t, "echo", map[string]any{"text": "back"}); out != "back" {
		t.Fatalf("echo after accept: %q", out)
	}
	if got := e.rec.Of(audit.PluginToolAccept); len(got) != 1 || got[0].Principal != "admin" {
		t.Fatalf("plugin.tool.accept events: %+v", got)
	}
	if n := len(e.rec.Of(audit.PluginStart)); n < 2 {
		t.Fatalf("plugin.start events: %d; want a start and a restart", n)
	}
	if n := len(e.rec.Of(audit.PluginExit)); n < 1 {
		t.Fatal("no plugin.exit event for the crash")
	}
}

// TestPoisonedToolWithheld: a tool whose description hides instructions
// is never offered on first sight (plugin.tool.flagged), the clean ones
// are.
func TestPoisonedToolWithheld(t *testing.T) {
	e := start(t, config.ServerConfig{SecurityLevel: "maximum", Env: map[string]string{"FIXTURE_POISON": "1"}}, nil)
	if e.reg.get("fx", "fx__poisoned_helper") != nil {
		t.Fatal("poisoned tool offered")
	}
	if e.reg.get("fx", "fx__echo") == nil {
		t.Fatal("clean tool not offered")
	}
	ev := e.rec.Of(audit.PluginToolFlagged)
	if len(ev) != 1 || ev[0].Tool != "fx__poisoned_helper" || !strings.Contains(ev[0].Detail, "hidden-instruction") {
		t.Fatalf("plugin.tool.flagged events: %+v", ev)
	}
	if got := e.alerts.kinds(); len(got) != 1 || got[0] != "plugin.tool.flagged fx__poisoned_helper" {
		t.Fatalf("alerts: %v", got)
	}
	st := e.m.Status()
	if len(st) != 1 || len(st[0].Withheld) != 1 || st[0].Withheld[0] != "poisoned_helper" {
		t.Fatalf("status: %+v", st)
	}
}

// TestToolFilterAndOverrides: tools.deny wins over allow, sensitivity and
// labels come from the configuration.
func TestToolFilterAndOverrides(t *testing.T) {
	e := start(t, config.ServerConfig{SecurityLevel: "maximum", Tools: config.ServerTools{
		Allow: []string{"*"}, Deny: []string{"spawn", "write_*"},
		Sensitivity: map[string]string{"read_file": "HIGH"}, Labels: map[string][]string{"read_file": {"private-data"}}}}, nil)
	for _, denied := range []string{"fx__spawn", "fx__write_file"} {
		if e.reg.get("fx", denied) != nil {
			t.Errorf("%s offered despite tools.deny", denied)
		}
	}
	d := e.reg.get("fx", "fx__read_file").Definition()
	if d.Sensitivity != tool.High || len(d.Labels) != 1 || d.Labels[0] != "private-data" || d.Server != "fx" {
		t.Fatalf("read_file definition: %+v", d)
	}
	if e.reg.get("fx", "fx__echo").Definition().Sensitivity != tool.Medium {
		t.Fatal("default sensitivity is not MEDIUM")
	}
}

// TestSecretEnvAndStderr: ${secret:NAME} reaches the server's environment
// (checked by length and digest, never printed), and a server printing its
// secret to stderr has it redacted in the log, which is bounded.
func TestSecretEnvAndStderr(t *testing.T) {
	tok := rand.Text()
	sum := sha256.Sum256([]byte(tok))
	e := start(t, config.ServerConfig{SecurityLevel: "strict", Env: map[string]string{
		"API_TOKEN": "${secret:notes_token}", "FIXTURE_SECRET_ENV": "API_TOKEN", "FIXTURE_STDERR_SPAM": "200000",
	}}, fakeSecrets{"notes_token/": tok})
	out, _ := e.call(t, "show_env", nil)
	if want := fmt.Sprintf("API_TOKEN=%d sha256=%s", len(tok), hex.EncodeToString(sum[:])); !strings.Contains(out, want) {
		t.Fatalf("show_env: %q; want %q", out, want)
	}
	if got := e.logs.matching("upstream server stderr "); len(got) > 20 {
		t.Fatalf("%d stderr lines logged; want at most 20 a minute", len(got))
	}
	for _, l := range e.logs.matching("") {
		if strings.Contains(l, tok) {
			t.Fatal("the secret reached the log")
		}
	}
	for _, ev := range e.rec.Of("") {
		if strings.Contains(ev.Detail, tok) || bytes.Contains(ev.Args, []byte(tok)) {
			t.Fatal("the secret reached the audit log")
		}
	}
}

// TestMissingSecretRefusesStart: a server whose secret is not stored does
// not start (and the error names the secret, not a value).
func TestMissingSecretRefusesStart(t *testing.T) {
	rt := sandboxRuntime(t)
	rec := &audittest.Recorder{}
	pins, _ := pin.New(pintest.NewMemory(), nil)
	m, err := plugins.New(plugins.Config{Servers: []config.ServerConfig{{Name: "fx", SecurityLevel: "strict",
		Command: []string{"/bin/true"}, Env: map[string]string{"T": "${secret:absent}"}, Tools: config.ServerTools{Allow: []string{"*"}}}},
		MinBackoff: time.Second},
		plugins.Deps{Runtime: rt, Registry: &registry{}, Pins: pins, Secrets: fakeSecrets{}, Audit: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t.Context())
	defer m.Close()
	waitFor(t, "plugin.exit", func() bool { return len(rec.Of(audit.PluginExit)) > 0 })
	if ev := rec.Of(audit.PluginExit)[0]; !strings.Contains(ev.Detail, `"absent"`) || ev.Status != audit.StatusError {
		t.Fatalf("plugin.exit: %+v", ev)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := m.WaitReady(ctx); err == nil {
		t.Fatal("server without its secret became ready")
	}
}

// TestConfigRefusals: what New refuses before anything runs.
func TestConfigRefusals(t *testing.T) {
	pins, _ := pin.New(pintest.NewMemory(), nil)
	deps := plugins.Deps{Registry: &registry{}, Pins: pins, Audit: &audittest.Recorder{}, Logger: slog.New(slog.DiscardHandler)}
	for name, sc := range map[string]config.ServerConfig{
		"stdio without a sandbox": {Name: "a", Command: []string{"/bin/true"}, SecurityLevel: "strict"},
		"bad level":               {Name: "a", URL: "https://x.test/mcp", SecurityLevel: "lax"},
		"wildcard at strict":      {Name: "a", URL: "https://x.test/mcp", SecurityLevel: "strict", Network: config.ServerNetwork{Allow: []string{"*.x.test:443"}}},
		"bad pattern":             {Name: "a", URL: "https://x.test/mcp", SecurityLevel: "standard", Network: config.ServerNetwork{Allow: []string{"a*.x.test:443"}}},
	} {
		if _, err := plugins.New(plugins.Config{Servers: []config.ServerConfig{sc}}, deps); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := plugins.New(plugins.Config{}, plugins.Deps{}); err == nil {
		t.Error("missing dependencies accepted")
	}
}

// TestHungServerRestarted: a server that stops answering MCP ping (here:
// stopped with SIGSTOP) is killed and restarted by the health check.
func TestHungServerRestarted(t *testing.T) {
	marker := rand.Text()
	e := startWith(t, plugins.Config{PingInterval: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond, PingFailures: 2},
		config.ServerConfig{SecurityLevel: "strict", Env: map[string]string{"FIXTURE_VARIANT": marker}}, nil)
	pid := fixturePID(t, marker)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a restart after failed pings", func() bool {
		for _, ev := range e.rec.Of(audit.PluginExit) {
			if strings.Contains(ev.Detail, "no answer to 2 pings") {
				return len(e.rec.Of(audit.PluginStart)) >= 2
			}
		}
		return false
	})
	waitFor(t, "the server answering again", func() bool {
		out, isErr := e.call(t, "echo", map[string]any{"text": "alive"})
		return !isErr && out == "alive"
	})
	if newPID := fixturePID(t, marker); newPID == pid {
		t.Fatal("the hung process still serves")
	}
}

// fixturePID finds the host pid of the fixture process started with
// FIXTURE_VARIANT=marker.
func fixturePID(t *testing.T, marker string) int {
	t.Helper()
	var found int
	waitFor(t, "the fixture process", func() bool {
		ents, _ := os.ReadDir("/proc")
		for _, ent := range ents {
			pid, err := strconv.Atoi(ent.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
			if err == nil && bytes.Contains(b, []byte("FIXTURE_VARIANT="+marker+"\x00")) {
				if st, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); err == nil && !bytes.Contains(st, []byte(") T ")) {
					found = pid
					return true
				}
			}
		}
		return false
	})
	return found
}

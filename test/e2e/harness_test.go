// Package e2e holds black-box tests: they build the real portcullis
// binary, start it on a temporary data dir and a free loopback port, and
// talk to it with the official MCP Go SDK client and the CLI.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/store/postgres/pgtest"
)

// binary is the portcullis binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "portcullis")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/portcullis")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build portcullis:", err)
		os.Exit(1)
	}
	code := pgtest.Run(m) // stops the PostgreSQL cluster of the replica tests, if one was started
	os.RemoveAll(dir)
	os.Exit(code)
}

// relaxedAbuse lifts rate and concurrency limits and automatic quarantine
// for tests whose subject is something else (load tests, attack suites
// that would otherwise quarantine their own principal). Tests of the abuse
// controls pass their own settings after it (the last value wins).
var relaxedAbuse = func() []string {
	lvl := `{"rate_per_minute":1000000,"burst":100000,"concurrency":1000,"principal_concurrency":1000}`
	return []string{
		"PORTCULLIS_LIMITS_PRINCIPAL_RATE_PER_MINUTE=1000000", "PORTCULLIS_LIMITS_PRINCIPAL_BURST=100000",
		"PORTCULLIS_LIMITS_PRINCIPAL_CONCURRENCY=1000",
		`PORTCULLIS_LIMITS_LEVELS={"LOW":` + lvl + `,"MEDIUM":` + lvl + `,"HIGH":` + lvl + `,"CRITICAL":` + lvl + `}`,
		"PORTCULLIS_VIOLATIONS_QUARANTINE_PRINCIPAL_COUNT=0", "PORTCULLIS_VIOLATIONS_QUARANTINE_SESSION_COUNT=0",
	}
}()

// cleanEnv is the environment for the binary: no inherited PORTCULLIS_*.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTCULLIS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// gateway is a running `portcullis serve`.
type gateway struct {
	t         *testing.T
	cmd       *exec.Cmd
	base      string // http://127.0.0.1:port
	adminKey  string
	dataDir   string
	workspace string
	stdout    *syncBuffer
	stderr    *syncBuffer
	exited    chan struct{}
	exitErr   error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	listenRE = regexp.MustCompile(`listening on (http://[0-9.:]+)/mcp`)
	keyRE    = regexp.MustCompile(`^\s+(pcl_[A-Z2-7]+)\s*$`)
)

// startGateway starts serve on a fresh data dir and workspace and waits
// until it prints its address (and, on first start, the admin key).
func startGateway(t *testing.T, extraEnv ...string) *gateway {
	t.Helper()
	root := t.TempDir()
	return startGatewayAt(t, filepath.Join(root, "data"), filepath.Join(root, "ws"), extraEnv...)
}

// startGatewayAt starts serve on dataDir (created by serve if missing) and
// workspace (created here if missing); it is stopped when t ends.
func startGatewayAt(t *testing.T, dataDir, workspace string, extraEnv ...string) *gateway {
	t.Helper()
	g := &gateway{t: t, dataDir: dataDir, workspace: workspace,
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	if err := os.MkdirAll(g.workspace, 0o755); err != nil {
		t.Fatal(err)
	}
	g.start(extraEnv...)
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) start(extraEnv ...string) {
	t := g.t
	t.Helper()
	g.cmd = exec.Command(binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", g.dataDir, "--workspace", g.workspace)
	g.cmd.Env = cleanEnv(append(slices.Clone(relaxedAbuse), extraEnv...)...)
	pr, pw := io.Pipe()
	g.cmd.Stdout = io.MultiWriter(pw, g.stdout)
	g.cmd.Stderr = g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.exited = make(chan struct{})
	go func() {
		g.exitErr = g.cmd.Wait()
		pw.Close()
		close(g.exited)
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				g.base = m[1]
			}
			if m := keyRE.FindStringSubmatch(line); m != nil {
				g.adminKey = m[1]
			}
			if !signalled && g.base != "" && (strings.Contains(line, "admin key:") || g.adminKey != "") {
				signalled = true
				close(ready)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-ready:
	case <-g.exited:
		t.Fatalf("gateway exited early: %v\nstdout:\n%s\nstderr:\n%s", g.exitErr, g.stdout, g.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("gateway did not start\nstdout:\n%s\nstderr:\n%s", g.stdout, g.stderr)
	}
	if g.adminKey == "" {
		b, err := os.ReadFile(filepath.Join(g.dataDir, "admin.key"))
		if err != nil {
			t.Fatal(err)
		}
		g.adminKey = strings.TrimSpace(string(b))
	}
}

// signal sends sig and waits for exit; it returns the exit error.
func (g *gateway) signal(sig syscall.Signal) error {
	_ = g.cmd.Process.Signal(sig)
	select {
	case <-g.exited:
		return g.exitErr
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
		return fmt.Errorf("gateway did not exit after %v", sig)
	}
}

func (g *gateway) stop() {
	select {
	case <-g.exited:
		return
	default:
	}
	if err := g.signal(syscall.SIGTERM); err != nil {
		g.t.Errorf("gateway shutdown: %v\nstderr:\n%s", err, g.stderr)
	}
}

// cli runs the binary with args against this gateway and returns stdout.
func (g *gateway) cli(args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = cleanEnv("PORTCULLIS_SERVER="+g.base, "PORTCULLIS_DATA_DIR="+g.dataDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %w\n%s", args, err, errb.String())
	}
	return out.String(), nil
}

// createKey makes a key for user with role through the CLI.
func (g *gateway) createKey(user, role string) string {
	g.t.Helper()
	out, err := g.cli("key", "create", "--user", user, "--role", role, "--json")
	if err != nil {
		g.t.Fatal(err)
	}
	var k struct{ Key string }
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" {
		g.t.Fatalf("key create output %q: %v", out, err)
	}
	return k.Key
}

// bearer adds an Authorization header to every request.
type bearer struct {
	key  string
	base http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.base.RoundTrip(r)
}

// connect opens an MCP client session with key at protocol version pv
// ("" = the SDK's latest).
func (g *gateway) connect(key, pv string) *mcp.ClientSession {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{
		Endpoint:   g.base + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{key: key, base: http.DefaultTransport}},
		MaxRetries: -1,
	}
	cs, err := client.Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: pv})
	if err != nil {
		g.t.Fatalf("connect: %v\nstderr:\n%s", err, g.stderr)
	}
	g.t.Cleanup(func() { cs.Close() })
	return cs
}

// call calls a tool and returns the result.
func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// code returns structuredContent.code of an error result.
func code(res *mcp.CallToolResult) string {
	m, _ := res.StructuredContent.(map[string]any)
	s, _ := m["code"].(string)
	return s
}

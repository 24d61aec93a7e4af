package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// smallFiles is how many small workspace files file_info spreads over.
const smallFiles = 64

// benchRole is the role of the benchmark's API key: exactly the two tools
// it calls, so the decision is a real grant match, not admin's '*'.
const benchRole = "bench"

// relaxedAbuse lifts rate, concurrency and quota limits and automatic
// quarantine so that they are evaluated on every call but do not throttle
// the load (as test/e2e's relaxedAbuse).
var relaxedAbuse = func() []string {
	lvl := `{"rate_per_minute":100000000,"burst":1000000,"concurrency":10000,"principal_concurrency":10000}`
	return []string{
		"PORTCULLIS_LIMITS_PRINCIPAL_RATE_PER_MINUTE=100000000", "PORTCULLIS_LIMITS_PRINCIPAL_BURST=1000000",
		"PORTCULLIS_LIMITS_PRINCIPAL_CONCURRENCY=10000", "PORTCULLIS_LIMITS_QUOTA_CALLS_PER_DAY=0",
		`PORTCULLIS_LIMITS_LEVELS={"LOW":` + lvl + `,"MEDIUM":` + lvl + `,"HIGH":` + lvl + `,"CRITICAL":` + lvl + `}`,
		"PORTCULLIS_VIOLATIONS_QUARANTINE_PRINCIPAL_COUNT=0", "PORTCULLIS_VIOLATIONS_QUARANTINE_SESSION_COUNT=0",
	}
}()

// benchPolicies are ten Cedar policies in the shapes operators write
// (examples/policies): some scoped to the benchmarked tools with
// conditions on their arguments, some global, none matching the
// benchmark's calls, so every call is evaluated by Cedar and allowed.
const benchPolicies = `@id("no-secret-info")
forbid (principal, action == Action::"call", resource == Tool::"file_info")
when { context.args has path && (context.args.path like "*.pem" || context.args.path like "*id_rsa*") };

@id("no-env-info")
forbid (principal, action == Action::"call", resource == Tool::"file_info")
when { context.args has path && context.args.path like "*.env" };

@id("echo-no-sql")
forbid (principal, action == Action::"call", resource == Tool::"fx__echo")
when { context.args has text && context.args.text like "*DROP TABLE*" };

@id("echo-no-keys")
forbid (principal, action == Action::"call", resource == Tool::"fx__echo")
when { context.args has text && context.args.text like "*BEGIN PRIVATE KEY*" };

@id("blocked-user")
forbid (principal, action == Action::"call", resource)
when { principal.name == "mallory" };

@id("denial-storm")
forbid (principal, action == Action::"call", resource)
when { context.denials > 1000 };

@id("no-secret-files-write")
forbid (principal, action == Action::"call", resource == Tool::"write_file")
when { context.args has path && (context.args.path like "*.env" || context.args.path like "*.pem") };

@id("no-secret-files-edit")
forbid (principal, action == Action::"call", resource == Tool::"edit_file")
when { context.args has path && (context.args.path like "*.env" || context.args.path like "*.pem") };

@id("python-working-hours")
forbid (principal, action == Action::"call", resource == Tool::"execute_python")
unless { principal in Role::"admin" || (context.hour >= 0 && context.hour < 24) };

@id("no-delete-git")
forbid (principal, action == Action::"call", resource == Tool::"delete_file")
when { context.args has path && context.args.path like ".git/*" };
`

// layout is the temporary tree of one run.
type layout struct {
	root, fixtureDir, dataDir, workspace, policyDir string
}

// newLayout makes the temporary tree: a world-readable copy of the
// fixture (the plugin runs as an unprivileged user), a workspace with the
// small files, a policy directory.
func newLayout(root, fixture string) (*layout, error) {
	l := &layout{root: root, fixtureDir: filepath.Join(root, "fixture"), dataDir: filepath.Join(root, "data"),
		workspace: filepath.Join(root, "ws"), policyDir: filepath.Join(root, "policies")}
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{l.fixtureDir, filepath.Join(l.workspace, "small"), l.policyDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := copyFile(fixture, filepath.Join(l.fixtureDir, "mcpfixture"), 0o755); err != nil {
		return nil, fmt.Errorf("copy fixture: %w", err)
	}
	for i := range smallFiles {
		body := fmt.Appendf(nil, "small file %d\n", i)
		if err := os.WriteFile(filepath.Join(l.workspace, "small", fmt.Sprintf("f%02d.txt", i)), body, 0o644); err != nil {
			return nil, err
		}
	}
	return l, os.WriteFile(filepath.Join(l.policyDir, "bench.cedar"), []byte(benchPolicies), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var (
	listenRE  = regexp.MustCompile(`^LISTEN (\S+)$`)
	gatewayRE = regexp.MustCompile(`listening on (http://[0-9.:]+)/mcp`)
)

// startFixture runs the fixture as a Streamable HTTP server on loopback
// (the direct baseline) and returns its /mcp URL.
func startFixture(bin string, l *layout) (*proc, string, error) {
	cmd := exec.Command(bin, "-http", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	p, m, err := startProc("mcpfixture", cmd, filepath.Join(l.root, "fixture.log"), listenRE)
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + m[1] + "/mcp", nil
}

// gatewayProc is a running `portcullis serve` set up for the benchmark.
type gatewayProc struct {
	*proc
	bin  string
	base string // http://127.0.0.1:port
	l    *layout
	key  string // the bench role's API key
}

// startGateway runs serve on loopback with the fixture as a stdio plugin
// at level strict, the bench policies, relaxed limits and the default
// durable audit; then it creates the bench role and key through the CLI
// and waits until both benchmarked tools are offered to that key.
func startGateway(ctx context.Context, bin string, l *layout) (*gatewayProc, error) {
	servers, err := json.Marshal([]map[string]any{{
		"name": "fx", "command": []string{"/opt/fixture/mcpfixture"}, "security_level": "strict",
		"mounts": []map[string]any{{"source": l.fixtureDir, "target": "/opt/fixture"}},
		"tools":  map[string]any{"allow": []string{"echo"}},
	}})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", l.dataDir, "--workspace", l.workspace)
	cmd.Env = cleanEnv(append(slices.Clone(relaxedAbuse),
		"PORTCULLIS_SERVERS="+string(servers), "PORTCULLIS_POLICY_DIR="+l.policyDir)...)
	p, m, err := startProc("portcullis serve", cmd, filepath.Join(l.root, "gateway.log"), gatewayRE)
	if err != nil {
		return nil, err
	}
	g := &gatewayProc{proc: p, bin: bin, base: m[1], l: l}
	if err := g.setupKey(ctx); err != nil {
		g.stop()
		return nil, err
	}
	if err := g.waitTools(ctx, "fx__echo", "file_info"); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

func (g *gatewayProc) endpoint(protocol string) endpoint {
	return endpoint{url: g.base + "/mcp", key: g.key, protocol: protocol}
}

// setupKey creates the bench role with grants for the two benchmarked
// tools and an API key for user "bench" in it.
func (g *gatewayProc) setupKey(ctx context.Context) error {
	steps := [][]string{
		{"role", "create", benchRole, "--description", "benchmark harness"},
		{"role", "grant", benchRole, "--action", "call", "--pattern", "fx__echo"},
		{"role", "grant", benchRole, "--action", "call", "--pattern", "file_info"},
	}
	for _, s := range steps {
		if _, err := g.cli(ctx, s...); err != nil {
			return err
		}
	}
	out, err := g.cli(ctx, "key", "create", "--user", "bench", "--role", benchRole, "--json")
	if err != nil {
		return err
	}
	var k struct{ Key string }
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" {
		return fmt.Errorf("key create printed %d bytes without a key (%v)", len(out), err)
	}
	g.key = k.Key
	return nil
}

// cli runs the portcullis CLI against this gateway (admin key from the
// data dir) and returns its stdout.
func (g *gatewayProc) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Env = cleanEnv("PORTCULLIS_SERVER="+g.base, "PORTCULLIS_DATA_DIR="+g.l.dataDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("portcullis %s: %w: %s", strings.Join(args[:2], " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// waitTools polls tools/list with the bench key until every name is
// offered (the plugin starts in the background; grants are picked up at
// the next policy reload).
func (g *gatewayProc) waitTools(ctx context.Context, want ...string) error {
	deadline := time.Now().Add(60 * time.Second)
	var names []string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		names = names[:0]
		tr := newTransport(2)
		if cs, err := connect(ctx, g.endpoint(protoSessions), tr); err == nil {
			if res, err := cs.ListTools(ctx, nil); err == nil {
				for _, t := range res.Tools {
					names = append(names, t.Name)
				}
			}
			_ = cs.Close()
		}
		tr.CloseIdleConnections()
		if !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(names, w) }) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("tools %v not offered within 60s (offered: %v); gateway log:\n%s", want, names, tail(g.log))
}

package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn/oidctest"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const noEnv = `@id("no-env") forbid (principal, action == Action::"call", resource == Tool::"write_file")
when { context.args has path && context.args.path like "*.env" };
`

// openApp opens an app on a temp data dir with Cedar policies in a
// policy dir. Python is pointed at a missing interpreter so no sandbox
// starts (development mode then only warns).
func openApp(t *testing.T, edit func(c *config.Config)) (*app.App, string, *syncBuf) {
	t.Helper()
	root := t.TempDir()
	pdir := filepath.Join(root, "policies")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, "no-env.cedar"), []byte(noEnv), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir, cfg.Workspace = filepath.Join(root, "data"), filepath.Join(root, "ws")
	cfg.Python.Interpreter = filepath.Join(root, "no-python")
	cfg.Policy.Dir, cfg.Policy.ReloadInterval = pdir, 100*time.Millisecond
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	a, err := app.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Gateway.Shutdown(ctx)
		a.Close(ctx)
	})
	return a, pdir, logs
}

var dev = &principal.Principal{Name: "dev", Roles: []string{"developer"}, Method: principal.MethodAPIKey}

func explain(t *testing.T, a *app.App, tool, args string) policy.Decision {
	t.Helper()
	d, err := a.PolicyAdmin().Explain(context.Background(), dev, tool, json.RawMessage(args))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func auditTypes(t *testing.T, a *app.App, typ audit.Type) []audit.Event {
	t.Helper()
	evs, err := a.Store.QueryAudit(context.Background(), audit.Query{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestPolicyReloadKeepsOldOnError: a broken file is rejected with the
// old policies in force, audited and alerted; a good one replaces them.
func TestPolicyReloadKeepsOldOnError(t *testing.T) {
	a, pdir, logs := openApp(t, nil)
	if d := explain(t, a, "write_file", `{"path":"x.env","content":""}`); d.Allow {
		t.Fatalf("policy from policy.dir not in force: %+v", d)
	}
	os.WriteFile(filepath.Join(pdir, "broken.cedar"), []byte(`forbid (principal, action, resource) when {`), 0o600)
	if _, err := a.PolicyAdmin().Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "broken.cedar") {
		t.Fatalf("Reload of a broken file: %v; want an error naming it", err)
	}
	if d := explain(t, a, "write_file", `{"path":"x.env","content":""}`); d.Allow {
		t.Error("a rejected reload dropped the policies in force")
	}
	if evs := auditTypes(t, a, audit.PolicyReloadFailed); len(evs) != 1 || !strings.Contains(evs[0].Detail, "broken.cedar") {
		t.Errorf("policy.reload_failed events = %+v", evs)
	}
	if !strings.Contains(logs.String(), "ALERT policy.reload_failed") {
		t.Errorf("no alert in the log:\n%s", logs)
	}
	os.Remove(filepath.Join(pdir, "broken.cedar"))
	os.WriteFile(filepath.Join(pdir, "no-env.cedar"), []byte(`permit (principal, action, resource);`), 0o600)
	if n, err := a.PolicyAdmin().Reload(context.Background()); err != nil || n != 1 {
		t.Fatalf("Reload = %d, %v", n, err)
	}
	if d := explain(t, a, "write_file", `{"path":"x.env","content":""}`); !d.Allow {
		t.Errorf("after reload: %+v; want allow", d)
	}
	if len(auditTypes(t, a, audit.PolicyReload)) != 1 {
		t.Error("no policy.reload event")
	}
	if _, err := a.PolicyAdmin().Explain(context.Background(), dev, "write_file", json.RawMessage(`{"path":1}`)); err == nil {
		t.Error("Explain accepted invalid arguments")
	}
}

// TestPolicyWatcher: the background watcher picks up file changes and
// store changes made behind the engine's back (another replica).
func TestPolicyWatcher(t *testing.T) {
	a, pdir, _ := openApp(t, nil)
	a.StartBackground()
	os.WriteFile(filepath.Join(pdir, "no-read.cedar"), []byte(`@id("no-read") forbid (principal, action, resource == Tool::"read_file");`), 0o600)
	waitFor(t, "file change picked up", func() bool { return !explain(t, a, "read_file", `{"path":"a"}`).Allow })
	// A broken file is reported once and the old set stays.
	os.WriteFile(filepath.Join(pdir, "zz.cedar"), []byte(`permit (`), 0o600)
	waitFor(t, "broken file reported", func() bool { return len(auditTypes(t, a, audit.PolicyReloadFailed)) > 0 })
	time.Sleep(500 * time.Millisecond) // several ticks
	if n := len(auditTypes(t, a, audit.PolicyReloadFailed)); n != 1 {
		t.Errorf("a broken file was reported %d times; want once", n)
	}
	if explain(t, a, "read_file", `{"path":"a"}`).Allow {
		t.Error("broken file dropped the policies in force")
	}
	// A grant revoked directly in the store (as another replica would).
	if err := a.Store.GrantPermission(context.Background(), store.Grant{Role: "developer", Action: "call", Pattern: "list_directory", Effect: "deny"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "store change picked up", func() bool { return !explain(t, a, "list_directory", `{"path":"."}`).Allow })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccessChanged: an admin change is in force for the next decision.
func TestAccessChanged(t *testing.T) {
	a, _, _ := openApp(t, nil)
	if !explain(t, a, "file_info", `{"path":"."}`).Allow {
		t.Fatal("developer cannot call file_info")
	}
	if err := a.Store.GrantPermission(context.Background(), store.Grant{Role: "developer", Action: "call", Pattern: "file_info", Effect: "deny"}); err != nil {
		t.Fatal(err)
	}
	if err := a.AccessChanged(context.Background()); err != nil {
		t.Fatal(err)
	}
	if explain(t, a, "file_info", `{"path":"."}`).Allow {
		t.Error("a cached allow survived AccessChanged")
	}
}

func TestOpenRejectsBrokenPolicyDir(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "bad.cedar"), []byte("nope"), 0o600)
	cfg := config.Default()
	cfg.DataDir, cfg.Workspace = filepath.Join(root, "data"), filepath.Join(root, "ws")
	cfg.Python.Interpreter = filepath.Join(root, "no-python")
	cfg.Policy.Dir = root
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		a.Close(context.Background())
		t.Fatal("Open accepted a broken policy file")
	}
	if !strings.Contains(err.Error(), "bad.cedar") {
		t.Errorf("error %q does not name the file", err)
	}
}

// TestOIDCResourceMetadata: with OIDC on, the metadata document names the
// resource and issuer, and its URL follows RFC 9728 §3.1.
func TestOIDCResourceMetadata(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	a, _, _ := openApp(t, func(c *config.Config) {
		c.OIDC.Issuer, c.OIDC.Audience = iss.URL(), "https://gw.example/tenant/mcp"
	})
	doc, u, paths := a.ResourceMetadata()
	var md struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if err := json.Unmarshal(doc, &md); err != nil || md.Resource != "https://gw.example/tenant/mcp" || len(md.AuthorizationServers) != 1 || md.AuthorizationServers[0] != iss.URL() {
		t.Errorf("metadata = %s (%v)", doc, err)
	}
	if u != "https://gw.example/.well-known/oauth-protected-resource/tenant/mcp" {
		t.Errorf("metadata URL = %q", u)
	}
	if len(paths) != 2 || paths[1] != "/.well-known/oauth-protected-resource/tenant/mcp" {
		t.Errorf("paths = %v", paths)
	}
	if a.Bearer.OIDC == nil {
		t.Error("OIDC verifier not wired")
	}
	plain, _, _ := openApp(t, nil)
	if doc, _, _ := plain.ResourceMetadata(); doc != nil {
		t.Error("metadata without OIDC")
	}
}

func TestOpenOIDCIssuerDown(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	url := iss.URL()
	iss.Close()
	root := t.TempDir()
	cfg := config.Default()
	cfg.DataDir, cfg.Workspace = filepath.Join(root, "data"), filepath.Join(root, "ws")
	cfg.Python.Interpreter = filepath.Join(root, "no-python")
	cfg.OIDC.Issuer, cfg.OIDC.Audience = url, "https://gw.example/mcp"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		a.Close(context.Background())
		t.Fatal("Open succeeded with the issuer down")
	}
	if !strings.Contains(err.Error(), "oidc") {
		t.Errorf("error %q does not say oidc", err)
	}
}

// TestKeyCacheFollowsAccessChanges: verified API keys are cached, but a
// key revoked through this process (AccessChanged) is refused by the next
// request, and one revoked by another process sharing the store (here:
// straight in the store) within the watcher's reload interval.
func TestKeyCacheFollowsAccessChanges(t *testing.T) {
	a, _, _ := openApp(t, nil)
	ctx := context.Background()
	u, _, err := a.Store.EnsureUser(ctx, "kc", []string{"developer"})
	if err != nil {
		t.Fatal(err)
	}
	newKey := func() (string, string) {
		plain, id, prefix, hash := a.Authn.NewKey()
		if err := a.Store.CreateAPIKey(ctx, store.APIKey{ID: id, UserID: u.ID, UserName: u.Name, Hash: hash, Prefix: prefix,
			Roles: []string{"developer"}, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authn.Authenticate(ctx, plain); err != nil { // now cached
			t.Fatal(err)
		}
		return plain, id
	}

	plain, id := newKey()
	if _, err := a.Store.RevokeAPIKey(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Revoked behind the cache's back (no watcher running yet): the cached
	// entry is still used, which shows the cache is what is under test.
	if _, err := a.Authn.Authenticate(ctx, plain); err != nil {
		t.Fatalf("the key cache is not in use: %v", err)
	}
	if err := a.AccessChanged(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authn.Authenticate(ctx, plain); err == nil {
		t.Fatal("a key revoked and announced with AccessChanged was accepted")
	}

	a.StartBackground() // the watcher polls the access version every 100ms
	plain, id = newKey()
	if _, err := a.Store.RevokeAPIKey(ctx, id, time.Now()); err != nil { // "another replica"
		t.Fatal(err)
	}
	waitFor(t, "revocation by another process seen", func() bool {
		_, err := a.Authn.Authenticate(ctx, plain)
		return err != nil
	})
	plain, _ = newKey()
	if _, err := a.Store.SetUserDisabled(ctx, "kc", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "user disabled by another process seen", func() bool {
		_, err := a.Authn.Authenticate(ctx, plain)
		return err != nil
	})
}

// grantsFail is the app's store with Grants failing.
type grantsFail struct{ app.Storage }

func (grantsFail) Grants(context.Context) ([]store.Grant, error) {
	return nil, errors.New("grants unreadable")
}

// TestRevocationSurvivesFailedReload: a key revoked through the admin API
// is refused by the next request even when reloading the grants fails
// (the cached keys are dropped first).
func TestRevocationSurvivesFailedReload(t *testing.T) {
	a, _, _ := openApp(t, nil)
	ctx := context.Background()
	u, _, err := a.Store.EnsureUser(ctx, "rv", []string{"developer"})
	if err != nil {
		t.Fatal(err)
	}
	plain, id, prefix, hash := a.Authn.NewKey()
	if err := a.Store.CreateAPIKey(ctx, store.APIKey{ID: id, UserID: u.ID, UserName: u.Name, Hash: hash, Prefix: prefix,
		Roles: []string{"developer"}, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authn.Authenticate(ctx, plain); err != nil { // cached
		t.Fatal(err)
	}
	if _, err := a.Store.RevokeAPIKey(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	real := a.Store
	a.Store = grantsFail{real}
	if err := a.AccessChanged(ctx); err == nil {
		t.Fatal("AccessChanged with unreadable grants succeeded")
	}
	a.Store = real
	if _, err := a.Authn.Authenticate(ctx, plain); err == nil {
		t.Fatal("a revoked key was accepted after a failed reload")
	}
}

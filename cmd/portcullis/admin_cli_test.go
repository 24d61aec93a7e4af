package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeAdmin is an admin API that records requests and answers each
// "METHOD path" with a canned status and body.
type fakeAdmin struct {
	mu      sync.Mutex
	seen    []string
	answers map[string]struct {
		status int
		body   string
	}
}

func (f *fakeAdmin) answer(route string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[route] = struct {
		status int
		body   string
	}{status, body}
}

func (f *fakeAdmin) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// startFakeAdmin serves a fakeAdmin and points the CLI at it.
func startFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	f := &fakeAdmin{answers: map[string]struct {
		status int
		body   string
	}{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		route := r.Method + " " + r.URL.EscapedPath()
		f.mu.Lock()
		f.seen = append(f.seen, strings.TrimSpace(route+" "+string(body)))
		a, ok := f.answers[route]
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer pcl_testadminkey" {
			a.status, a.body, ok = 401, `{"error":"unauthenticated","message":"authentication required"}`, true
		}
		if !ok {
			a.status, a.body = 404, `{"error":"not_found","message":"no such admin endpoint"}`
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(ts.Close)
	t.Setenv("PORTCULLIS_CONFIG", "")
	t.Setenv("PORTCULLIS_SERVER", "")
	t.Setenv("PORTCULLIS_ADMIN_KEY", "pcl_testadminkey")
	return f, ts.URL
}

func TestAdminCommandsSendRequests(t *testing.T) {
	f, url := startFakeAdmin(t)
	user := `{"name":"alice","roles":["developer","guest"],"disabled":false,"created_at":"2026-05-04T10:00:00Z"}`
	role := `{"name":"reviewer","description":"reads","permissions":[{"action":"call","pattern":"git_*","effect":"allow"}]}`
	key := `{"id":"key_new","user":"ci","roles":["developer"],"prefix":"pcl_ab","created_at":"2026-05-04T10:00:00Z","scopes":["git_*","read_file"],"rotated_from":"key_old","key":"pcl_abSECRET"}`
	f.answer("POST /admin/v1/users", 201, user)
	f.answer("GET /admin/v1/users", 200, `{"users":[`+user+`]}`)
	f.answer("GET /admin/v1/users/alice", 200, user)
	f.answer("POST /admin/v1/users/alice/disable", 200, user)
	f.answer("POST /admin/v1/users/alice/enable", 200, user)
	f.answer("POST /admin/v1/users/alice/roles", 200, user)
	f.answer("DELETE /admin/v1/users/alice/roles/admin", 200, user)
	f.answer("POST /admin/v1/roles", 201, role)
	f.answer("GET /admin/v1/roles", 200, `{"roles":[`+role+`]}`)
	f.answer("GET /admin/v1/roles/reviewer", 200, role)
	f.answer("POST /admin/v1/roles/reviewer/permissions", 200, role)
	f.answer("DELETE /admin/v1/roles/reviewer/permissions", 200, role)
	f.answer("POST /admin/v1/keys", 201, key)
	f.answer("POST /admin/v1/keys/key_old/rotate", 201, key)
	f.answer("GET /admin/v1/policies", 200, `{"mode":"enforce","policies":[{"id":"egress-deny-hosts","file":"egress-deny.cedar","effect":"forbid","conditional":true}]}`)
	f.answer("POST /admin/v1/policies/reload", 200, `{"policies":4}`)

	steps := []struct {
		args    []string
		request string
		out     []string
	}{
		{[]string{"user", "add", "alice", "--role", "developer", "--role", "guest"}, `POST /admin/v1/users {"name":"alice","roles":["developer","guest"]}`, []string{"created user alice"}},
		{[]string{"user", "list"}, "GET /admin/v1/users", []string{"NAME", "alice", "developer,guest", "enabled"}},
		{[]string{"user", "show", "alice"}, "GET /admin/v1/users/alice", []string{"alice"}},
		{[]string{"user", "disable", "alice"}, "POST /admin/v1/users/alice/disable", []string{"disabled user alice"}},
		{[]string{"user", "enable", "alice"}, "POST /admin/v1/users/alice/enable", []string{"enabled user alice"}},
		{[]string{"user", "grant", "alice", "admin"}, `POST /admin/v1/users/alice/roles {"role":"admin"}`, []string{"alice"}},
		{[]string{"user", "revoke", "alice", "admin"}, "DELETE /admin/v1/users/alice/roles/admin", []string{"alice"}},
		{[]string{"role", "create", "reviewer", "--description", "reads"}, `POST /admin/v1/roles {"name":"reviewer","description":"reads"}`, []string{"created role reviewer"}},
		{[]string{"role", "list"}, "GET /admin/v1/roles", []string{"ROLE", "reviewer", "allow", "git_*"}},
		{[]string{"role", "show", "reviewer"}, "GET /admin/v1/roles/reviewer", []string{"git_*"}},
		{[]string{"role", "grant", "reviewer", "--action", "call", "--pattern", "git_*"}, `POST /admin/v1/roles/reviewer/permissions {"action":"call","pattern":"git_*","effect":"allow"}`, []string{"allow call git_*"}},
		{[]string{"role", "grant", "reviewer", "--action", "call", "--pattern", "http_fetch", "--deny"}, `POST /admin/v1/roles/reviewer/permissions {"action":"call","pattern":"http_fetch","effect":"deny"}`, []string{"deny call http_fetch"}},
		{[]string{"role", "revoke", "reviewer", "--action", "call", "--pattern", "git_*"}, `DELETE /admin/v1/roles/reviewer/permissions {"action":"call","pattern":"git_*"}`, []string{"removed call git_*"}},
		{[]string{"key", "create", "--user", "ci", "--role", "developer", "--scope", "git_*", "--scope", "read_file", "--expires", "720h"},
			`POST /admin/v1/keys {"user":"ci","role":"developer","expires_in":"720h","scopes":["git_*","read_file"]}`, []string{"pcl_abSECRET", "scopes: git_* read_file"}},
		{[]string{"key", "rotate", "key_old"}, "POST /admin/v1/keys/key_old/rotate {}", []string{"pcl_abSECRET", "replaces: key_old"}},
		{[]string{"key", "rotate", "key_old", "--expires", "24h"}, `POST /admin/v1/keys/key_old/rotate {"expires_in":"24h"}`, []string{"key_new"}},
		{[]string{"policy", "list"}, "GET /admin/v1/policies", []string{"mode: enforce", "egress-deny-hosts", "forbid"}},
		{[]string{"policy", "reload"}, "POST /admin/v1/policies/reload", []string{"4 policies"}},
	}
	for _, s := range steps {
		n := len(f.requests())
		out, _, err := runCLI(t, append(s.args, "--server", url)...)
		if err != nil {
			t.Errorf("%v: %v", s.args, err)
			continue
		}
		reqs := f.requests()[n:]
		if len(reqs) != 1 || reqs[0] != s.request {
			t.Errorf("%v sent %q, want %q", s.args, reqs, s.request)
		}
		for _, w := range s.out {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output %q lacks %q", s.args, out, w)
			}
		}
	}

	// --json list output is a JSON array.
	out, _, err := runCLI(t, "user", "list", "--json", "--server", url)
	var users []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &users) != nil || len(users) != 1 || users[0]["name"] != "alice" {
		t.Errorf("user list --json: %q %v", out, err)
	}
	out, _, err = runCLI(t, "role", "list", "--json", "--server", url)
	var roles []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &roles) != nil || len(roles) != 1 {
		t.Errorf("role list --json: %q %v", out, err)
	}
}

// TestPolicyTestCommand: the decision is printed and the exit status is
// success either way; only errors fail.
func TestPolicyTestCommand(t *testing.T) {
	f, url := startFakeAdmin(t)
	f.answer("POST /admin/v1/policies/test", 200, `{"allow":false,"rule":"policy egress-deny-hosts","policies":["egress-deny-hosts"]}`)
	out, _, err := runCLI(t, "policy", "test", "--user", "dev", "--tool", "http_fetch", "--args", `{"url":"http://169.254.169.254/"}`, "--server", url)
	if err != nil {
		t.Fatalf("a deny answer is not an error: %v", err)
	}
	if want := "DENY\nrule: policy egress-deny-hosts\npolicies: egress-deny-hosts\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	if reqs := f.requests(); len(reqs) != 1 || reqs[0] != `POST /admin/v1/policies/test {"user":"dev","tool":"http_fetch","args":{"url":"http://169.254.169.254/"}}` {
		t.Errorf("requests %q", reqs)
	}
	f.answer("POST /admin/v1/policies/test", 200, `{"allow":true,"rule":"role:developer allow call read_file","policies":[]}`)
	out, _, err = runCLI(t, "policy", "test", "--user", "dev", "--tool", "read_file", "--server", url)
	if err != nil || out != "ALLOW\nrule: role:developer allow call read_file\n" {
		t.Errorf("allow: %q %v", out, err)
	}

	// Errors: unknown user from the server, bad --args before any request.
	f.answer("POST /admin/v1/policies/test", 404, `{"error":"not_found","message":"not found"}`)
	if _, _, err := runCLI(t, "policy", "test", "--user", "nobody", "--tool", "read_file", "--server", url); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown user: %v", err)
	}
	n := len(f.requests())
	for _, args := range []string{`[1]`, `"x"`, `{bad`, `null`, `{"a":1} {"b":2}`} {
		if _, _, err := runCLI(t, "policy", "test", "--user", "dev", "--tool", "read_file", "--args", args, "--server", url); err == nil {
			t.Errorf("--args %s accepted", args)
		}
	}
	if _, _, err := runCLI(t, "policy", "test", "--tool", "read_file", "--server", url); err == nil {
		t.Error("missing --user accepted")
	}
	if len(f.requests()) != n {
		t.Error("refused arguments were sent")
	}
}

// TestAdminCommandErrors: server refusals are errors (non-zero exit) with
// the server's message, and missing arguments never reach the server.
func TestAdminCommandErrors(t *testing.T) {
	f, url := startFakeAdmin(t)
	f.answer("DELETE /admin/v1/users/root/roles/admin", 409, `{"error":"conflict","message":"revoking role \"admin\" from user \"root\" would leave no enabled user able to administer users, roles and keys"}`)
	f.answer("POST /admin/v1/policies/reload", 422, `{"error":"invalid_policy","message":"invalid policy: bad.cedar: parse error at bad.cedar:3:7"}`)
	if _, _, err := runCLI(t, "user", "revoke", "root", "admin", "--server", url); err == nil || !strings.Contains(err.Error(), "no enabled user") {
		t.Errorf("409: %v", err)
	}
	if _, _, err := runCLI(t, "policy", "reload", "--server", url); err == nil || !strings.Contains(err.Error(), "bad.cedar:3:7") {
		t.Errorf("422: %v", err)
	}
	n := len(f.requests())
	for _, args := range [][]string{
		{"user", "add", "alice"},                                  // no --role
		{"user", "add"},                                           // no name
		{"user", "grant", "alice"},                                // no role
		{"role", "grant", "reviewer", "--action", "call"},         // no pattern
		{"role", "revoke", "reviewer", "--pattern", "git_*"},      // no action
		{"key", "rotate"},                                         // no id
		{"user", "show", "../keys"},                               // not one path segment
		{"role", "show", "a/b"},                                   // not one path segment
		{"user", "disable", ".."},                                 // dot segment
		{"key", "create", "--user", "ci", "--scope", "read_file"}, // no role
	} {
		if _, _, err := runCLI(t, append(args, "--server", url)...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if got := f.requests()[n:]; len(got) != 0 {
		t.Errorf("refused commands sent %q", got)
	}
}

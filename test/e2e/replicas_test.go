package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/store/postgres/pgtest"
)

// Tests of several gateway replicas on one PostgreSQL database (issue 12):
// two `portcullis serve` processes, A and B, each with its own data dir
// (its own lock) holding the same key files, share users, keys,
// approvals, quarantines and one audit chain. A change made through one
// replica takes effect on the other within replicaBound (each polls the
// store's access version every replicaReload); the tests log the delay
// they measured.

const (
	// replicaReload is policy.reload_interval of both replicas.
	replicaReload = "200ms"
	// replicaBound is how long a change may take to reach the other replica.
	replicaBound = 10 * time.Second
)

// replicaKeyFiles are the data dir's key files that replicas sharing a
// database must share: the API key digest secret, the redaction key (it
// also keys approval digests), the audit chain and checkpoint signing
// keys, the secrets key and the admin key written at bootstrap.
var replicaKeyFiles = append(slices.Clone(datadir.KeyFiles), datadir.AdminKeyFile)

// replicas are two gateways on one PostgreSQL database.
type replicas struct {
	a, b *gateway
	dsn  string // holds the database password: never log it
}

// storageEnv is the environment that points a process at the database.
func (r *replicas) storageEnv() []string {
	return []string{"PORTCULLIS_STORAGE_DRIVER=postgres", "PORTCULLIS_STORAGE_DSN=" + r.dsn}
}

// startReplicas starts replica A on a fresh database, copies A's key files
// into a new data dir and starts replica B there, on A's workspace (the
// replicas serve the same files). env is added to both.
func startReplicas(t *testing.T, env ...string) *replicas {
	t.Helper()
	r := &replicas{dsn: pgtest.NewDatabase(t)}
	common := append(append(r.storageEnv(), "PORTCULLIS_POLICY_RELOAD_INTERVAL="+replicaReload), env...)
	r.a = startGateway(t, append(slices.Clone(common), "PORTCULLIS_STORAGE_REPLICA_ID=a")...)

	dir := filepath.Join(t.TempDir(), "data")
	if err := datadir.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range replicaKeyFiles {
		b, err := datadir.ReadPrivate(filepath.Join(r.a.dataDir, name))
		if errors.Is(err, os.ErrNotExist) && name == datadir.SecretsKey {
			continue // created on first use of the secrets store
		}
		if err != nil {
			t.Fatalf("key file of replica A: %v", err)
		}
		if err := datadir.WritePrivate(filepath.Join(dir, name), b); err != nil {
			t.Fatal(err)
		}
	}
	r.b = startGatewayAt(t, dir, r.a.workspace, append(slices.Clone(common), "PORTCULLIS_STORAGE_REPLICA_ID=b")...)
	return r
}

// replicaServed requires that key is served (200) by every one of gs.
func replicaServed(t *testing.T, key string, gs ...*gateway) {
	t.Helper()
	for _, g := range gs {
		if p := replicaProbe(t, g, key); p.status != http.StatusOK {
			t.Fatalf("key on %s: %d %s", g.base, p.status, p.body)
		}
	}
}

// replicaProbe is a stateless (2026-07-28) tools/list as key on g: the
// cheapest request that authenticates and passes the quarantine check.
func replicaProbe(t *testing.T, g *gateway, key string) bpResp {
	t.Helper()
	return bpStatelessReq(t, bpHTTP, g, key, "tools/list", nil)
}

// replicaAwait polls g with key until the probe answers want, fails the
// test after replicaBound, logs how long it took and returns the answer.
func replicaAwait(t *testing.T, g *gateway, key string, want int, what string) bpResp {
	t.Helper()
	start := time.Now()
	var r bpResp
	abuseEventually(t, replicaBound, what, func() (bool, string) {
		r = replicaProbe(t, g, key)
		return r.status == want, fmt.Sprintf("status %d: %.200s", r.status, r.body)
	})
	t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
	return r
}

// replicaCause asserts that request rid on g was refused with one
// auth.failure of user naming cause.
func replicaCause(t *testing.T, g *gateway, rid, user, cause string) {
	t.Helper()
	evs := bpAuditRID(t, g, rid)
	if len(evs) != 1 || evs[0].Type != "auth.failure" || evs[0].Principal != user || !strings.Contains(evs[0].Detail, cause) {
		t.Errorf("audit of request %s: %+v; want one auth.failure of %s with cause %s", rid, evs, user, cause)
	}
}

// TestReplicaSharedIdentity: B starts on A's database without a second
// bootstrap; a key made through A's CLI works on B, a user added through
// B's CLI is seen by A; a key revoked through A and a user disabled
// through B are refused by the other replica within replicaBound, and a
// re-enabled user is served again there.
func TestReplicaSharedIdentity(t *testing.T) {
	t.Parallel()
	r := startReplicas(t)
	a, b := r.a, r.b
	if n := strings.Count(a.stdout.String()+b.stdout.String(), "Admin API key (shown once"); n != 1 {
		t.Errorf("the admin key was printed %d times by the two replicas, want once (by A)", n)
	}

	key := a.createKey("ivy", "developer")
	names := toolNames(t, b.connect(key, ""))
	for _, want := range []string{"read_file", "write_file"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list on B of a key made on A = %v, want %s in it", names, want)
		}
	}
	if _, err := b.cli("user", "add", "jade", "--role", "guest"); err != nil {
		t.Fatal(err)
	}
	if out, err := a.cli("user", "show", "jade"); err != nil || !strings.Contains(out, "guest") {
		t.Errorf("user show jade on A after adding it on B: %q %v", out, err)
	}

	t.Run("key revoked on A is refused on B", func(t *testing.T) {
		k := bpCreateKey(t, a, "rex", "developer")
		replicaServed(t, k.Key, a, b) // B caches the verified key
		if _, err := a.cli("key", "revoke", k.ID); err != nil {
			t.Fatal(err)
		}
		if p := replicaProbe(t, a, k.Key); p.status != http.StatusUnauthorized {
			t.Errorf("A right after its own revocation: %d, want 401", p.status)
		}
		p := replicaAwait(t, b, k.Key, http.StatusUnauthorized, "revocation on A refused by B after")
		replicaCause(t, b, p.rid(), "rex", "revoked_key")
	})

	t.Run("user disabled on B is refused on A", func(t *testing.T) {
		k := bpCreateKey(t, a, "dot", "developer")
		replicaServed(t, k.Key, a, b)
		if _, err := b.cli("user", "disable", "dot"); err != nil {
			t.Fatal(err)
		}
		p := replicaAwait(t, a, k.Key, http.StatusUnauthorized, "user disabled on B refused by A after")
		replicaCause(t, a, p.rid(), "dot", "disabled_user")
		if _, err := b.cli("user", "enable", "dot"); err != nil {
			t.Fatal(err)
		}
		replicaAwait(t, a, k.Key, http.StatusOK, "user re-enabled on B served by A after")
	})
}

// replicaApprovals starts replicas (with env) that serve one workspace,
// a git repository with one commit of a.txt, lets developers call
// git_commit and returns them with a developer key of alice. It skips the
// test when the host offers no git_commit (no sandbox or no git).
func replicaApprovals(t *testing.T, env ...string) (*replicas, string) {
	t.Helper()
	r := startReplicas(t, env...)
	a, b := r.a, r.b
	if !slices.Contains(toolNames(t, a.connect(a.adminKey, "")), "git_commit") {
		t.Skip("SKIP: git_commit is not offered on this host (sandbox or git unavailable)")
	}
	aprRepo(t, a)
	dev := a.createKey("alice", "developer")
	abuseEventually(t, replicaBound, "the git_commit grant made on A in force on B", func() (bool, string) {
		p := replicaProbe(t, b, dev)
		if p.status != http.StatusOK || len(p.msgs) != 1 || p.msgs[0].Result == nil {
			return false, fmt.Sprintf("status %d: %.200s", p.status, p.body)
		}
		names := p.msgs[0].Result.names()
		return slices.Contains(names, "git_commit"), fmt.Sprint(names)
	})
	return r, dev
}

// TestReplicaApproval: a developer's git_commit held on A is listed on B
// and approved there; the identical retry on B runs once; the next
// identical call on A needs a new approval; and when an approval is
// raced by identical calls on both replicas at once, exactly one runs.
func TestReplicaApproval(t *testing.T) {
	t.Parallel()
	r, dev := replicaApprovals(t, aprWait)
	a, b := r.a, r.b
	csA, csB := a.connect(dev, ""), b.connect(dev, "")
	head0, _ := aprHead(t, a)

	aprWrite(t, a.workspace, "v1\n")
	id1 := aprHeld(t, call(t, csA, "git_commit", aprCommit("m1")))
	if head, _ := aprHead(t, a); head != head0 {
		t.Fatalf("a held call committed: HEAD %s → %s", head0, head)
	}
	listed := false
	for _, req := range aprList(t, b, "pending") {
		if req.ID == id1 {
			listed = true
			if req.Principal != "alice" || req.Tool != "git_commit" {
				t.Errorf("request %s listed on B as %+v", id1, req)
			}
		}
	}
	if !listed {
		t.Fatalf("approvals list on B does not show %s requested on A", id1)
	}
	if out := aprCLI(t, b, "approvals", "approve", id1, "--comment", "approved on B"); !strings.HasPrefix(out, id1+": approved") {
		t.Errorf("approvals approve on B printed %q", out)
	}

	commit := aprRan(t, call(t, csB, "git_commit", aprCommit("m1")))
	if head, count := aprHead(t, a); head != commit || count != "2" {
		t.Errorf("HEAD %s with %s commits, want the reported %s as the second", head, count, commit)
	}
	if got := aprShow(t, a, id1); got.State != "consumed" || got.DecidedBy != "admin" {
		t.Errorf("on A after the run on B, %s = %+v; want consumed, decided by admin", id1, got)
	}

	// Consumed once across replicas: the identical call on A is held again.
	aprWrite(t, a.workspace, "v2\n")
	id2 := aprHeld(t, call(t, csA, "git_commit", aprCommit("m1")))
	if id2 == id1 {
		t.Fatalf("the call on A reused %s, consumed on B", id1)
	}
	if head, _ := aprHead(t, a); head != commit {
		t.Fatalf("the call on A committed without a new approval: HEAD %s, want %s", head, commit)
	}

	// One approval, identical calls on both replicas at once: one runs,
	// the other is held under a new request.
	aprCLI(t, a, "approvals", "approve", id2, "--comment", "race")
	var wg sync.WaitGroup
	results := make([]*mcp.CallToolResult, 2)
	for i, cs := range []*mcp.ClientSession{csA, csB} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "git_commit", Arguments: aprCommit("m1")})
			if err != nil {
				t.Errorf("git_commit on replica %d: %v", i, err)
				return
			}
			results[i] = res
		})
	}
	wg.Wait()
	ran, held := 0, 0
	for i, res := range results {
		switch {
		case res == nil:
		case !res.IsError:
			ran++
		case code(res) == "APPROVAL_REQUIRED":
			held++
		default:
			t.Errorf("replica %d: code %q text %q", i, code(res), text(res))
		}
	}
	if _, count := aprHead(t, a); ran != 1 || held != 1 || count != "3" {
		t.Errorf("one approval raced on A and B: %d ran, %d held, %s commits; want 1, 1 and 3", ran, held, count)
	}
	var types []string
	for _, e := range aprEventsOf(t, b, id2) {
		types = append(types, e.Type)
	}
	if diff := cmp.Diff([]string{"approval.request", "approval.grant", "approval.consume"}, types); diff != "" {
		t.Errorf("approval events of %s (-want +got):\n%s", id2, diff)
	}
}

// TestReplicaApprovalWait: a call held on A (approval.wait 20s) runs
// when an admin approves it through B, without the client retrying: A
// sees the other replica's decision by polling the store.
func TestReplicaApprovalWait(t *testing.T) {
	t.Parallel()
	r, dev := replicaApprovals(t, "PORTCULLIS_APPROVAL_WAIT=20s")
	a, b := r.a, r.b
	cs := a.connect(dev, "")
	aprWrite(t, a.workspace, "v1\n")
	type outcome struct {
		res *mcp.CallToolResult
		at  time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "git_commit", Arguments: aprCommit("waited")})
		if err != nil {
			t.Errorf("git_commit: %v", err)
		}
		done <- outcome{res, time.Now()}
	}()
	var id string
	abuseEventually(t, replicaBound, "the held call of A pending on B", func() (bool, string) {
		as := aprList(t, b, "pending")
		if len(as) == 1 && as[0].Principal == "alice" {
			id = as[0].ID
			return true, ""
		}
		return false, fmt.Sprintf("%+v", as)
	})
	aprCLI(t, b, "approvals", "approve", id, "--comment", "approved on B")
	approved := time.Now()
	out := <-done
	if out.res == nil {
		t.FailNow()
	}
	commit := aprRan(t, out.res)
	t.Logf("approval on B ran the call waiting on A after %v", out.at.Sub(approved).Round(time.Millisecond))
	if head, count := aprHead(t, a); head != commit || count != "2" {
		t.Errorf("HEAD %s with %s commits, want the reported %s as the second", head, count, commit)
	}
	if got := aprShow(t, b, id); got.State != "consumed" {
		t.Errorf("%s = %+v after the run, want consumed", id, got)
	}
}

// TestReplicaQuarantine: a principal quarantined through A is refused by
// B within replicaBound; released through B, A serves it again within
// replicaBound. A bystander is served throughout.
func TestReplicaQuarantine(t *testing.T) {
	t.Parallel()
	r := startReplicas(t)
	a, b := r.a, r.b
	key := a.createKey("mal", "developer")
	bystander := a.createKey("bea", "developer")
	replicaServed(t, key, a, b) // before the quarantine

	if _, err := a.cli("quarantine", "add", "mal", "--kind", "principal", "--reason", "replica test"); err != nil {
		t.Fatal(err)
	}
	if p := replicaProbe(t, a, key); p.status != http.StatusForbidden {
		t.Errorf("A right after its own quarantine: %d, want 403", p.status)
	}
	p := replicaAwait(t, b, key, http.StatusForbidden, "quarantine on A refused by B after")
	if !strings.Contains(p.body, "access denied") || strings.Contains(p.body, "quarantin") {
		t.Errorf("B's refusal body %q, want the generic access denied", p.body)
	}
	if evs := bpAuditRID(t, b, p.rid()); len(evs) != 1 || evs[0].Type != "quarantine.refused" || evs[0].Principal != "mal" {
		t.Errorf("audit of B's refusal %s: %+v; want one quarantine.refused of mal", p.rid(), evs)
	}
	for _, g := range []*gateway{a, b} {
		if p := replicaProbe(t, g, bystander); p.status != http.StatusOK {
			t.Errorf("bystander on %s during the quarantine: %d", g.base, p.status)
		}
	}

	if _, err := b.cli("quarantine", "release", "mal", "--reason", "released on B"); err != nil {
		t.Fatal(err)
	}
	if p := replicaProbe(t, b, key); p.status != http.StatusOK {
		t.Errorf("B right after its own release: %d, want 200", p.status)
	}
	replicaAwait(t, a, key, http.StatusOK, "release on B served by A after")
	var qs struct {
		Quarantines []struct{ Subject string } `json:"quarantines"`
	}
	abuseAdmin(t, a, "GET", "/admin/v1/quarantines", "", &qs)
	if len(qs.Quarantines) != 0 {
		t.Errorf("active quarantines on A after the release on B: %+v", qs.Quarantines)
	}
}

// TestReplicaQuarantineCountsAcrossReplicas: the automatic quarantine
// threshold (here 4 HIGH violations) counts a principal's violations on
// every replica: path escapes alternating between A and B quarantine it
// as one gateway would, not only after 4 on each.
func TestReplicaQuarantineCountsAcrossReplicas(t *testing.T) {
	t.Parallel()
	r := startReplicas(t, "PORTCULLIS_VIOLATIONS_QUARANTINE_PRINCIPAL_COUNT=4")
	a, b := r.a, r.b
	key := a.createKey("esc", "developer")
	sessions := []*mcp.ClientSession{a.connect(key, ""), b.connect(key, "")}
	escapes := 0
	for i := range 4 { // two on each replica: a per-replica count would stop at 2
		res := call(t, sessions[i%2], "read_file", map[string]any{"path": strings.Repeat("../", i+3) + "etc/passwd"})
		if !res.IsError || code(res) != "PATH_OUTSIDE_WORKSPACE" {
			t.Fatalf("escape %d: isError=%v code %q, want PATH_OUTSIDE_WORKSPACE", i, res.IsError, code(res))
		}
		escapes++
	}
	start := time.Now()
	for _, g := range []*gateway{a, b} {
		replicaAwait(t, g, key, http.StatusForbidden, fmt.Sprintf("quarantine after %d escapes across replicas, on %s, after", escapes, g.base))
	}
	t.Logf("quarantined on both replicas %v after the last escape", time.Since(start).Round(time.Millisecond))
	var qs struct {
		Quarantines []struct{ Subject, CreatedBy string } `json:"quarantines"`
	}
	abuseAdmin(t, b, "GET", "/admin/v1/quarantines", "", &qs)
	if len(qs.Quarantines) != 1 || qs.Quarantines[0].Subject != "esc" {
		t.Errorf("active quarantines: %+v, want exactly one of esc", qs.Quarantines)
	}
}

// replicaHop is one HTTP request of replicaAlternator.
type replicaHop struct {
	replica string // "a" or "b"
	method  string // Mcp-Method
	status  int
	rid     string // X-Request-Id of the answer
}

// replicaAlternator sends each request of one MCP client to the next
// replica in turn (no affinity), with a bearer key, and records them.
type replicaAlternator struct {
	key   string
	names []string // replica names, as bases
	bases []*url.URL
	mu    sync.Mutex
	next  int
	hops  []replicaHop
}

func (r *replicaAlternator) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	i := r.next % len(r.bases)
	r.next++
	r.mu.Unlock()
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = r.bases[i].Scheme, r.bases[i].Host, r.bases[i].Host
	req.Header.Set("Authorization", "Bearer "+r.key)
	resp, err := http.DefaultTransport.RoundTrip(req)
	hop := replicaHop{replica: r.names[i], method: req.Header.Get("Mcp-Method")}
	if err == nil {
		hop.status, hop.rid = resp.StatusCode, resp.Header.Get("X-Request-Id")
	}
	r.mu.Lock()
	r.hops = append(r.hops, hop)
	r.mu.Unlock()
	return resp, err
}

// TestReplicaStatelessAndAudit: a 2026-07-28 (stateless) client whose
// requests alternate between A and B succeeds on every call; a
// 2025-11-25 session opened on A is unknown on B (sessions need
// affinity). Every call of both replicas is in the one audit log, as seen
// through either replica, each replica's records on its own hash chain
// (chain id = replica id); `audit verify` verifies both chains together
// and names the sequence number of a row altered or moved to the other
// chain in PostgreSQL.
func TestReplicaStatelessAndAudit(t *testing.T) {
	t.Parallel()
	r := startReplicas(t)
	a, b := r.a, r.b
	key := a.createKey("sam", "developer")
	if err := os.WriteFile(filepath.Join(a.workspace, "shared.txt"), []byte("one workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	alt := &replicaAlternator{key: key, names: []string{"a", "b"}}
	for _, g := range []*gateway{a, b} {
		u, err := url.Parse(g.base)
		if err != nil {
			t.Fatal(err)
		}
		alt.bases = append(alt.bases, u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-replicas", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: a.base + "/mcp", HTTPClient: &http.Client{Transport: alt}, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: bpStateless})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	const calls = 10
	for i := range calls {
		var res *mcp.CallToolResult
		if i%2 == 0 {
			res = call(t, cs, "read_file", map[string]any{"path": "shared.txt"})
			if res.IsError || text(res) != "one workspace\n" {
				t.Errorf("call %d read_file: isError %v code %q text %q", i, res.IsError, code(res), text(res))
			}
		} else {
			res = call(t, cs, "write_file", map[string]any{"path": fmt.Sprintf("w%d.txt", i), "content": "x"})
			if res.IsError {
				t.Errorf("call %d write_file: code %q text %q", i, code(res), text(res))
			}
		}
	}
	alt.mu.Lock()
	hops := slices.Clone(alt.hops)
	alt.mu.Unlock()
	ridOf := map[string]string{} // tools/call request id → replica
	for _, h := range hops {
		if h.status/100 != 2 {
			t.Errorf("request %s on replica %s: status %d", h.method, h.replica, h.status)
		}
		if h.method == "tools/call" {
			ridOf[h.rid] = h.replica
		}
	}
	perReplica := map[string]int{}
	for rid, rep := range ridOf {
		if rid == "" {
			t.Errorf("a tools/call answer of replica %s has no X-Request-Id", rep)
		}
		perReplica[rep]++
	}
	if len(ridOf) != calls || perReplica["a"] != calls/2 || perReplica["b"] != calls/2 {
		t.Errorf("tools/call requests per replica %v (%d distinct ids), want %d on each", perReplica, len(ridOf), calls/2)
	}

	t.Run("session affinity", func(t *testing.T) {
		sid := (&bpFixture{g: a}).open(t, key)
		onB := (&bpFixture{g: b}).call(t, key, sid, "write_file", map[string]any{"path": "affinity.txt", "content": "x"})
		if onB.status != http.StatusNotFound && onB.status != http.StatusBadRequest {
			t.Errorf("B answered a session of A with %d %.200s; want 404 (or 400): sessions are per replica", onB.status, onB.body)
		}
		t.Logf("B answered the session id of A with %d", onB.status)
		if _, err := os.Lstat(filepath.Join(a.workspace, "affinity.txt")); !os.IsNotExist(err) {
			t.Errorf("the call on A's session ran on B (lstat: %v)", err)
		}
		f := &bpFixture{g: a}
		if res := f.result(t, f.call(t, key, sid, "read_file", map[string]any{"path": "shared.txt"})); res.IsError {
			t.Errorf("A's session on A: code %q text %q", res.code(), res.text())
		}
	})

	t.Run("one audit log", func(t *testing.T) {
		var startsA []abuseEvent
		for _, g := range []*gateway{a, b} {
			starts := abuseAudit(t, g, url.Values{"type": {"tool.call.start"}, "user": {"sam"}})
			seen := map[string]bool{}
			for _, e := range starts {
				seen[e.RequestID] = true
			}
			for rid, rep := range ridOf {
				if !seen[rid] {
					t.Errorf("queried through %s: no tool.call.start of request %s served by replica %s", g.base, rid, rep)
				}
			}
			if g == a {
				startsA = starts
			} else if len(starts) != len(startsA) {
				t.Errorf("tool.call.start of sam: %d through A, %d through B", len(startsA), len(starts))
			}
		}
		// Each replica's records are on its chain: the chain filter finds
		// exactly the calls it served.
		for _, id := range []string{"a", "b"} {
			// (The session affinity test's calls ran on A, outside ridOf.)
			n := 0
			for _, e := range abuseAudit(t, a, url.Values{"type": {"tool.call.start"}, "user": {"sam"}, "chain": {id}}) {
				served, ok := ridOf[e.RequestID]
				if ok && served != id {
					t.Errorf("chain %s holds request %s, served by replica %s", id, e.RequestID, served)
				}
				if ok {
					n++
				}
			}
			if n != calls/2 {
				t.Errorf("tool.call.start of sam's alternating calls on chain %s: %d records, want %d", id, n, calls/2)
			}
		}
		var details []string
		for _, e := range abuseAudit(t, b, url.Values{"type": {"server.start"}}) {
			details = append(details, e.Detail)
		}
		for _, rep := range []string{"replica a", "replica b"} {
			if !slices.ContainsFunc(details, func(d string) bool { return strings.Contains(d, rep) }) {
				t.Errorf("server.start details %q: none names %s", details, rep)
			}
		}
	})

	t.Run("verify and tamper", func(t *testing.T) {
		for _, g := range []*gateway{a, b} {
			rc, out := replicaVerify(t, r, g)
			if rc != 0 || !strings.HasPrefix(out, "OK: ") {
				t.Fatalf("audit verify with %s's data dir: exit %d\n%s", g.base, rc, out)
			}
			chains := regexp.MustCompile(`(?m)^  (\S+) +(\d+) records, seq \d+\.\.\d+, from genesis`).FindAllStringSubmatch(out, -1)
			var ids []string
			for _, c := range chains {
				ids = append(ids, c[1])
			}
			slices.Sort(ids)
			if !strings.Contains(out, "2 chains (one per replica)") || !slices.Equal(ids, []string{"a", "b"}) {
				t.Errorf("audit verify with %s's data dir: chains %q, want a and b, both from genesis\n%s", g.base, ids, out)
			}
		}
		// Alter one record of B's in place, as someone with database access could.
		var seq int64
		for _, e := range aprAudit(t, a, url.Values{"type": {"tool.call.start"}, "user": {"sam"}}) {
			if ridOf[e.RequestID] == "b" {
				seq = e.Seq
				break
			}
		}
		if seq == 0 {
			t.Fatal("no tool.call.start of replica B to alter")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, r.dsn)
		if err != nil {
			t.Fatal("connect to the test database failed") // the error may quote the DSN
		}
		defer conn.Close(context.Background())
		tamper := func(sql string) {
			t.Helper()
			tag, err := conn.Exec(ctx, sql, seq)
			if err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("tamper with seq %d: %v (%d rows)", seq, err, tag.RowsAffected())
			}
		}
		// Moving B's record onto A's chain breaks both chains' links and
		// its own seal.
		tamper(`UPDATE audit_events SET chain = 'a' WHERE seq = $1`)
		rc, out := replicaVerify(t, r, a)
		if rc != 1 || !strings.Contains(out, fmt.Sprintf("BROKEN at seq %d:", seq)) {
			t.Errorf("audit verify after moving seq %d to chain a: exit %d, want 1 naming it\n%s", seq, rc, out)
		}
		tamper(`UPDATE audit_events SET chain = 'b' WHERE seq = $1`)
		if rc, out := replicaVerify(t, r, a); rc != 0 {
			t.Fatalf("audit verify after moving seq %d back: exit %d\n%s", seq, rc, out)
		}
		tamper(`UPDATE audit_events SET detail = detail || ' (altered)' WHERE seq = $1`)
		rc, out = replicaVerify(t, r, a)
		if rc != 1 || !strings.Contains(out, fmt.Sprintf("BROKEN at seq %d:", seq)) {
			t.Errorf("audit verify after altering seq %d: exit %d, want 1 naming it\n%s", seq, rc, out)
		}
	})
}

// replicaVerify runs `audit verify` offline against the shared database
// with g's data dir (its keys and checkpoint) and returns the exit status
// and standard output, followed by standard error unless it exited 0.
func replicaVerify(t *testing.T, r *replicas, g *gateway) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, "audit", "verify", "--data-dir", g.dataDir)
	cmd.Env = cleanEnv(r.storageEnv()...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	rc := trailExitCode(cmd.Run())
	if rc != 0 {
		return rc, out.String() + errb.String()
	}
	return rc, out.String()
}

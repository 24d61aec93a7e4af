package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/alert"
)

// Tests of the abuse controls (issue 6) against the real binary: rate and
// concurrency limits, daily quotas, automatic quarantine and alerts.

// abuseHTTP is the client for raw requests (the admin API, probes).
var abuseHTTP = &http.Client{Timeout: 20 * time.Second}

// abuseDo sends a request with a bearer key and returns status and body.
func abuseDo(t *testing.T, key, method, target, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := abuseHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// abuseAdmin calls the admin API as the admin and decodes a 2xx answer into out.
func abuseAdmin(t *testing.T, g *gateway, method, path, body string, out any) {
	t.Helper()
	status, resp := abuseDo(t, g.adminKey, method, g.base+path, body)
	if status/100 != 2 {
		t.Fatalf("%s %s: status %d: %s", method, path, status, resp)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, resp)
		}
	}
}

// abuseEvent is an audit event as the admin API returns it.
type abuseEvent struct {
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	Principal string    `json:"principal"`
	RequestID string    `json:"request_id"`
	Tool      string    `json:"tool"`
	Reason    string    `json:"reason"`
	Status    string    `json:"status"`
	Error     string    `json:"error"`
	Detail    string    `json:"detail"`
}

// abuseAudit returns audit events matching the query (type, user, tool ...).
func abuseAudit(t *testing.T, g *gateway, q url.Values) []abuseEvent {
	t.Helper()
	if q.Get("limit") == "" {
		q.Set("limit", "1000")
	}
	var out struct {
		Events []abuseEvent `json:"events"`
	}
	abuseAdmin(t, g, "GET", "/admin/v1/audit?"+q.Encode(), "", &out)
	return out.Events
}

// abuseEventually polls cond until it holds or timeout passes.
func abuseEventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// abuseDial opens an MCP session with key and returns the error instead
// of failing the test.
func abuseDial(g *gateway, key string) (*mcp.ClientSession, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-abuse", Version: "1"}, nil)
	return client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   g.base + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{key: key, base: http.DefaultTransport}},
		MaxRetries: -1,
	}, nil)
}

// abuseTry calls a tool and returns the transport error instead of failing.
func abuseTry(cs *mcp.ClientSession, name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
}

// abuseInitialize posts an MCP initialize with key, as a new client would.
func abuseInitialize(t *testing.T, g *gateway, key string) (int, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",` +
		`"capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}`
	return abuseDo(t, key, "POST", g.base+"/mcp", body, "Accept", "application/json, text/event-stream")
}

// maxOverlap returns the largest number of closed intervals [s, e] that
// share an instant. Touching intervals count as overlapping, so the
// result never underestimates.
func maxOverlap(iv [][2]float64) int {
	type point struct {
		at    float64
		delta int
	}
	var ps []point
	for _, x := range iv {
		ps = append(ps, point{x[0], +1}, point{x[1], -1})
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].at != ps[j].at {
			return ps[i].at < ps[j].at
		}
		return ps[i].delta > ps[j].delta // starts first at equal times
	})
	cur, best := 0, 0
	for _, p := range ps {
		cur += p.delta
		best = max(best, cur)
	}
	return best
}

// abuseParallel makes n calls of a tool in parallel, the i-th after
// i×stagger, and returns the results (a transport error fails the test).
func abuseParallel(t *testing.T, cs *mcp.ClientSession, n int, stagger time.Duration, name string, args map[string]any) []*mcp.CallToolResult {
	t.Helper()
	results := make([]*mcp.CallToolResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * stagger)
			results[i], errs[i] = abuseTry(cs, name, args)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	return results
}

// abuseCheckRefusals checks that every result is a success or a
// CONCURRENCY_LIMITED refusal with a retry-after hint, and that the audit
// log holds one tool.call.start and one tool.call.end per success and one
// limit.concurrency per refusal. It returns the successes.
func abuseCheckRefusals(t *testing.T, g *gateway, user, toolName string, results []*mcp.CallToolResult) []*mcp.CallToolResult {
	t.Helper()
	var ok []*mcp.CallToolResult
	refused := 0
	for i, res := range results {
		switch {
		case !res.IsError:
			ok = append(ok, res)
		case code(res) == "CONCURRENCY_LIMITED":
			refused++
			if !strings.Contains(text(res), "retry after") {
				t.Errorf("call %d: refusal text %q lacks a retry-after hint", i, text(res))
			}
		default:
			t.Errorf("call %d: %s %q; want success or CONCURRENCY_LIMITED", i, code(res), text(res))
		}
	}
	if len(ok) < 4 || refused == 0 {
		t.Errorf("%d ran and %d were refused: the limit was not exercised", len(ok), refused)
	}
	q := func(typ string) url.Values { return url.Values{"type": {typ}, "user": {user}, "tool": {toolName}} }
	starts, ends := abuseAudit(t, g, q("tool.call.start")), abuseAudit(t, g, q("tool.call.end"))
	limited := abuseAudit(t, g, q("limit.concurrency"))
	if len(starts) != len(ok) || len(ends) != len(ok) || len(limited) != refused {
		t.Errorf("audit: %d starts, %d ends, %d limit.concurrency; want %d, %d, %d",
			len(starts), len(ends), len(limited), len(ok), len(ok), refused)
	}
	for _, e := range limited {
		if e.Reason != "CONCURRENCY_LIMITED" || e.Status != "refused" || !strings.Contains(e.Detail, "scope tool, limit 4") {
			t.Errorf("limit.concurrency event %+v", e)
			break
		}
	}
	// The audit intervals, for the log only (see the test's comment).
	byID := map[string]time.Time{}
	for _, e := range starts {
		byID[e.RequestID] = e.Time
	}
	var iv [][2]float64
	for _, e := range ends {
		if s, ok := byID[e.RequestID]; ok {
			iv = append(iv, [2]float64{float64(s.UnixNano()), float64(e.Time.UnixNano())})
		}
	}
	t.Logf("%s: %d ran, %d refused; audit [start, end] intervals overlap at most %d", toolName, len(ok), refused, maxOverlap(iv))
	return ok
}

// TestConcurrencyNeverOverAdmitted: a tool limited to 4 calls at once
// never runs 5, under 100 parallel calls; the others are refused with
// CONCURRENCY_LIMITED (with a retry-after hint), audited as limit.concurrency.
//
// What can prove "at most 4 at once": the gateway holds the concurrency
// slot from admission (the limits stage) until the tool returned (the end
// of the execute stage, internal/gateway/pipeline.go). tool.call.start is
// written after admission, but tool.call.end is written by audit_end,
// after the slot was released. So the audit interval [start, end]
// contains the tool's run but is not contained in the slot's: it
// over-approximates on the right. Its overlap is an upper bound of the
// tool runs at once but not of the slots held, and on a correct gateway it
// can exceed 4: a call admitted right after a release starts before the
// released call's end record is stamped (observed: 5 in about one of
// three rounds of 100 file_info calls on 2 CPUs, with ~25 ms intervals
// that are mostly the durable audit write). The audit overlap is therefore
// only logged.
//
// The proof uses execute_python instead: the code reports, from inside the
// sandbox, when it started and finished (time.time() is the host's wall
// clock: CLOCK_REALTIME is not namespaced). Each such probe interval lies
// strictly inside the tool's run, hence inside its slot: if the limiter
// never held more than 4 slots, no instant lies in more than 4 probe
// intervals, so the assertion cannot fail on a correct gateway, and a 5th
// call admitted while 4 sleep 300 ms would show up. Where python or the
// sandbox is missing that part is skipped; the file_info part (outcomes
// and audit counts) always runs.
func TestConcurrencyNeverOverAdmitted(t *testing.T) {
	const limit, calls = 4, 100
	lim := `{"concurrency":4,"rate_per_minute":1000000,"burst":100000}`
	g := startGateway(t, `PORTCULLIS_LIMITS_TOOLS={"file_info":`+lim+`,"execute_python":`+lim+`}`)
	if err := os.WriteFile(filepath.Join(g.workspace, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	cs := g.connect(g.createKey("conc", "developer"), "")

	t.Run("file_info outcomes", func(t *testing.T) {
		results := abuseParallel(t, cs, calls, 0, "file_info", map[string]any{"path": "a.txt"})
		abuseCheckRefusals(t, g, "conc", "file_info", results)
	})

	t.Run("sandbox probe", func(t *testing.T) {
		if !slices.Contains(toolNames(t, cs), "execute_python") {
			t.Skip("execute_python is not offered here (no python3 or no sandbox)")
		}
		src := "import time\na = time.time()\ntime.sleep(0.3)\nprint('PROBE %r %r' % (a, time.time()))\n"
		// Arrivals spread over 2 s, so that several waves of 4 get in while
		// most of the 100 calls are in flight together.
		results := abuseParallel(t, cs, calls, 20*time.Millisecond, "execute_python", map[string]any{"code": src})
		ok := abuseCheckRefusals(t, g, "conc", "execute_python", results)
		probeRE := regexp.MustCompile(`PROBE ([0-9.]+) ([0-9.]+)`)
		var probes [][2]float64
		for _, res := range ok {
			m := probeRE.FindStringSubmatch(text(res))
			if m == nil {
				t.Fatalf("no probe in %q", text(res))
			}
			a, _ := strconv.ParseFloat(m[1], 64)
			b, _ := strconv.ParseFloat(m[2], 64)
			probes = append(probes, [2]float64{a, b})
		}
		peak := maxOverlap(probes)
		t.Logf("python probes: at most %d ran at once", peak)
		if peak > limit {
			t.Errorf("%d calls ran at once, limit %d", peak, limit)
		}
	})
}

// TestRateLimitRetryAfter: a tool at 6 calls a minute with a burst of 2
// refuses the third quick call with a retry-after hint, audited as limit.rate.
func TestRateLimitRetryAfter(t *testing.T) {
	g := startGateway(t, `PORTCULLIS_LIMITS_TOOLS={"file_info":{"rate_per_minute":6,"burst":2}}`)
	if err := os.WriteFile(filepath.Join(g.workspace, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	cs := g.connect(g.createKey("rater", "developer"), "")
	for i := range 2 {
		if res := call(t, cs, "file_info", map[string]any{"path": "a.txt"}); res.IsError {
			t.Fatalf("call %d within the burst: %s %q", i+1, code(res), text(res))
		}
	}
	res := call(t, cs, "file_info", map[string]any{"path": "a.txt"})
	if !res.IsError || code(res) != "RATE_LIMITED" {
		t.Fatalf("third call: isError %v code %q %q; want RATE_LIMITED", res.IsError, code(res), text(res))
	}
	// 6 a minute: the next token comes in 10 s.
	if txt := text(res); !strings.Contains(txt, "retry after 10s") {
		t.Errorf("refusal text %q lacks \"retry after 10s\"", txt)
	}
	// The limit is per tool: another tool still answers.
	if res := call(t, cs, "list_directory", map[string]any{"path": "."}); res.IsError {
		t.Errorf("list_directory refused: %s %q", code(res), text(res))
	}
	evs := abuseAudit(t, g, url.Values{"type": {"limit.rate"}, "user": {"rater"}})
	if len(evs) != 1 || evs[0].Tool != "file_info" || evs[0].Reason != "RATE_LIMITED" || evs[0].Status != "refused" ||
		!strings.Contains(evs[0].Detail, "principal_tool") {
		t.Errorf("limit.rate events %+v, want one for file_info", evs)
	}
}

// abuseEscapes returns n path-escape attempts: the "../" lines of the
// shared traversal corpus (with {FILE} = etc/passwd), then generated ones.
func abuseEscapes(t *testing.T, n int) []string {
	var out []string
	if f, err := os.Open("../../../shared/testdata/traversal/pat-deep_traversal.txt"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "../") && strings.HasSuffix(line, "{FILE}") {
				out = append(out, strings.ReplaceAll(line, "{FILE}", "etc/passwd"))
			}
		}
		f.Close()
	} else {
		t.Logf("traversal corpus not found (%v); using generated paths", err)
	}
	for i := 1; len(out) < n; i++ {
		out = append(out, strings.Repeat("../", i%12+1)+[]string{"etc/passwd", "etc/shadow", "root/.ssh/id_rsa"}[i%3])
	}
	return out[:n]
}

// TestQuarantinePathEscapes: a principal making 30 path-escape attempts
// is quarantined, stays quarantined after restart, and is restored by release.
func TestQuarantinePathEscapes(t *testing.T) {
	env := []string{"PORTCULLIS_VIOLATIONS_QUARANTINE_PRINCIPAL_COUNT=10"}
	g := startGateway(t, env...)
	if err := os.WriteFile(filepath.Join(g.workspace, "notes.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := g.createKey("mallory", "developer")
	bystander := g.createKey("dora", "developer")
	// Each attempt is one request that reaches the server: once the HTTP
	// layer refuses the principal (403), the client's session is dead, so
	// the next attempt starts with a new connection, which is refused too.
	forbidden := func(i int, err error) {
		if !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("attempt %d: %v, want a 403 Forbidden", i+1, err)
		}
	}
	var cs *mcp.ClientSession
	escaped, refused := 0, 0
	for i, p := range abuseEscapes(t, 30) {
		if cs == nil {
			c, err := abuseDial(g, key)
			if err != nil {
				if i < 10 {
					t.Fatalf("connect before the threshold: %v", err)
				}
				forbidden(i, err)
				refused++
				continue
			}
			cs = c
		}
		res, err := abuseTry(cs, "read_file", map[string]any{"path": p})
		switch {
		case err != nil:
			if i < 10 {
				t.Fatalf("attempt %d (%q) failed before the threshold: %v", i+1, p, err)
			}
			forbidden(i, err)
			cs.Close()
			cs = nil
			refused++
		case res.IsError && (code(res) == "PATH_OUTSIDE_WORKSPACE" || code(res) == "PATH_FORBIDDEN"):
			if i >= 10 {
				t.Fatalf("attempt %d reached the tool after 10 violations: %s", i+1, code(res))
			}
			escaped++
		case res.IsError && code(res) == "PERMISSION_DENIED": // the gateway's own quarantine stage
			if text(res) != "access denied" {
				t.Errorf("quarantine refusal text %q, want the generic \"access denied\"", text(res))
			}
			refused++
		default:
			t.Fatalf("attempt %d (%q): isError %v code %q text %.200q", i+1, p, res.IsError, code(res), text(res))
		}
	}
	if cs != nil {
		cs.Close()
	}
	if escaped != 10 || refused != 20 {
		t.Fatalf("%d attempts reached the tool and %d were refused; want 10 and 20", escaped, refused)
	}

	quarantined := func(g *gateway) {
		t.Helper()
		// Every request is refused, generically: a tool list on a fresh
		// session, a new MCP connection.
		status, body := abuseInitialize(t, g, key)
		if status != http.StatusForbidden || !strings.Contains(body, "access denied") || strings.Contains(body, "quarantin") {
			t.Errorf("initialize while quarantined: %d %s; want 403 with a generic body", status, body)
		}
		if cs, err := abuseDial(g, key); err == nil {
			_, lerr := cs.ListTools(context.Background(), nil)
			cs.Close()
			t.Errorf("a quarantined principal connected (tools/list: %v)", lerr)
		}
		// Others are not affected.
		if status, body := abuseInitialize(t, g, bystander); status != http.StatusOK {
			t.Errorf("bystander initialize: %d %s", status, body)
		}
		var qs struct {
			Quarantines []struct {
				ID         string     `json:"id"`
				Kind       string     `json:"kind"`
				Subject    string     `json:"subject"`
				CreatedBy  string     `json:"created_by"`
				ReleasedAt *time.Time `json:"released_at"`
			} `json:"quarantines"`
		}
		abuseAdmin(t, g, "GET", "/admin/v1/quarantines", "", &qs)
		if len(qs.Quarantines) != 1 || qs.Quarantines[0].Subject != "mallory" || qs.Quarantines[0].Kind != "principal" ||
			qs.Quarantines[0].CreatedBy != "system" || qs.Quarantines[0].ReleasedAt != nil {
			t.Errorf("active quarantines %+v, want mallory's", qs.Quarantines)
		}
	}
	quarantined(g)
	if evs := abuseAudit(t, g, url.Values{"type": {"quarantine.refused"}, "user": {"mallory"}}); len(evs) < 20 {
		t.Errorf("%d quarantine.refused events, want at least 20", len(evs))
	}
	var vs struct {
		Violations []struct{ Type, Severity, Tool string } `json:"violations"`
	}
	abuseAdmin(t, g, "GET", "/admin/v1/violations?user=mallory&type=path_escape", "", &vs)
	abuseEventually(t, 10*time.Second, "10 path_escape violations stored", func() (bool, string) {
		abuseAdmin(t, g, "GET", "/admin/v1/violations?user=mallory&type=path_escape", "", &vs)
		return len(vs.Violations) == 10, fmt.Sprint(len(vs.Violations))
	})
	if v := vs.Violations[0]; v.Severity != "HIGH" || v.Tool != "read_file" {
		t.Errorf("violation %+v", v)
	}

	// A restart keeps the quarantine (it lives in the store).
	g.stop()
	g.start(env...)
	quarantined(g)

	out, err := g.cli("quarantine", "release", "mallory", "--reason", "investigated: test account")
	if err != nil {
		t.Fatalf("quarantine release: %v", err)
	}
	if !strings.Contains(out, "released") {
		t.Errorf("release output %q", out)
	}
	cs = g.connect(key, "")
	if res := call(t, cs, "read_file", map[string]any{"path": "notes.txt"}); res.IsError || text(res) != "hello" {
		t.Fatalf("read_file after release: %s %q", code(res), text(res))
	}
	var qs struct{ Quarantines []json.RawMessage }
	abuseAdmin(t, g, "GET", "/admin/v1/quarantines", "", &qs)
	if len(qs.Quarantines) != 0 {
		t.Errorf("active quarantines after release: %s", qs.Quarantines)
	}

	creates := abuseAudit(t, g, url.Values{"type": {"quarantine.create"}})
	releases := abuseAudit(t, g, url.Values{"type": {"quarantine.release"}})
	if len(creates) != 1 || creates[0].Principal != "system" || !strings.Contains(creates[0].Detail, "mallory") {
		t.Errorf("quarantine.create events %+v, want one by system for mallory", creates)
	}
	if len(releases) != 1 || !strings.Contains(releases[0].Detail, "investigated: test account") {
		t.Errorf("quarantine.release events %+v, want one with the reason", releases)
	}
	// The operator log of the first run carried the alert (the buffer
	// spans both runs).
	if !strings.Contains(g.stderr.String(), "ALERT quarantine.create") {
		t.Errorf("no \"ALERT quarantine.create\" in the log:\n%s", g.stderr)
	}
}

// TestQuotaPersistsAcrossRestart: the daily call quota refuses the 6th
// call of 5, and still after a restart (graceful stop flushes usage).
func TestQuotaPersistsAcrossRestart(t *testing.T) {
	if now := time.Now().UTC(); now.Add(time.Minute).Day() != now.Day() {
		t.Skip("too close to the UTC day boundary, when quotas reset")
	}
	env := []string{"PORTCULLIS_LIMITS_QUOTA_CALLS_PER_DAY=5"}
	g := startGateway(t, env...)
	key := g.createKey("quincy", "developer")
	cs := g.connect(key, "")
	for i := range 5 {
		if res := call(t, cs, "list_directory", map[string]any{"path": "."}); res.IsError {
			t.Fatalf("call %d of 5: %s %q", i+1, code(res), text(res))
		}
	}
	res := call(t, cs, "list_directory", map[string]any{"path": "."})
	if !res.IsError || code(res) != "QUOTA_EXCEEDED" {
		t.Fatalf("6th call: %s %q, want QUOTA_EXCEEDED", code(res), text(res))
	}
	if evs := abuseAudit(t, g, url.Values{"type": {"limit.quota"}, "user": {"quincy"}}); len(evs) != 1 {
		t.Errorf("limit.quota events %+v, want 1", evs)
	}
	var usage struct {
		Usage []struct {
			Principal string `json:"principal"`
			Calls     int64  `json:"calls"`
		} `json:"usage"`
	}
	abuseAdmin(t, g, "GET", "/admin/v1/usage", "", &usage)
	if !slices.ContainsFunc(usage.Usage, func(u struct {
		Principal string `json:"principal"`
		Calls     int64  `json:"calls"`
	}) bool {
		return u.Principal == "quincy" && u.Calls == 5
	}) {
		t.Errorf("usage %+v, want quincy with 5 calls", usage.Usage)
	}

	g.stop()
	g.start(env...)
	cs = g.connect(key, "")
	res = call(t, cs, "list_directory", map[string]any{"path": "."})
	if !res.IsError || code(res) != "QUOTA_EXCEEDED" {
		t.Fatalf("after restart: %s %q, want QUOTA_EXCEEDED", code(res), text(res))
	}
	// Quotas are per principal.
	other := g.connect(g.createKey("olga", "developer"), "")
	if res := call(t, other, "list_directory", map[string]any{"path": "."}); res.IsError {
		t.Errorf("another principal refused: %s %q", code(res), text(res))
	}
}

// TestWebhookAlertSignedAndRetried: a quarantine alert reaches a webhook
// as a signed generic payload, and a first attempt answered 500 is retried.
func TestWebhookAlertSignedAndRetried(t *testing.T) {
	secret := []byte("e2e-webhook-secret-0123456789abcdef")
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	type delivery struct {
		status         int
		ts, sig        string
		body           []byte
		payload        map[string]any
		contentType    string
		verifyErr      error
		verifyErrOther error
	}
	var mu sync.Mutex
	var got []delivery
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		d := delivery{ts: r.Header.Get(alert.HeaderTimestamp), sig: r.Header.Get(alert.HeaderSignature), body: b,
			contentType: r.Header.Get("Content-Type")}
		_ = json.Unmarshal(b, &d.payload)
		d.verifyErr = alert.VerifySignature(secret, d.ts, b, d.sig, time.Now(), 5*time.Minute)
		d.verifyErrOther = alert.VerifySignature([]byte("another secret"), d.ts, b, d.sig, time.Now(), 5*time.Minute)
		mu.Lock()
		d.status = http.StatusOK
		if r.URL.Path != "/hook" || len(got) == 0 {
			d.status = http.StatusInternalServerError // the first attempt fails
		}
		got = append(got, d)
		mu.Unlock()
		w.WriteHeader(d.status)
	}))
	defer hook.Close()

	g := startGateway(t, `PORTCULLIS_ALERTS_WEBHOOKS=[{"name":"t","url":"`+hook.URL+`/hook","secret_file":"`+secretFile+`"}]`)
	g.createKey("mallory", "developer")
	abuseAdmin(t, g, "POST", "/admin/v1/quarantines",
		`{"kind":"principal","subject":"mallory","reason":"suspicious activity"}`, nil)

	var quarantineDeliveries []delivery
	abuseEventually(t, 20*time.Second, "the quarantine alert delivered after a failed attempt", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		quarantineDeliveries = quarantineDeliveries[:0]
		for _, d := range got {
			if d.payload["kind"] == "quarantine.create" {
				quarantineDeliveries = append(quarantineDeliveries, d)
			}
		}
		n := len(quarantineDeliveries)
		return n >= 2 && quarantineDeliveries[n-1].status == http.StatusOK, fmt.Sprintf("%d deliveries", len(got))
	})
	first, last := quarantineDeliveries[0], quarantineDeliveries[len(quarantineDeliveries)-1]
	if first.status != http.StatusInternalServerError {
		t.Errorf("first delivery answered %d; the test expected it to be the failed one", first.status)
	}
	for i, d := range quarantineDeliveries {
		if d.verifyErr != nil {
			t.Errorf("delivery %d: signature does not verify: %v", i, d.verifyErr)
		}
		if d.verifyErrOther == nil {
			t.Errorf("delivery %d: signature verifies under another secret", i)
		}
		if d.contentType != "application/json" {
			t.Errorf("delivery %d: content type %q", i, d.contentType)
		}
		if d.payload["id"] != first.payload["id"] || d.payload["id"] == "" {
			t.Errorf("delivery %d has alert id %v, want the retried %v", i, d.payload["id"], first.payload["id"])
		}
	}
	p := last.payload
	if p["severity"] != "CRITICAL" || p["subject"] != "principal:mallory" || p["source"] != "portcullis" ||
		!strings.Contains(fmt.Sprint(p["detail"]), "suspicious activity") {
		t.Errorf("payload %s", last.body)
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(p["time"])); err != nil {
		t.Errorf("payload time %v: %v", p["time"], err)
	}
	// A tampered body does not verify.
	if err := alert.VerifySignature(secret, last.ts, bytes.Replace(last.body, []byte("mallory"), []byte("mallorx"), 1),
		last.sig, time.Now(), 5*time.Minute); err == nil {
		t.Error("a tampered payload verifies")
	}
}

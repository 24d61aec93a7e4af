package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Tests of the web console (issue 10) in headless Chromium against the
// real binary: sign in with the admin key, approve a held call and see
// the client's retry run, then every page; a screenshot of each page is
// kept (PORTCULLIS_UI_ARTIFACTS, default <repo>/.cover/ui-screenshots/).
// The browser must report no Content-Security-Policy violation and no
// uncaught exception: the page runs under the CSP the server sends.

// uiStep bounds one browser step.
const uiStep = 20 * time.Second

// uiArtifacts returns the screenshot directory, created.
func uiArtifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PORTCULLIS_UI_ARTIFACTS")
	if dir == "" {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".cover", "ui-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// uiBrowser drives one headless Chromium tab.
type uiBrowser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string

	mu       sync.Mutex
	problems []string // CSP violations and uncaught exceptions
}

// newUIBrowser starts Debian's chromium (headless, no sandbox: the suite
// runs as root, a fresh profile) or skips the test when it is missing.
func newUIBrowser(t *testing.T) *uiBrowser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("SKIP: chromium is not installed (apt-get install chromium); the web console's browser test needs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &uiBrowser{t: t, ctx: ctx, artifacts: uiArtifacts(t)}
	// The first action starts the browser; it must not run under a
	// timeout (that would end the browser with it).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	err = chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *log.EventEntryAdded:
			if strings.Contains(ev.Entry.Text, "Content Security Policy") {
				msg = "CSP: " + ev.Entry.Text
			}
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.problems = append(b.problems, msg)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// do runs steps within uiStep.
func (b *uiBrowser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text returns the text content of the first element matching css.
func (b *uiBrowser) text(css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiStep)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", css, err)
	}
	return s
}

// eval evaluates a JavaScript expression (through DevTools, outside the
// page's CSP) and decodes its value.
func uiEval[T any](b *uiBrowser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiStep)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is true. (chromedp.Poll
// builds its predicate with new Function, which the console's CSP
// forbids.)
func (b *uiBrowser) waitFor(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(uiStep)
	for {
		if uiEval[bool](b, "!!("+expr+")") {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s (%s)", what, expr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// page opens a console page by its navigation link and waits until it
// has loaded its data.
func (b *uiBrowser) page(name string) {
	b.t.Helper()
	b.do("open "+name, chromedp.Click(chromedp.CSS("#nav-"+name)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#page-%s[data-state="ready"]`, name))))
}

// shot saves a full-page screenshot as name in the artifacts directory.
func (b *uiBrowser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiStep)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.artifacts, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// TestConsoleUI: sign in to the web console with the admin key, approve
// a developer's held git_commit there (with a comment), and the
// developer's identical retry runs; then the audit explorer (filter,
// detail, export), violations and quarantine (release), users, roles and
// keys, plugins (empty state), and sign-out. The session cookie is
// HttpOnly, so the page cannot read it.
func TestConsoleUI(t *testing.T) {
	t.Parallel()
	g := approvalGateway(t)
	b := newUIBrowser(t)

	// A developer's git_commit is held for approval.
	alice := g.connect(g.createKey("alice", "developer"), "")
	aprWrite(t, g.workspace, "v1\n")
	args := aprCommit("approved in the console")
	id := aprHeld(t, call(t, alice, "git_commit", args))
	// And a quarantine to release.
	if st, body := aprDo(t, g, g.adminKey, "POST", "/admin/v1/quarantines",
		`{"kind":"principal","subject":"mallory","reason":"e2e: suspicious prompt"}`); st != http.StatusCreated {
		t.Fatalf("create quarantine: %d %s", st, body)
	}

	// 1. Sign-in: a wrong key is refused, the admin key signs in.
	b.do("open the console", chromedp.Navigate(g.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	b.shot("01-signin.png")
	if !uiEval[bool](b, `document.getElementById('signin-insecure').hidden`) {
		t.Errorf("the console calls a loopback origin insecure")
	}
	b.do("wrong key", chromedp.SendKeys(chromedp.CSS("#signin-key"), "pcl_not-a-key"),
		chromedp.Click(chromedp.CSS("#signin-submit")), chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	if msg := b.text("#signin-error"); !strings.Contains(msg, "not accepted") {
		t.Errorf("wrong key message %q", msg)
	}
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#signin-key"), g.adminKey),
		chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#page-approvals[data-state="ready"]`)))
	if who := b.text("#whoami"); who != "Signed in as admin" {
		t.Errorf("whoami %q", who)
	}
	if c := uiEval[string](b, "document.cookie"); c != "" {
		t.Errorf("the page can read cookies %q; the session cookie must be HttpOnly", c)
	}

	// 2. Approvals: the held call is listed; approve it with a comment.
	row := fmt.Sprintf(`#approvals-rows tr[data-id="%s"]`, id)
	b.do("pending request listed", chromedp.WaitVisible(chromedp.CSS(row)))
	if txt := b.text(row); !strings.Contains(txt, "alice") || !strings.Contains(txt, "git_commit") ||
		!strings.Contains(txt, "approved in the console") {
		t.Errorf("approval row %q lacks principal, tool or arguments", txt)
	}
	b.shot("02-approvals.png")
	comment := "reviewed in the web console"
	b.do("approve", chromedp.SendKeys(chromedp.CSS(row+" input.comment"), comment),
		chromedp.Click(chromedp.CSS(row+" button.approve")), chromedp.WaitNotPresent(chromedp.CSS(row)))
	if msg := b.text("#flash"); !strings.Contains(msg, id+": approved") {
		t.Errorf("flash after approving %q", msg)
	}
	// The held client's identical retry now runs, once.
	commit := aprRan(t, call(t, alice, "git_commit", args))
	if head, _ := aprHead(t, g); head != commit {
		t.Errorf("HEAD %s, want the approved commit %s", head, commit)
	}
	if a := aprShow(t, g, id); a.State != "consumed" || a.DecidedBy != "admin" || a.Comment != comment {
		t.Errorf("request after the retry: %+v", a)
	}

	// 3. Audit: the call and the decision are listed; detail; filter; export.
	b.page("audit")
	types := uiEval[[]string](b, `[...document.querySelectorAll('#audit-results tr[data-type]')].map(r => r.dataset.type)`)
	for _, want := range []string{"tool.call.start", "approval.grant", "approval.consume"} {
		if !slices.Contains(types, want) {
			t.Errorf("audit page lacks %s; has %v", want, types)
		}
	}
	b.do("event detail", chromedp.Click(chromedp.CSS(`#audit-results tr[data-type="approval.grant"]`)),
		chromedp.WaitVisible(chromedp.CSS("#audit-detail")))
	if d := b.text("#audit-detail"); !strings.Contains(d, id) || !strings.Contains(d, comment) {
		t.Errorf("approval.grant detail %q lacks the request or the comment", d)
	}
	b.shot("03-audit.png")
	b.do("filter by type", chromedp.SendKeys(chromedp.CSS("#audit-type"), "tool.call.start"),
		chromedp.Click(chromedp.CSS("#audit-search")))
	b.waitFor("only tool.call.start rows", `(() => { const t = [...document.querySelectorAll('#audit-results tr[data-type]')].map(r => r.dataset.type);
		return t.length > 0 && t.every(x => x === 'tool.call.start'); })()`)
	b.exportAudit(t)

	// 4. Violations and quarantine: release mallory.
	b.page("violations")
	qrow := `#quarantines tr[data-id^="qua_"]`
	if txt := b.text(qrow); !strings.Contains(txt, "mallory") || !strings.Contains(txt, "e2e: suspicious prompt") {
		t.Errorf("quarantine row %q", txt)
	}
	b.shot("04-violations.png")
	b.do("release", chromedp.SendKeys(chromedp.CSS(qrow+" input.reason"), "e2e: reviewed"),
		chromedp.Click(chromedp.CSS(qrow+" button.release")), chromedp.WaitNotPresent(chromedp.CSS(qrow)))
	if st, body := aprDo(t, g, g.adminKey, "GET", "/admin/v1/quarantines", ""); st != 200 || strings.Contains(body, "mallory") {
		t.Errorf("after the release: %d %s", st, body)
	}

	// 5. Users, roles and keys.
	b.page("users")
	for _, sel := range []string{`#users tr[data-name="admin"]`, `#users tr[data-name="alice"]`} {
		b.do("user row "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	}
	if txt := b.text("#roles"); !strings.Contains(txt, "allow admin *") {
		t.Errorf("roles table lacks the admin grant: %q", txt)
	}
	if n := uiEval[int](b, `document.querySelectorAll('#keys tr[data-id^="key_"]').length`); n < 2 {
		t.Errorf("keys table lists %d keys, want the admin's and alice's", n)
	}
	b.shot("05-users.png")

	// 6. Plugins: no upstream servers configured.
	b.page("plugins")
	if txt := b.text("#plugins-empty"); !strings.Contains(txt, "No upstream MCP servers") {
		t.Errorf("plugins empty state %q", txt)
	}
	b.shot("06-plugins.png")

	// Sign out: the session ends on the server too.
	csrf := uiEval[string](b, `sessionStorage.getItem('portcullis.csrf')`)
	b.do("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	status := uiEval[int](b, fmt.Sprintf(`fetch('/admin/v1/users', {credentials: 'same-origin', headers: {'X-CSRF-Token': %q}}).then(r => r.status)`, csrf))
	if status != http.StatusUnauthorized {
		t.Errorf("admin API after sign-out: %d, want 401", status)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("browser: %s", p)
	}
}

// exportAudit clicks Export JSONL and checks the downloaded file.
func (b *uiBrowser) exportAudit(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(b.ctx, uiStep)
	defer cancel()
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	if _, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: ptrTo(true),
	}); err != nil {
		t.Fatalf("download behavior: %v", err)
	}
	b.do("export", chromedp.Click(chromedp.CSS("#audit-export-jsonl")))
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("export download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("export download cancelled")
		}
		if ev.State != browser.DownloadProgressStateCompleted {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, ev.GUID))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) == 0 || !strings.Contains(string(data), `"type":"tool.call.start"`) ||
			strings.Contains(string(data), `"type":"approval.grant"`) {
			t.Errorf("export (filtered to tool.call.start) is %d lines: %.300s", len(lines), data)
		}
		return
	}
}

func ptrTo[T any](v T) *T { return &v }

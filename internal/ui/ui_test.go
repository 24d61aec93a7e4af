package ui_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/ui"
)

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(ui.Files(), name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHandler: the three files with their types, 404 for anything else,
// GET and HEAD only, and the security headers on every answer.
func TestHandler(t *testing.T) {
	h := ui.Handler()
	cases := []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/ui/", 200, "text/html; charset=utf-8"},
		{"HEAD", "/ui/", 200, "text/html; charset=utf-8"},
		{"GET", "/ui/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/ui/app.css", 200, "text/css; charset=utf-8"},
		{"GET", "/ui/static/app.js", 404, ""},
		{"GET", "/ui/./app.js", 404, ""},
		{"GET", "/ui/APP.JS", 404, ""},
		{"GET", "/other", 404, ""},
		{"POST", "/ui/", 405, ""},
		{"DELETE", "/ui/app.js", 405, ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if tc.ctype != "" && rec.Header().Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tc.ctype)
			}
			if got := rec.Header().Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy {
				t.Errorf("CSP %q", got)
			}
			for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
				"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tc.method == "HEAD" && rec.Body.Len() != 0 {
				t.Errorf("HEAD answered a body")
			}
		})
	}
}

// TestCSPForbidsWhatThePageAvoids: the policy has no 'unsafe-inline',
// 'unsafe-eval', wildcard or other origin, and forbids framing.
func TestCSPForbidsWhatThePageAvoids(t *testing.T) {
	for _, bad := range []string{"unsafe", "*", "http:", "https:", "blob:"} {
		if strings.Contains(ui.ContentSecurityPolicy, bad) {
			t.Errorf("CSP allows %q: %s", bad, ui.ContentSecurityPolicy)
		}
	}
	for _, need := range []string{"default-src 'none'", "frame-ancestors 'none'", "script-src 'self'", "base-uri 'none'"} {
		if !strings.Contains(ui.ContentSecurityPolicy, need) {
			t.Errorf("CSP lacks %q", need)
		}
	}
}

// TestNoInlineCodeOrExternalURLs: the page runs under the CSP above, so
// it has no inline script, style or event handler, and no file names
// another origin.
func TestNoInlineCodeOrExternalURLs(t *testing.T) {
	html := readFile(t, "index.html")
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]`), // a script with content
		regexp.MustCompile(`(?i)<script(?:(?:\s+[a-z-]+(?:="[^"]*")?)*)>`),
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle=`),
		regexp.MustCompile(`(?i)\son[a-z]+=`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		for _, m := range re.FindAllString(html, -1) {
			if strings.Contains(m, `src="app.js"`) {
				continue // the one external script
			}
			t.Errorf("index.html has inline code: %q", m)
		}
	}
	ext := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		if m := ext.FindString(readFile(t, name)); m != "" {
			t.Errorf("%s names another origin: %q", name, m)
		}
	}
	if m := regexp.MustCompile(`@import|url\(`).FindString(readFile(t, "app.css")); m != "" {
		t.Errorf("app.css loads something: %q", m)
	}
}

// TestScriptRendersTextOnly: app.js has no HTML sink and no string
// evaluation, so server data (plugin descriptions, audit details) cannot
// become markup or code.
func TestScriptRendersTextOnly(t *testing.T) {
	js := readFile(t, "app.js")
	for _, sink := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML(", "document.write(",
		"eval(", "Function(", "createContextualFragment(", "DOMParser", "srcdoc", ".setHTML"} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
	if !strings.Contains(js, "'X-CSRF-Token'") || !strings.Contains(js, "credentials: 'same-origin'") {
		t.Errorf("app.js does not send the CSRF header with same-origin credentials")
	}
}

// TestScriptIDsExist: every element id the script looks up by a literal
// exists in the page (or is created by the script).
func TestScriptIDsExist(t *testing.T) {
	html, js := readFile(t, "index.html"), readFile(t, "app.js")
	for _, m := range regexp.MustCompile(`\$\('([a-z-]+)'\)`).FindAllStringSubmatch(js, -1) {
		id := m[1]
		if !strings.Contains(html, `id="`+id+`"`) && !strings.Contains(js, `id: '`+id+`'`) {
			t.Errorf("app.js uses #%s, which the page lacks", id)
		}
	}
	for _, p := range []string{"approvals", "audit", "violations", "users", "plugins"} {
		for _, id := range []string{"page-" + p, "nav-" + p} {
			if !strings.Contains(html, `id="`+id+`"`) {
				t.Errorf("index.html lacks #%s", id)
			}
		}
	}
}

// TestServedFilesAreEmbedded: what the handler serves is the embedded
// file, byte for byte.
func TestServedFilesAreEmbedded(t *testing.T) {
	srv := httptest.NewServer(ui.Handler())
	defer srv.Close()
	for path, name := range map[string]string{"/ui/": "index.html", "/ui/app.js": "app.js", "/ui/app.css": "app.css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != readFile(t, name) {
			t.Errorf("%s does not serve %s", path, name)
		}
	}
}

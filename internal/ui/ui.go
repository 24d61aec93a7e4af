// Package ui is the web console served at /ui/: a single page (plain
// HTML, CSS and JavaScript, embedded in the binary; no framework, no CDN,
// no build step) that signs in with an admin credential and then works
// only through the admin API (/admin/v1/), like the CLI.
//
// The page itself is public — it holds no data. Every response carries a
// strict Content-Security-Policy (scripts and styles only from the files
// here, no inline code, no other origin, no framing), X-Frame-Options,
// nosniff, no referrer and no caching; see SetSecurityHeaders. Server data
// is rendered with textContent only, never as HTML: plugin descriptions
// and audit details are attacker-controlled.
//
// Sessions, cookies and CSRF tokens are the server's business (package
// server); this package only serves the files.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// Prefix is the URL path the console is served under.
const Prefix = "/ui/"

// ContentSecurityPolicy is the policy of every console response (CSP
// Level 3): nothing but this origin's own files; no inline scripts or
// styles, no eval, no plugins, no framing (frame-ancestors, clickjacking),
// no <base> rewriting, forms post only here.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// SetSecurityHeaders sets the headers every console response carries:
// ContentSecurityPolicy, X-Frame-Options DENY (clickjacking, for browsers
// without frame-ancestors), nosniff, Referrer-Policy no-referrer and
// Cache-Control no-store (the console's answers may hold audit data).
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

//go:embed static
var static embed.FS

// files are the console's files by name, with their content types.
var files = map[string]string{
	"index.html": "text/html; charset=utf-8",
	"app.js":     "text/javascript; charset=utf-8",
	"app.css":    "text/css; charset=utf-8",
}

// Files returns the embedded files (for tests that inspect them).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// Handler serves the console under Prefix: Prefix itself is index.html,
// Prefix+"app.js" and Prefix+"app.css" the script and style sheet; any
// other path is 404, any method but GET and HEAD 405. It sets
// SetSecurityHeaders on every answer.
func Handler() http.Handler {
	root := Files()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetSecurityHeaders(w.Header())
		name, ok := strings.CutPrefix(r.URL.Path, Prefix)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if name == "" {
			name = "index.html"
		}
		ctype, known := files[name]
		if !known || name != path.Clean(name) {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b, err := fs.ReadFile(root, name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	})
}

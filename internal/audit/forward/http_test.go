package forward

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
)

// request is one POST a collector received.
type request struct {
	cursor int64 // the sink's stored cursor when the request arrived
	header http.Header
	path   string
	body   []byte
	events []audit.Event
	ok     bool // the collector acknowledged it
}

// collector is an HTTP collector that answers each request by the next
// entry of its script ("500", "401", "hang", "es-errors", "es-garbage",
// "" for success), then with success (or always with failAll's mode).
type collector struct {
	t      *testing.T
	src    *fakeSource
	name   string
	srv    *httptest.Server
	stop   chan struct{}
	mu     sync.Mutex
	script []string
	always string
	reqs   []request
}

func newCollector(t *testing.T, src *fakeSource, name string, script ...string) *collector {
	c := newCollectorOn(t, src, name, nil)
	c.script = script
	return c
}

// newCollectorOn serves on l, or on a new loopback port if l is nil.
func newCollectorOn(t *testing.T, src *fakeSource, name string, l net.Listener) *collector {
	c := &collector{t: t, src: src, name: name, stop: make(chan struct{})}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	if l != nil {
		c.srv.Listener.Close()
		c.srv.Listener = l
	}
	c.srv.Start()
	t.Cleanup(func() {
		close(c.stop)
		c.srv.Close()
	})
	return c
}

func (c *collector) failAll(mode string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.always = mode
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := request{cursor: c.src.cursor(c.name), header: r.Header.Clone(), path: r.URL.Path, body: body, events: decodeBody(c.t, body)}
	c.mu.Lock()
	mode := c.always
	if len(c.script) > 0 {
		mode, c.script = c.script[0], c.script[1:]
	}
	req.ok = mode == ""
	// Recorded on arrival, before answering: a hung request ends after the
	// next one, and the forwarder may save its cursor before we return.
	c.reqs = append(c.reqs, req)
	c.mu.Unlock()
	switch mode {
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
	case "401":
		w.WriteHeader(http.StatusUnauthorized)
	case "hang":
		select {
		case <-r.Context().Done():
		case <-c.stop:
		}
	case "es-errors":
		io.WriteString(w, `{"took":3,"errors":true,"items":[{"index":{"_id":"ev-1","status":201}},`+
			`{"index":{"_id":"ev-2","status":400,"error":{"type":"mapper_parsing_exception","reason":"field [args] value PAYLOAD"}}}]}`)
	case "es-garbage":
		io.WriteString(w, `<html>gateway</html>`)
	default:
		io.WriteString(w, `{"took":3,"errors":false,"items":[]}`)
	}
}

func (c *collector) requests() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

// delivered is every record of every acknowledged request, in order.
func (c *collector) delivered() []audit.Event {
	var out []audit.Event
	for _, r := range c.requests() {
		if r.ok {
			out = append(out, r.events...)
		}
	}
	return out
}

// decodeBody parses a jsonl, Loki or Elasticsearch bulk body.
func decodeBody(t *testing.T, body []byte) []audit.Event {
	var out []audit.Event
	add := func(b []byte) {
		var e audit.Event
		if err := json.Unmarshal(b, &e); err != nil {
			t.Errorf("record %q: %v", b, err)
		}
		out = append(out, e)
	}
	if bytes.HasPrefix(body, []byte(`{"streams"`)) {
		var push lokiPush
		if err := json.Unmarshal(body, &push); err != nil {
			t.Errorf("loki body: %v", err)
		}
		for _, s := range push.Streams {
			for _, v := range s.Values {
				add([]byte(v[1]))
			}
		}
		slices.SortFunc(out, func(a, b audit.Event) int { return int(a.Seq - b.Seq) })
		return out
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], `{"index"`) {
			i++
		}
		add([]byte(lines[i]))
	}
	return out
}

type lokiPush struct {
	Streams []struct {
		Stream map[string]string `json:"stream"`
		Values [][]string        `json:"values"`
	} `json:"streams"`
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHTTPWireFormats pins each format's exact body and headers.
func TestHTTPWireFormats(t *testing.T) {
	src := newSource()
	src.add(3)
	ev := src.all()
	js := func(i int) string { return mustJSON(t, ev[i]) }
	for _, tc := range []struct {
		format, ctype, want string
	}{
		{"jsonl", "application/x-ndjson", js(0) + "\n" + js(1) + "\n" + js(2) + "\n"},
		{"elasticsearch", "application/x-ndjson",
			`{"index":{"_id":"ev-1"}}` + "\n" + js(0) + "\n" +
				`{"index":{"_id":"ev-2"}}` + "\n" + js(1) + "\n" +
				`{"index":{"_id":"ev-3"}}` + "\n" + js(2) + "\n"},
		{"loki", "application/json", `{"streams":[` +
			`{"stream":{"job":"portcullis","type":"tool.call.start"},"values":[` +
			fmt.Sprintf(`[%q,%s],[%q,%s]]},`, fmt.Sprint(ev[0].Time.UnixNano()), mustJSON(t, js(0)), fmt.Sprint(ev[2].Time.UnixNano()), mustJSON(t, js(2))) +
			`{"stream":{"job":"portcullis","type":"policy.deny"},"values":[` +
			fmt.Sprintf(`[%q,%s]]}`, fmt.Sprint(ev[1].Time.UnixNano()), mustJSON(t, js(1))) + "]}\n"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			c := newCollector(t, src, tc.format)
			run(t, mustNew(t, httpSink(tc.format, c.srv.URL+"/ingest", tc.format), src, discard, fastOpts))
			waitFor(t, "delivery", func() bool { return src.cursor(tc.format) == 3 })
			reqs := c.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if diff := cmp.Diff(tc.want, string(r.body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if got := r.header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type = %q, want %q", got, tc.ctype)
			}
			if r.path != "/ingest" || r.header.Get("Authorization") != "" {
				t.Errorf("path %q, Authorization %q; want /ingest and none", r.path, r.header.Get("Authorization"))
			}
			if diff := cmp.Diff(ev, r.events); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHTTPFailuresRecover: whatever way the collector fails, no record is
// lost or skipped, order holds, and the cursor moves only after success.
func TestHTTPFailuresRecover(t *testing.T) {
	for _, tc := range []struct{ mode, format, errText string }{
		{"500", "jsonl", "HTTP 500"},
		{"401", "loki", "HTTP 401"},
		{"hang", "jsonl", "deadline exceeded"},
		{"es-errors", "elasticsearch", "1 of 2 items failed (first: mapper_parsing_exception)"},
		{"es-garbage", "elasticsearch", "unreadable answer"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			src := newSource()
			src.add(7)
			c := newCollector(t, src, "s", tc.mode, "", tc.mode, tc.mode, "")
			cfg := httpSink("s", c.srv.URL, tc.format)
			cfg.BatchSize, cfg.Timeout = 3, 200*time.Millisecond
			f := mustNew(t, cfg, src, discard, fastOpts)
			run(t, f)
			waitFor(t, "delivery", func() bool { return f.Stats().Cursor == 7 })
			if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6, 7}, seqs(c.delivered())); diff != "" {
				t.Errorf("delivered (-want +got):\n%s", diff)
			}
			var got []string
			for _, r := range c.requests() {
				got = append(got, fmt.Sprintf("cursor=%d first=%d ok=%t", r.cursor, r.events[0].Seq, r.ok))
			}
			want := []string{
				"cursor=0 first=1 ok=false", "cursor=0 first=1 ok=true",
				"cursor=3 first=4 ok=false", "cursor=3 first=4 ok=false", "cursor=3 first=4 ok=true",
				"cursor=6 first=7 ok=true",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			st := f.Stats()
			if st.Sent != 7 || st.Failures != 3 || st.Cursor != 7 || st.Head != 7 || st.Lag != 0 || st.LastErrorTime.IsZero() {
				t.Errorf("stats = %+v", st)
			}
			if !strings.Contains(st.LastError, tc.errText) || strings.Contains(st.LastError, "PAYLOAD") {
				t.Errorf("LastError = %q, want it to contain %q and no record contents", st.LastError, tc.errText)
			}
		})
	}
}

// TestHTTPConnectionRefused: a collector that is down at first gets every
// record once it listens.
func TestHTTPConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	src := newSource()
	src.add(5)
	cfg := httpSink("s", "http://"+addr+"/in", "jsonl")
	cfg.BatchSize = 2
	f := mustNew(t, cfg, src, discard, fastOpts)
	run(t, f)
	waitFor(t, "failures", func() bool { return f.Stats().Failures >= 3 })
	if st := f.Stats(); !strings.Contains(st.LastError, "connection refused") || src.cursor("s") != 0 {
		t.Errorf("stats = %+v, cursor %d; want connection refused, cursor 0", st, src.cursor("s"))
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	c := newCollectorOn(t, src, "s", l)
	waitFor(t, "delivery", func() bool { return src.cursor("s") == 5 })
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5}, seqs(c.delivered())); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
}

// TestHTTPRestartResumes: a new forwarder on the same source sends only
// what the previous one had not.
func TestHTTPRestartResumes(t *testing.T) {
	src := newSource()
	src.add(4)
	c := newCollector(t, src, "s")
	cfg := httpSink("s", c.srv.URL, "jsonl")
	stop := run(t, mustNew(t, cfg, src, discard, fastOpts))
	waitFor(t, "first delivery", func() bool { return src.cursor("s") == 4 })
	stop()
	src.add(4)
	run(t, mustNew(t, cfg, src, discard, fastOpts))
	waitFor(t, "second delivery", func() bool { return src.cursor("s") == 8 })
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6, 7, 8}, seqs(c.delivered())); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
}

// TestHTTPBearerToken: the token from token_file is sent, and appears in
// no log line and no error.
func TestHTTPBearerToken(t *testing.T) {
	token := "tok-" + strings.Repeat("f00d", 4) // fake, built at run time (secret scan)
	src := newSource()
	src.add(2)
	c := newCollector(t, src, "s", "401")
	cfg := httpSink("s", c.srv.URL, "jsonl")
	cfg.TokenFile = writeFile(t, t.TempDir(), "token", token+"\n", 0o600)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := mustNew(t, cfg, src, log, fastOpts)
	run(t, f)
	waitFor(t, "delivery", func() bool { return src.cursor("s") == 2 })
	for i, r := range c.requests() {
		if got := r.header.Get("Authorization"); got != "Bearer "+token {
			t.Errorf("request %d: Authorization = %q", i, got)
		}
	}
	if !strings.Contains(logs.String(), "HTTP 401") {
		t.Errorf("failure not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), token) || strings.Contains(f.Stats().LastError, token) {
		t.Errorf("token leaked:\n%s\n%s", logs.String(), f.Stats().LastError)
	}
}

// TestHTTPRedirectRefused: records are never posted where a redirect points.
func TestHTTPRedirectRefused(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	target := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		hits++
	}))
	redirector := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	src := newSource()
	src.add(2)
	f := mustNew(t, httpSink("s", redirector.URL, "jsonl"), src, discard, fastOpts)
	stop := run(t, f)
	waitFor(t, "failures", func() bool { return f.Stats().Failures >= 3 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 || src.cursor("s") != 0 {
		t.Errorf("redirect target hit %d times, cursor %d; want 0, 0", hits, src.cursor("s"))
	}
	if st := f.Stats(); !strings.Contains(st.LastError, "redirect refused") || strings.Contains(st.LastError, redirector.URL) {
		t.Errorf("LastError = %q, want redirect refused without the URL", st.LastError)
	}
}

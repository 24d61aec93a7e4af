package httpfetch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// TestMain fails the package if a test leaves goroutines running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// publicIP is a global unicast address used by the fake resolver; tests
// never connect to it (recordingDialer redirects the connection).
var publicIP = netip.MustParseAddr("93.184.215.14")

// fakeResolver answers from a table and records every lookup. answers[h]
// holds successive answers for h; the last one repeats.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   []string
}

func newResolver(m map[string]string) *fakeResolver {
	r := &fakeResolver{answers: map[string][][]netip.Addr{}}
	for h, list := range m {
		var ans []netip.Addr
		for _, a := range strings.Split(list, ",") {
			ans = append(ans, netip.MustParseAddr(a))
		}
		r.answers[h] = [][]netip.Addr{ans}
	}
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c == host {
			n++
		}
	}
	r.calls = append(r.calls, host)
	ans, ok := r.answers[host]
	if !ok || network != "ip" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return ans[min(n, len(ans)-1)], nil
}

func (r *fakeResolver) lookups() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// recordingDialer records every address it is asked to dial. With to set,
// it connects there instead (a loopback test server standing in for a
// public host); with fail set, it refuses every dial.
type recordingDialer struct {
	to   string
	fail bool

	mu     sync.Mutex
	dialed []string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, address)
	d.mu.Unlock()
	if d.fail {
		return nil, errors.New("recordingDialer: dial refused")
	}
	if d.to != "" {
		address = d.to
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

func (d *recordingDialer) addresses() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dialed...)
}

func newTool(t testing.TB, cfg httpfetch.Config) *httpfetch.Tool {
	t.Helper()
	tl, err := httpfetch.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tl
}

// call calls tl with args marshalled to JSON (a string is sent as is).
func call(ctx context.Context, t testing.TB, tl *httpfetch.Tool, args any) (*tool.Result, error) {
	t.Helper()
	var raw []byte
	if s, ok := args.(string); ok {
		raw = []byte(s)
	} else {
		var err error
		if raw, err = json.Marshal(args); err != nil {
			t.Fatalf("marshal args: %v", err)
		}
	}
	return tl.Call(ctx, raw)
}

// fetchURL calls tl with just a url.
func fetchURL(t testing.TB, tl *httpfetch.Tool, u string) (*tool.Result, error) {
	t.Helper()
	return call(context.Background(), t, tl, map[string]any{"url": u})
}

// codeOf returns the reason code of err: OK for nil, the *tool.Error's
// code, or a marker that makes any comparison fail for other errors.
func codeOf(err error) reason.Code {
	if err == nil {
		return reason.OK
	}
	if te, ok := tool.AsError(err); ok {
		return te.Code
	}
	return reason.Code("NOT_A_TOOL_ERROR: " + err.Error())
}

// msgOf returns the client message of a *tool.Error.
func msgOf(err error) string {
	if te, ok := tool.AsError(err); ok {
		return te.ClientMessage()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// wantRefused fails unless err is a *tool.Error with code and a client
// message containing msg.
func wantRefused(t testing.TB, err error, code reason.Code, msg string) {
	t.Helper()
	if got := codeOf(err); got != code {
		t.Fatalf("code = %s (%v); want %s", got, err, code)
	}
	if !strings.Contains(msgOf(err), msg) {
		t.Fatalf("message = %q; want it to contain %q", msgOf(err), msg)
	}
}

// echo is what the echo handler reports about the request it got.
type echo struct {
	Method string      `json:"method"`
	Host   string      `json:"host"`
	Path   string      `json:"path"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

// newServer starts a loopback HTTP server with:
//
//	/echo              the request as JSON (echo)
//	/redirect?to=U&code=N  a redirect to U (status N, default 302)
//	/bytes?n=N         N bytes of 'a'
//	/status?code=N     an empty response with status N
//	/hang              headers never come until the client goes away
//	/slowbody          headers, then the body never comes
func newServer(t testing.TB) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(handler())
	t.Cleanup(s.Close)
	return s
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=secret")
		json.NewEncoder(w).Encode(echo{Method: r.Method, Host: r.Host, Path: r.URL.Path, Header: r.Header, Body: string(b)})
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusFound
		if c := r.URL.Query().Get("code"); c != "" {
			json.Unmarshal([]byte(c), &code)
		}
		w.Header().Set("Location", r.URL.Query().Get("to"))
		w.WriteHeader(code)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		var n int
		json.Unmarshal([]byte(r.URL.Query().Get("n")), &n)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", fmt.Sprint(n))
		w.Write([]byte(strings.Repeat("a", n)))
	})
	mux.HandleFunc("/raw", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte(r.URL.Query().Get("b")))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		var code int
		json.Unmarshal([]byte(r.URL.Query().Get("code")), &code)
		w.WriteHeader(code)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/slowbody", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	return mux
}

// loopbackConfig allows exactly the test server s by its literal address.
func loopbackConfig(s *httptest.Server) httpfetch.Config {
	return httpfetch.Config{
		Allow:        []string{s.Listener.Addr().String()},
		AllowPrivate: []string{"127.0.0.1/32"},
		Resolver:     newResolver(nil),
	}
}

func port(s *httptest.Server) string {
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	return p
}

// decodeEcho parses the echo in a successful result's body.
func decodeEcho(t testing.TB, res *tool.Result) echo {
	t.Helper()
	var e echo
	body, _ := res.Structured["body"].(string)
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("echo body %q: %v", body, err)
	}
	return e
}

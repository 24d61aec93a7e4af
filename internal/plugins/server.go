package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/violation"
)

// maxTools bounds how many tools one server may declare.
const maxTools = 1000

// conn is one live connection to a server.
type conn struct {
	session *mcp.ClientSession
	// done is closed when the connection ended (process exit, transport
	// failure); exit then describes why.
	done chan struct{}
	exit func() exitInfo
	stop func() // ends the connection (kills the process)
	// sessionFor returns the session for calls by user (HTTP per_user);
	// nil means session.
	sessionFor func(ctx context.Context, user string) (*mcp.ClientSession, error)
}

// exitInfo says how a connection ended.
type exitInfo struct {
	err    error
	result *sandbox.Result // stdio servers
}

// server is one configured upstream server and its supervisor's state.
type server struct {
	m     *Manager
	cfg   config.ServerConfig
	level sandbox.Level

	ready     chan struct{} // closed after the first successful connection
	readyOnce sync.Once
	resyncCh  chan struct{}

	mu       sync.Mutex
	cur      *conn
	state    string
	since    time.Time
	restarts int
	lastErr  string
	offered  []string
	withheld []string
}

func newServer(m *Manager, sc config.ServerConfig, level sandbox.Level) *server {
	return &server{m: m, cfg: sc, level: level, ready: make(chan struct{}), resyncCh: make(chan struct{}, 1),
		state: "starting", since: m.deps.Now()}
}

func (s *server) kind() string {
	if s.cfg.URL != "" {
		return "http"
	}
	return "stdio"
}

func (s *server) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Name: s.cfg.Name, Kind: s.kind(), SecurityLevel: string(s.level), State: s.state, Since: s.since,
		Restarts: s.restarts, LastError: s.lastErr, Tools: append([]string{}, s.offered...),
		Withheld: append([]string{}, s.withheld...)}
}

func (s *server) setState(state, errText string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.since = state, s.m.deps.Now()
	if errText != "" {
		s.lastErr = errText
	}
}

// current returns the live connection, or nil.
func (s *server) current() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// resync asks the supervisor to list the tools again (after an accept or
// a tools/list_changed notification).
func (s *server) resync() {
	select {
	case s.resyncCh <- struct{}{}:
	default:
	}
}

// supervise connects, offers the tools, watches the connection and
// restarts it with backoff until ctx ends.
func (s *server) supervise(ctx context.Context) {
	log := s.m.deps.Logger.With("server", s.cfg.Name)
	backoff := s.m.cfg.MinBackoff
	for ctx.Err() == nil {
		started := s.m.deps.Now()
		c, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("upstream server failed to start", "err", err, "retry_in", backoff)
			s.setState("restarting", err.Error())
			s.m.emit(ctx, &audit.Event{Type: audit.PluginExit, Server: s.cfg.Name, Status: audit.StatusError,
				Error: "start failed", Detail: err.Error()})
		} else {
			s.run(ctx, c, log)
		}
		if ctx.Err() != nil {
			break
		}
		if s.m.deps.Now().Sub(started) >= s.m.cfg.StableAfter {
			backoff = s.m.cfg.MinBackoff
		}
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.m.cfg.MaxBackoff)
	}
	s.setState("stopped", "")
}

// run serves one connection until it ends.
func (s *server) run(ctx context.Context, c *conn, log *slog.Logger) {
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
	offered := s.sync(ctx, c)
	s.setState("running", "")
	s.readyOnce.Do(func() { close(s.ready) })
	s.m.emit(ctx, &audit.Event{Type: audit.PluginStart, Server: s.cfg.Name, Status: audit.StatusOK,
		Detail: fmt.Sprintf("level=%s kind=%s restarts=%d tools=%d", s.level, s.kind(),
			s.status().Restarts, offered)})
	ping := time.NewTicker(s.m.cfg.PingInterval)
	defer ping.Stop()
	failures := 0
	reason := ""
loop:
	for {
		select {
		case <-ctx.Done():
			reason = "gateway stopping"
			break loop
		case <-c.done:
			break loop
		case <-s.resyncCh:
			s.sync(ctx, c)
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, s.m.cfg.PingTimeout)
			err := c.session.Ping(pctx, nil)
			cancel()
			if err == nil {
				failures = 0
				continue
			}
			failures++
			log.Warn("upstream server did not answer ping", "failures", failures, "err", err)
			if failures >= s.m.cfg.PingFailures {
				reason = fmt.Sprintf("no answer to %d pings", failures)
				break loop
			}
		}
	}
	c.stop()
	<-c.done
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
	info := c.exit()
	detail, status := s.describeExit(info, reason)
	if ctx.Err() == nil {
		s.setState("restarting", detail)
		log.Warn("upstream server stopped; restarting", "detail", detail)
	}
	s.m.emit(ctx, &audit.Event{Type: audit.PluginExit, Server: s.cfg.Name, Status: status,
		Detail: detail})
	s.recordSandboxViolations(ctx, info)
}

// describeExit summarizes how a connection ended for the audit detail.
func (s *server) describeExit(info exitInfo, reason string) (string, string) {
	var parts []string
	if reason != "" {
		parts = append(parts, reason)
	}
	status := audit.StatusOK
	if r := info.result; r != nil {
		parts = append(parts, fmt.Sprintf("exit=%d", r.ExitCode))
		if r.Signal != "" {
			parts = append(parts, "signal="+r.Signal)
		}
		for _, v := range r.Violations {
			parts = append(parts, "violation="+string(v.Code))
		}
		if r.ExitCode != 0 && reason == "" {
			status = audit.StatusError
		}
	}
	if info.err != nil {
		parts = append(parts, "error="+info.err.Error())
		if reason == "" {
			status = audit.StatusError
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "connection closed")
	}
	return strings.Join(parts, " "), status
}

// killViolations are sandbox outcomes that count against the plugin.
var killViolations = map[sandbox.ViolationCode]bool{
	sandbox.ViolationSeccompKill: true, sandbox.ViolationOOM: true, sandbox.ViolationPidsExhausted: true,
	sandbox.ViolationFileSize: true, sandbox.ViolationCPUTimeout: true, sandbox.ViolationMemoryExceeded: true,
}

func (s *server) recordSandboxViolations(ctx context.Context, info exitInfo) {
	if info.result == nil {
		return
	}
	for _, v := range info.result.Violations {
		if killViolations[v.Code] {
			s.m.violation(ctx, s.cfg.Name, "", violation.SandboxViolation, store.SeverityHigh,
				fmt.Sprintf("server process: %s %s", v.Code, v.Detail))
		}
	}
}

// sync lists the server's tools, pins them and offers the accepted ones;
// it returns how many are offered.
func (s *server) sync(ctx context.Context, c *conn) int {
	lctx, cancel := context.WithTimeout(ctx, s.m.cfg.StartTimeout)
	defer cancel()
	var upstream []*mcp.Tool
	var cursor string
	for {
		res, err := c.session.ListTools(lctx, &mcp.ListToolsParams{Cursor: cursor})
		if err != nil {
			s.m.deps.Logger.Warn("tools/list of upstream server failed", "server", s.cfg.Name, "err", err)
			return len(s.status().Tools)
		}
		upstream = append(upstream, res.Tools...)
		if res.NextCursor == "" || len(upstream) >= maxTools {
			break
		}
		cursor = res.NextCursor
	}
	if len(upstream) > maxTools {
		upstream = upstream[:maxTools]
	}
	var defs []pin.Definition
	byName := map[string]*mcp.Tool{}
	var rejected []string
	for _, t := range upstream {
		if t == nil {
			continue
		}
		if _, dup := byName[t.Name]; dup || !tool.ValidName(qualified(s.cfg.Name, t.Name)) || strings.Contains(t.Name, "__") {
			rejected = append(rejected, fmt.Sprintf("%.80q: invalid or duplicate name", t.Name))
			continue
		}
		if !s.allowed(t.Name) {
			continue // filtered by configuration: not pinned, not offered
		}
		d, err := definitionOf(t)
		if err != nil {
			rejected = append(rejected, fmt.Sprintf("%s: %v", t.Name, err))
			continue
		}
		byName[t.Name] = t
		defs = append(defs, d)
	}
	for _, r := range rejected {
		s.m.emit(ctx, &audit.Event{Type: audit.PluginToolRejected, Server: s.cfg.Name, Status: audit.StatusRefused,
			Decision: audit.DecisionDeny, Detail: r})
	}
	verdicts, err := s.m.deps.Pins.Observe(ctx, s.cfg.Name, defs)
	if err != nil {
		// Fail closed: without the pin store nothing new is offered.
		s.m.deps.Logger.Error("pinning upstream tools failed; offering none", "server", s.cfg.Name, "err", err)
		_ = s.m.deps.Registry.SetServerTools(s.cfg.Name, nil)
		s.setOffered(nil, nil)
		return 0
	}
	var tools []tool.Tool
	var offered, withheld []string
	for _, v := range verdicts {
		s.noteVerdict(ctx, v)
		t := byName[v.Tool]
		if !v.Allowed || t == nil {
			withheld = append(withheld, v.Tool)
			continue
		}
		pt, err := s.newTool(t)
		if err != nil {
			s.m.emit(ctx, &audit.Event{Type: audit.PluginToolRejected, Server: s.cfg.Name, Tool: qualified(s.cfg.Name, v.Tool),
				Status: audit.StatusRefused, Decision: audit.DecisionDeny, Detail: err.Error()})
			continue
		}
		tools = append(tools, pt)
		offered = append(offered, pt.def.Name)
	}
	if err := s.m.deps.Registry.SetServerTools(s.cfg.Name, tools); err != nil {
		s.m.deps.Logger.Warn("some upstream tools were not registered", "server", s.cfg.Name, "err", err)
		s.m.emit(ctx, &audit.Event{Type: audit.PluginToolRejected, Server: s.cfg.Name, Status: audit.StatusRefused,
			Decision: audit.DecisionDeny, Detail: err.Error()})
	}
	s.setOffered(offered, withheld)
	return len(offered)
}

func (s *server) setOffered(offered, withheld []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offered, s.withheld = offered, withheld
}

// noteVerdict audits, alerts and counts a changed or flagged definition
// (once per change: a definition still pending from before is quiet).
func (s *server) noteVerdict(ctx context.Context, v pin.Verdict) {
	name := qualified(s.cfg.Name, v.Tool)
	switch v.Change {
	case pin.ChangeChanged:
		detail := "definition changed; withheld until accepted"
		s.m.emit(ctx, &audit.Event{Type: audit.PluginToolsChanged, Server: s.cfg.Name, Tool: name,
			Status: audit.StatusRefused, Decision: audit.DecisionDeny, Detail: detail + findingsDetail(v.Findings)})
		s.m.alert(ctx, "plugin.tools.changed", "HIGH", name, "upstream tool definition changed (possible rug pull); `portcullis plugins diff "+s.cfg.Name+"/"+v.Tool+"`")
		s.m.violation(ctx, s.cfg.Name, name, violation.DefinitionChanged, store.SeverityHigh, detail)
	case pin.ChangeFlagged:
		detail := "poisoning scan flagged the definition; withheld until accepted"
		s.m.emit(ctx, &audit.Event{Type: audit.PluginToolFlagged, Server: s.cfg.Name, Tool: name,
			Status: audit.StatusRefused, Decision: audit.DecisionDeny, Detail: detail + findingsDetail(v.Findings)})
		s.m.alert(ctx, "plugin.tool.flagged", "HIGH", name, "upstream tool description looks poisoned; `portcullis plugins inspect "+s.cfg.Name+"/"+v.Tool+"`")
	}
}

func findingsDetail(fs []pin.Finding) string {
	if len(fs) == 0 {
		return ""
	}
	rules := make([]string, 0, len(fs))
	for _, f := range fs {
		rules = append(rules, f.Rule+"@"+f.Field)
	}
	return "; findings: " + strings.Join(rules, ", ")
}

// allowed applies the server's tools.allow / tools.deny (deny wins).
func (s *server) allowed(name string) bool {
	return matchAny(s.cfg.Tools.Allow, name) && !matchAny(s.cfg.Tools.Deny, name)
}

// globMatch is path.Match with malformed patterns matching nothing.
func globMatch(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// definitionOf converts an upstream tool to the pinned form.
func definitionOf(t *mcp.Tool) (pin.Definition, error) {
	d := pin.Definition{Name: t.Name, Title: t.Title, Description: t.Description}
	var err error
	if d.InputSchema, err = rawJSON(t.InputSchema); err != nil {
		return d, fmt.Errorf("inputSchema: %w", err)
	}
	if d.OutputSchema, err = rawJSON(t.OutputSchema); err != nil {
		return d, fmt.Errorf("outputSchema: %w", err)
	}
	if t.Annotations != nil {
		if d.Annotations, err = json.Marshal(t.Annotations); err != nil {
			return d, fmt.Errorf("annotations: %w", err)
		}
	}
	return d, nil
}

func rawJSON(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	if r, ok := v.(json.RawMessage); ok {
		return r, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return nil, nil
	}
	return b, nil
}

// errNotConnected is wrapped in ErrUnavailable for calls while down.
var errNotConnected = errors.New("not connected")

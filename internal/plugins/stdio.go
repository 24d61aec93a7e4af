package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins/egress"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/violation"
)

// serverWallTime and serverCPUTime replace the level's per-run limits for
// a long-lived server: it runs until it dies or is stopped (memory, pids,
// file size and open files keep the level's bounds).
const (
	serverWallTime = 100 * 365 * 24 * time.Hour
	serverCPUTime  = 24 * time.Hour
)

// connect starts the server (stdio) or opens the session (HTTP).
func (s *server) connect(ctx context.Context) (*conn, error) {
	if s.cfg.URL != "" {
		return s.connectHTTP(ctx)
	}
	return s.connectStdio(ctx)
}

// spec builds the sandbox spec of a stdio server: only the declared mounts,
// the level's limits (without a wall-clock bound), a complete environment
// with ${secret:NAME} resolved, and the egress proxy as the only network
// where the level and the allow-list grant one.
func (s *server) spec(ctx context.Context, proxyAddr string) (*sandbox.Spec, []string, error) {
	argv := append([]string{}, s.cfg.Command...)
	if !filepath.IsAbs(argv[0]) {
		p, err := exec.LookPath(argv[0])
		if err != nil {
			return nil, nil, fmt.Errorf("command %q not found on PATH", argv[0])
		}
		if argv[0], err = filepath.Abs(p); err != nil {
			return nil, nil, err
		}
	}
	env, secretValues, err := s.environment(ctx)
	if err != nil {
		return nil, nil, err
	}
	limits := s.level.Defaults()
	limits.WallTime, limits.CPUTime = serverWallTime, serverCPUTime
	if s.cfg.MemoryBytes > 0 {
		limits.MemoryBytes = s.cfg.MemoryBytes
	}
	if s.cfg.Pids > 0 {
		limits.Pids = s.cfg.Pids
	}
	spec := &sandbox.Spec{Argv: argv, Env: env, Limits: limits, Level: s.level,
		Network: sandbox.Network{Mode: sandbox.NetworkNone}}
	for _, m := range s.cfg.Mounts {
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: m.Source, Target: m.Target, Writable: m.Writable()})
	}
	if proxyAddr != "" {
		spec.Network = sandbox.Network{Mode: sandbox.NetworkProxy, ProxyAddr: proxyAddr}
	}
	return spec, secretValues, spec.Validate()
}

// environment returns the server's environment: its configured variables
// with secrets resolved, plus PATH and HOME defaults. secretValues are the
// resolved values (to redact from its stderr).
func (s *server) environment(ctx context.Context) (env, secretValues []string, err error) {
	vars := map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"}
	for k, v := range s.cfg.Env {
		var resolveErr error
		vars[k] = secretRef.ReplaceAllStringFunc(v, func(ref string) string {
			name := secretRef.FindStringSubmatch(ref)[1]
			if s.m.deps.Secrets == nil {
				resolveErr = fmt.Errorf("env %s: secret %q: no secrets store", k, name)
				return ""
			}
			val, err := s.m.deps.Secrets.Get(ctx, name, "")
			if err != nil {
				// The error names the secret, never a value.
				resolveErr = fmt.Errorf("env %s: secret %q: %w", k, name, err)
				return ""
			}
			secretValues = append(secretValues, string(val))
			return string(val)
		})
		if resolveErr != nil {
			return nil, nil, resolveErr
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, secretValues, nil
}

// proxyConfig is the egress configuration of the server's level, or ok
// false when it gets no network at all.
func (s *server) proxyConfig() (egress.Config, bool) {
	c := egress.Config{Server: s.cfg.Name, Allow: s.cfg.Network.Allow, Logger: s.m.deps.Logger,
		OnEvent: s.egressEvent}
	switch s.level {
	case sandbox.LevelMaximum:
		return c, false
	case sandbox.LevelStrict:
		return c, len(c.Allow) > 0
	case sandbox.LevelStandard:
		c.Wildcards = true
		return c, len(c.Allow) > 0
	default: // minimal: any public destination, logged
		c.Wildcards, c.AnyHost = true, true
		return c, true
	}
}

// egressEvent audits each proxied connection and counts refusals as
// violations of the plugin.
func (s *server) egressEvent(ev egress.Event) {
	ctx := context.Background()
	target := fmt.Sprintf("host=%q port=%s", ev.Host, ev.Port)
	if ev.Allowed {
		s.m.emit(ctx, &audit.Event{Type: audit.EgressConnect, Server: s.cfg.Name, Status: audit.StatusOK,
			Decision: audit.DecisionAllow, Duration: ev.Duration,
			Detail: fmt.Sprintf("%s method=%s addr=%s up=%d down=%d", target, ev.Method, ev.Addr, ev.BytesUp, ev.BytesDown)})
		return
	}
	s.m.emit(ctx, &audit.Event{Type: audit.EgressRefused, Server: s.cfg.Name, Status: audit.StatusRefused,
		Decision: audit.DecisionDeny, Error: ev.Reason, Detail: fmt.Sprintf("%s method=%s %s", target, ev.Method, ev.Detail)})
	s.m.violation(ctx, s.cfg.Name, "", violation.EgressRefused, store.SeverityHigh, fmt.Sprintf("egress refused: %s %s", target, ev.Reason))
}

// connectStdio starts the server in the sandbox and initializes an MCP
// session over its standard streams.
func (s *server) connectStdio(ctx context.Context) (*conn, error) {
	var proxy *egress.Proxy
	proxyAddr := ""
	if pc, ok := s.proxyConfig(); ok {
		p, err := egress.New(pc)
		if err != nil {
			return nil, fmt.Errorf("egress proxy: %w", err)
		}
		if proxyAddr, err = p.Listen(); err != nil {
			p.Close()
			return nil, fmt.Errorf("egress proxy: %w", err)
		}
		proxy = p
	}
	spec, secretValues, err := s.spec(ctx, proxyAddr)
	if err != nil {
		if proxy != nil {
			proxy.Close()
		}
		return nil, err
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	stderr := newStderrLog(s.m.deps.Logger.With("server", s.cfg.Name), s.m.cfg.StderrLines, secretValues)
	spec.Stdio = &sandbox.Stdio{Stdin: inR, Stdout: outW, Stderr: stderr}

	runCtx, kill := context.WithCancel(ctx)
	done := make(chan struct{})
	var info exitInfo
	go func() {
		res, err := s.m.deps.Runtime.Run(runCtx, spec)
		stderr.flush()
		info = exitInfo{err: err, result: res}
		outW.CloseWithError(io.EOF)
		inR.Close()
		if proxy != nil {
			proxy.Close()
		}
		close(done)
	}()
	stop := func() {
		kill()
		inW.Close()
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "portcullis", Version: s.m.cfg.Version},
		&mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { s.resync() }})
	sctx, cancel := context.WithTimeout(ctx, s.m.cfg.StartTimeout)
	defer cancel()
	type result struct {
		cs  *mcp.ClientSession
		err error
	}
	ch := make(chan result, 1)
	go func() {
		cs, err := client.Connect(sctx, &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
		ch <- result{cs, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-done:
		r = <-ch
		if r.err == nil {
			r.err = fmt.Errorf("server exited during start")
		}
	}
	if r.err != nil {
		stop()
		<-done
		detail, _ := s.describeExit(info, "")
		s.recordSandboxViolations(ctx, info)
		return nil, fmt.Errorf("initialize: %w (%s)", r.err, detail)
	}
	cs := r.cs
	return &conn{session: cs, done: done, exit: func() exitInfo { return info },
		stop: func() { stop(); cs.Close() }}, nil
}

// stderrLog logs a server's stderr line by line, bounded: at most limit
// lines a minute (the rest are counted), each cut at 1 KiB, with any
// resolved secret value replaced by [REDACTED].
type stderrLog struct {
	log     interface{ Info(string, ...any) }
	limit   int
	secrets []string
	longest int // bytes of the longest secret

	mu      sync.Mutex
	buf     []byte
	window  time.Time
	n       int
	dropped int
}

const maxStderrLine = 1024

func newStderrLog(log interface{ Info(string, ...any) }, limit int, secrets []string) *stderrLog {
	l := &stderrLog{log: log, limit: limit}
	keep := func(v string) {
		if len(v) >= 4 { // shorter values would redact ordinary text
			l.secrets = append(l.secrets, v)
			l.longest = max(l.longest, len(v))
		}
	}
	for _, v := range secrets {
		keep(v)
		if strings.ContainsAny(v, "\r\n") {
			// Logged line by line, a multi-line secret (a PEM key, a JSON
			// credential) never appears whole: redact each of its lines.
			for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
				keep(line)
			}
		}
	}
	// Longest first, so that a line of a secret never breaks up a longer
	// secret that contains it before that one is replaced.
	slices.SortStableFunc(l.secrets, func(a, b string) int { return len(b) - len(a) })
	return l
}

// redact replaces every whole occurrence of a secret in b.
func (l *stderrLog) redact(b []byte) []byte {
	for _, v := range l.secrets {
		b = bytes.ReplaceAll(b, []byte(v), []byte("[REDACTED]"))
	}
	return b
}

// Write implements io.Writer; it never fails (a server's stderr must not
// block or kill it).
func (l *stderrLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			if len(l.buf) > 4*maxStderrLine {
				// An endless line: emit what we have, but keep back the
				// last longest-1 bytes, where a secret may have started:
				// cut there, its two halves would escape redaction.
				// (Redaction may shrink the buffer below what must be
				// kept: then nothing is safe to emit yet.)
				red := l.redact(l.buf)
				keep := min(max(l.longest-1, 0), len(red))
				if keep < len(red) {
					l.lineLocked(red[:len(red)-keep])
				}
				l.buf = append(l.buf[:0], red[len(red)-keep:]...)
			}
			return len(p), nil
		}
		l.lineLocked(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *stderrLog) lineLocked(line []byte) {
	now := time.Now()
	if now.Sub(l.window) >= time.Minute {
		if l.dropped > 0 {
			l.log.Info("upstream server stderr lines dropped", "count", l.dropped)
		}
		l.window, l.n, l.dropped = now, 0, 0
	}
	if l.n >= l.limit {
		l.dropped++
		return
	}
	l.n++
	text := string(l.redact(line))
	if len(text) > maxStderrLine {
		text = text[:maxStderrLine] + "…"
	}
	l.log.Info("upstream server stderr", "line", strings.ToValidUTF8(text, "?"))
}

func (l *stderrLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.lineLocked(l.buf)
		l.buf = nil
	}
	if l.dropped > 0 {
		l.log.Info("upstream server stderr lines dropped", "count", l.dropped)
		l.dropped = 0
	}
}

// secretRef matches ${secret:NAME} (config.SecretRefs).
var secretRef = config.SecretRefPattern

// Package gateway is the heart of Portcullis: the tools/call pipeline that
// every call passes, whatever transport it came from and whichever tool it
// names. The stages run in one fixed order (see stages), outermost first:
//
//	resolve → quarantine → authorize → validate → policy → flow → limits →
//	approval → audit start → execute → audit end
//
// authorize is the name-level decision (role grants, key scopes, Cedar
// policies without conditions); policy evaluates the Cedar conditions on
// the validated arguments, the time and the caller's recent denials.
// Every refusal is audited with a stable reason code and answered with a
// generic message. No tool runs unless its tool.call.start record is
// durable (fail closed). Later stages (quarantine, argument guards, rate
// limits, approval) slot into the same list.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/flow"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/tool"
)

// Authorizer decides access (implemented by *policy.Engine; see there for
// the semantics of each method).
type Authorizer interface {
	// DecideRequest is the name-level decision (tools/list, authorize).
	DecideRequest(r *policy.Request) policy.Decision
	// Evaluate is the full decision with validated arguments.
	Evaluate(r *policy.Request) policy.Decision
	// Conditional reports whether conditions can apply to (action, tool).
	Conditional(action policy.Action, resource string) bool
	// Mode is enforce or report.
	Mode() policy.Mode
}

// Emitter records audit events durably (implemented by *audit.Writer).
type Emitter interface {
	Emit(ctx context.Context, e *audit.Event) error
}

// Config configures a Gateway.
type Config struct {
	// CallTimeout is the wall-clock bound of a call whose tool declares no
	// Timeout of its own.
	CallTimeout time.Duration
	// MaxArgBytes caps the raw arguments of one call.
	MaxArgBytes int
}

// Deps are the Gateway's collaborators; all are required except Now.
type Deps struct {
	Policy   Authorizer
	Audit    Emitter
	Redactor *audit.Redactor
	Logger   *slog.Logger
	Now      func() time.Time
	// Guard applies quarantine, quotas, rate and concurrency limits and
	// accounts violations; nil disables them.
	Guard Guard
	// Approvals holds calls for a human's approval; nil: none is held.
	Approvals Approvals
	// Flows applies information-flow rules to the taint a principal gathers
	// (in every session and statelessly); nil: none.
	Flows *flow.Tracker
}

// Gateway runs the pipeline. Safe for concurrent use.
type Gateway struct {
	cfg     Config
	deps    Deps
	denials *denialCounter

	mu    sync.RWMutex
	tools map[string]*entry

	// Shutdown: base is cancelled when draining gives up; closing refuses
	// new calls; inflight counts running calls.
	base     context.Context
	cancel   context.CancelFunc
	closing  chan struct{}
	closeMu  sync.Mutex
	inflight sync.WaitGroup
}

type entry struct {
	tool   tool.Tool
	def    tool.Definition
	schema *jsonschema.Resolved
	attrs  *policy.ToolAttrs
}

// New returns a Gateway with no tools.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if deps.Policy == nil || deps.Audit == nil || deps.Redactor == nil || deps.Logger == nil {
		return nil, errors.New("gateway: missing dependency (policy, audit, redactor and logger are required)")
	}
	if cfg.CallTimeout <= 0 {
		return nil, errors.New("gateway: CallTimeout must be positive")
	}
	if cfg.MaxArgBytes <= 0 {
		cfg.MaxArgBytes = 16 << 20
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	base, cancel := context.WithCancel(context.Background())
	return &Gateway{
		cfg:     cfg,
		deps:    deps,
		denials: newDenialCounter(deps.Now),
		tools:   map[string]*entry{},
		base:    base,
		cancel:  cancel,
		closing: make(chan struct{}),
	}, nil
}

// Register adds a tool. Its name must be valid and unused, and its input
// schema must resolve; a schema-less tool is refused (every call is
// validated before anything reads its arguments).
func (g *Gateway) Register(t tool.Tool) error {
	e, err := newEntry(t)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.tools[e.def.Name]; dup {
		return fmt.Errorf("gateway: tool %s registered twice", e.def.Name)
	}
	g.tools[e.def.Name] = e
	return nil
}

func newEntry(t tool.Tool) (*entry, error) {
	def := t.Definition()
	if !tool.ValidName(def.Name) {
		return nil, fmt.Errorf("gateway: invalid tool name %q", def.Name)
	}
	if def.InputSchema == nil {
		return nil, fmt.Errorf("gateway: tool %s has no input schema", def.Name)
	}
	if def.Sensitivity < tool.Low || def.Sensitivity > tool.Critical {
		return nil, fmt.Errorf("gateway: tool %s has no sensitivity level", def.Name)
	}
	rs, err := def.InputSchema.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("gateway: tool %s: input schema: %w", def.Name, err)
	}
	return &entry{tool: t, def: def, schema: rs, attrs: &policy.ToolAttrs{
		Server: def.Server, Sensitivity: def.Sensitivity.String(), Labels: slices.Clone(def.Labels)}}, nil
}

// SetServerTools replaces, in one step, every tool of the upstream server
// named server with tools (each must have Definition().Server == server and
// the name prefix "<server>__"). Calls already running keep the tool they
// resolved; later calls see the new set. An empty list withdraws the
// server's tools (it is down, or they are withheld). A tool that fails
// Register's checks is returned in the error (errors.Join) and left out;
// the others are installed.
func (g *Gateway) SetServerTools(server string, tools []tool.Tool) error {
	if server == "" {
		return errors.New("gateway: SetServerTools needs a server name")
	}
	var errs []error
	next := map[string]*entry{}
	for _, t := range tools {
		e, err := newEntry(t)
		switch {
		case err != nil:
			errs = append(errs, err)
		case e.def.Server != server || !strings.HasPrefix(e.def.Name, server+"__"):
			errs = append(errs, fmt.Errorf("gateway: tool %s does not belong to server %s", e.def.Name, server))
		default:
			next[e.def.Name] = e
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, e := range g.tools {
		if e.def.Server == server {
			delete(g.tools, name)
		}
	}
	for name, e := range next {
		if old, dup := g.tools[name]; dup {
			errs = append(errs, fmt.Errorf("gateway: tool %s clashes with a tool of %q", name, old.def.Server))
			continue
		}
		g.tools[name] = e
	}
	return errors.Join(errs...)
}

// ListTools returns the definitions of the tools p may call, sorted by
// name: the same name-level decision that tools/call makes first, so a
// client never sees a tool it would be refused by name. (A tool whose
// Cedar conditions forbid some arguments is listed.)
func (g *Gateway) ListTools(p *principal.Principal) []tool.Definition {
	g.mu.RLock()
	names := slices.Sorted(maps.Keys(g.tools))
	out := make([]tool.Definition, 0, len(names))
	report := g.deps.Policy.Mode() == policy.ModeReport
	for _, n := range names {
		e := g.tools[n]
		d := g.deps.Policy.DecideRequest(&policy.Request{Principal: p, Action: policy.ActionCall, Resource: n, Tool: e.attrs})
		if d.Allow || report && d.ByPolicy {
			out = append(out, e.def)
		}
	}
	g.mu.RUnlock()
	return out
}

func (g *Gateway) lookup(name string) *entry {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.tools[name]
}

// cancelGrace bounds how long Shutdown waits, after cancelling, for calls
// to return: a tool that ignores cancellation cannot hold shutdown hostage.
var cancelGrace = 5 * time.Second

// Shutdown stops accepting calls and waits for in-flight calls to finish
// until ctx is done; then it cancels the remaining calls and waits up to
// cancelGrace for them to return (each records its tool.call.end). It
// returns ctx.Err() if calls had to be cancelled.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.closeMu.Lock()
	select {
	case <-g.closing:
	default:
		close(g.closing)
	}
	g.closeMu.Unlock()
	done := make(chan struct{})
	go func() { g.inflight.Wait(); close(done) }()
	select {
	case <-done:
		g.cancel()
		return nil
	case <-ctx.Done():
		g.cancel()
		select {
		case <-done:
		case <-time.After(cancelGrace):
			g.deps.Logger.Error("calls still running after cancellation; shutting down without them")
		}
		return ctx.Err()
	}
}

// enter registers an in-flight call unless the gateway is closing.
func (g *Gateway) enter() bool {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	select {
	case <-g.closing:
		return false
	default:
		g.inflight.Add(1)
		return true
	}
}

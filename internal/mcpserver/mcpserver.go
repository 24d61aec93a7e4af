// Package mcpserver connects the gateway to the official MCP Go SDK: it
// builds an *mcp.Server whose receiving middleware answers tools/list and
// tools/call from the gateway and refuses every method it does not know
// (deny by default). The SDK owns the protocol (versions 2026-07-28 and
// 2025-11-25, lifecycle, transports); the gateway owns every decision.
package mcpserver

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
)

// Identity is who sent a request, as established by the transport.
type Identity struct {
	Principal  *principal.Principal
	RequestID  string
	RemoteAddr string
}

// identityKey is the TokenInfo.Extra key carrying an Identity.
const identityKey = "portcullis.identity"

// TokenInfo wraps an authenticated identity for the SDK. The SDK binds
// each 2025-11-25 session to TokenInfo.UserID and refuses the session to
// any other user (session hijacking, MCP security best practices).
func TokenInfo(id Identity, expires time.Time) *auth.TokenInfo {
	return &auth.TokenInfo{
		UserID:     id.Principal.ID(),
		Expiration: expires,
		Extra:      map[string]any{identityKey: id},
	}
}

// HTTPIdentity reads the Identity that the HTTP layer attached to req.
func HTTPIdentity(req mcp.Request) (Identity, bool) {
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return Identity{}, false
	}
	id, ok := extra.TokenInfo.Extra[identityKey].(Identity)
	return id, ok && id.Principal != nil
}

// FixedIdentity returns an identify function for a transport with one
// principal (stdio); each request gets a fresh request id.
func FixedIdentity(p *principal.Principal) func(mcp.Request) (Identity, bool) {
	return func(mcp.Request) (Identity, bool) {
		return Identity{Principal: p, RequestID: NewRequestID(), RemoteAddr: "stdio"}, true
	}
}

// NewRequestID returns a random request id "req_<26 base32 chars>".
func NewRequestID() string { return "req_" + audit.SortableID(time.Now()) }

// Options configures New.
type Options struct {
	Gateway  *gateway.Gateway
	Identify func(mcp.Request) (Identity, bool)
	Audit    gateway.Emitter
	Sessions interface {
		RecordSession(ctx context.Context, s store.Session) error
	}
	Logger  *slog.Logger
	Version string
	Now     func() time.Time
}

// allowedMethods are passed to the SDK; every other method is refused.
var allowedMethods = map[string]bool{
	"initialize":                true,
	"notifications/initialized": true,
	"notifications/cancelled":   true,
	"notifications/progress":    true,
	"ping":                      true,
	"server/discover":           true,
	"subscriptions/listen":      true,
	"logging/setLevel":          true,
}

// New returns an MCP server backed by the gateway.
func New(o Options) (*mcp.Server, error) {
	if o.Gateway == nil || o.Identify == nil || o.Audit == nil || o.Sessions == nil || o.Logger == nil {
		return nil, errors.New("mcpserver: missing option (gateway, identify, audit, sessions and logger are required)")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "portcullis", Title: "Portcullis MCP gateway", Version: o.Version},
		&mcp.ServerOptions{
			Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}},
			Logger:       SDKLogger(o.Logger),
			Instructions: "Portcullis gateway: every tool call is authenticated, authorized, audited and sandboxed.",
		})
	s.AddReceivingMiddleware(o.middleware)
	return s, nil
}

func (o Options) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch method {
		case "tools/list":
			id, ok := o.Identify(req)
			if !ok {
				return nil, errUnauthenticated
			}
			return o.listTools(id), nil
		case "tools/call":
			id, ok := o.Identify(req)
			if !ok {
				return nil, errUnauthenticated
			}
			params, ok := req.GetParams().(*mcp.CallToolParamsRaw)
			if !ok || params == nil {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid params"}
			}
			res := o.Gateway.Call(ctx, gateway.CallRequest{
				Principal:  id.Principal,
				Tool:       params.Name,
				Args:       params.Arguments,
				Session:    sessionID(req),
				RequestID:  id.RequestID,
				RemoteAddr: id.RemoteAddr,
			})
			return toCallToolResult(res), nil
		case "initialize":
			res, err := next(ctx, method, req)
			if err == nil {
				o.recordSession(ctx, req)
			}
			return res, err
		}
		if allowedMethods[method] {
			return next(ctx, method, req)
		}
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: "method not found"}
	}
}

var errUnauthenticated = &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: reason.Message(reason.Unauthenticated)}

func sessionID(req mcp.Request) string {
	if s := req.GetSession(); s != nil {
		return s.ID()
	}
	return ""
}

func (o Options) recordSession(ctx context.Context, req mcp.Request) {
	id, ok := o.Identify(req)
	sid := sessionID(req)
	if !ok || sid == "" {
		return
	}
	s := store.Session{ID: sid, Principal: id.Principal.Name, CreatedAt: o.Now()}
	if p, ok := req.GetParams().(*mcp.InitializeParams); ok && p != nil {
		s.ProtocolVersion = p.ProtocolVersion
		if p.ClientInfo != nil {
			s.ClientName = p.ClientInfo.Name
		}
	}
	if err := o.Sessions.RecordSession(ctx, s); err != nil {
		o.Logger.Warn("record session failed", "err", err)
	}
	if err := o.Audit.Emit(ctx, &audit.Event{
		Type: audit.SessionCreate, Principal: id.Principal.Name, Roles: id.Principal.Roles,
		Session: sid, RequestID: id.RequestID, RemoteAddr: id.RemoteAddr, Status: audit.StatusOK,
		Detail: "protocol " + s.ProtocolVersion + " client " + s.ClientName,
	}); err != nil {
		o.Logger.Warn("audit of session creation failed", "err", err)
	}
}

func (o Options) listTools(id Identity) *mcp.ListToolsResult {
	defs := o.Gateway.ListTools(id.Principal)
	out := &mcp.ListToolsResult{Tools: make([]*mcp.Tool, 0, len(defs))}
	for _, d := range defs {
		destructive := d.Destructive
		out.Tools = append(out.Tools, &mcp.Tool{
			Name:        d.Name,
			Title:       d.Title,
			Description: d.Description,
			InputSchema: d.InputSchema,
			Annotations: &mcp.ToolAnnotations{
				Title:           d.Title,
				ReadOnlyHint:    d.ReadOnly,
				DestructiveHint: &destructive,
			},
		})
	}
	return out
}

// toCallToolResult renders a gateway result. Failures carry their reason
// code in structuredContent.code (DESIGN §2).
func toCallToolResult(r *tool.Result) *mcp.CallToolResult {
	out := &mcp.CallToolResult{
		Content: []mcp.Content{&mcp.TextContent{Text: r.Text}},
		IsError: r.IsError,
	}
	structured := r.Structured
	if r.IsError {
		s := make(map[string]any, len(structured)+2)
		for k, v := range structured {
			s[k] = v
		}
		s["code"] = string(r.Code)
		if _, ok := s["message"]; !ok {
			s["message"] = reason.Message(r.Code)
		}
		structured = s
	}
	if structured != nil {
		out.StructuredContent = structured
	}
	return out
}

// SDKLogger returns l restricted to warnings and errors: the SDK logs
// every connection at info level, which on a stateless endpoint is one
// line per request.
func SDKLogger(l *slog.Logger) *slog.Logger {
	return slog.New(minLevel{l.Handler(), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}

func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }

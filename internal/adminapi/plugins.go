package adminapi

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/principal"
)

// PluginAdmin is the upstream-server side (implemented by *plugins.Manager).
type PluginAdmin interface {
	// Status returns every configured server's state, by name.
	Status() []plugins.Status
	// Pins returns the pinned tool definitions of server ("" for all),
	// ordered by server then tool; an unknown server is
	// plugins.ErrUnknownServer.
	Pins(ctx context.Context, server string) ([]pin.Record, error)
	// Pin returns the pin of one tool (upstream name): errors
	// plugins.ErrUnknownServer and pin.ErrNotFound, wrapped.
	Pin(ctx context.Context, server, tool string) (pin.Record, error)
	// Accept makes the pending definition of server's tool the accepted
	// one, by admin by, audits plugin.tool.accept and offers the tool
	// again. hash must be the pending fingerprint the admin inspected (""
	// accepts whatever is pending). Errors: plugins.ErrUnknownServer,
	// pin.ErrNotFound, pin.ErrInvalid (nothing pending, a malformed
	// definition) and pin.ErrStale wrapped in pin.ErrInvalid (the pending
	// definition is not the one inspected).
	Accept(ctx context.Context, server, tool, hash, by string) (pin.Record, error)
}

var _ PluginAdmin = (*plugins.Manager)(nil)

// AcceptRequest is the body of POST
// /admin/v1/plugins/{server}/tools/{tool}/accept.
type AcceptRequest struct {
	// Hash is the pending fingerprint the admin inspected ("sha256:" and
	// 64 lowercase hex digits); "" accepts whatever is pending.
	Hash string `json:"hash"`
}

// PluginsView is the answer of GET /admin/v1/plugins: every configured
// server's state and every pinned tool definition (both lists empty, not
// null, when there are none).
type PluginsView struct {
	Servers []plugins.Status `json:"servers"`
	Tools   []pin.Record     `json:"tools"`
}

// PluginToolView is one pinned tool as GET
// /admin/v1/plugins/{server}/tools/{tool} shows it.
type PluginToolView struct {
	pin.Record
	// Diff is pin.Diff(Definition, PendingDefinition) when a definition
	// is pending and one was accepted before; "" otherwise (a tool
	// flagged on first sight has nothing to compare with).
	Diff string `json:"diff,omitempty"`
}

var (
	// pluginServerName is the shape of a configured server name
	// (config.ServerConfig.Name).
	pluginServerName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// pluginToolName is the shape of an MCP tool name (MCP 2025-11-25,
	// server/tools: 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.').
	pluginToolName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	// pinHash is the shape of a pin fingerprint (pin.Fingerprint).
	pinHash = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// pluginsAvailable answers 501 and returns false when no upstream servers
// are managed.
func (a *API) pluginsAvailable(w http.ResponseWriter) bool {
	if a.d.Plugins == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "upstream servers are not available")
		return false
	}
	return true
}

// pluginPath returns the validated server and tool path values.
func pluginPath(r *http.Request) (server, tool string, err error) {
	server, tool = r.PathValue("server"), r.PathValue("tool")
	if !pluginServerName.MatchString(server) {
		return "", "", badRequest("server must match %s", pluginServerName)
	}
	if !pluginToolName.MatchString(tool) {
		return "", "", badRequest("tool must be 1-128 characters of A-Z, a-z, 0-9, '_', '-' and '.'")
	}
	return server, tool, nil
}

// pluginError maps the errors of PluginAdmin to answers; others pass.
func pluginError(err error, server, tool string) error {
	switch {
	case errors.Is(err, plugins.ErrUnknownServer):
		return notFound("no upstream server %s", server)
	case errors.Is(err, pin.ErrNotFound):
		return notFound("no pinned tool %s/%s", server, tool)
	case errors.Is(err, pin.ErrStale):
		return conflict("definition changed since inspected; inspect again")
	case errors.Is(err, pin.ErrMalformed):
		return conflict("the pending definition of %s/%s is malformed and cannot be accepted", server, tool)
	case errors.Is(err, pin.ErrInvalid):
		return conflict("nothing pending to accept")
	}
	return err
}

func (a *API) listPlugins(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	if !a.pluginsAvailable(w) {
		return nil
	}
	servers := a.d.Plugins.Status()
	if servers == nil {
		servers = []plugins.Status{}
	}
	for i := range servers {
		if servers[i].Tools == nil {
			servers[i].Tools = []string{}
		}
		if servers[i].Withheld == nil {
			servers[i].Withheld = []string{}
		}
	}
	tools, err := a.d.Plugins.Pins(r.Context(), "")
	if err != nil {
		return err
	}
	if tools == nil {
		tools = []pin.Record{}
	}
	writeJSON(w, http.StatusOK, PluginsView{Servers: servers, Tools: tools})
	return nil
}

func (a *API) getPluginTool(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	if !a.pluginsAvailable(w) {
		return nil
	}
	server, tool, err := pluginPath(r)
	if err != nil {
		return err
	}
	rec, err := a.d.Plugins.Pin(r.Context(), server, tool)
	if err != nil {
		return pluginError(err, server, tool)
	}
	v := PluginToolView{Record: rec}
	if rec.Status == pin.Pending && len(rec.Definition) > 0 {
		v.Diff = pin.Diff(rec.Definition, rec.PendingDefinition)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// acceptPluginTool accepts the pending definition of a tool, as the
// principal; the plugin manager audits it (plugin.tool.accept).
func (a *API) acceptPluginTool(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	if !a.pluginsAvailable(w) {
		return nil
	}
	server, tool, err := pluginPath(r)
	if err != nil {
		return err
	}
	var req AcceptRequest
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := decodeBytes(b, &req); err != nil {
			return err
		}
	}
	if req.Hash != "" && !pinHash.MatchString(req.Hash) {
		return badRequest("hash must be sha256: and 64 lowercase hex digits, or empty")
	}
	rec, err := a.d.Plugins.Accept(r.Context(), server, tool, req.Hash, p.Name)
	if err != nil {
		return pluginError(err, server, tool)
	}
	writeJSON(w, http.StatusOK, rec)
	return nil
}

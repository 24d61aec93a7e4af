package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// pluginTool is one upstream tool as the gateway sees it.
type pluginTool struct {
	s        *server
	upstream string
	def      tool.Definition
}

var _ tool.Tool = (*pluginTool)(nil)

// newTool builds the gateway tool for an accepted upstream definition:
// name <server>__<tool>, the server's declared inputSchema (validated by
// the gateway before every call), sensitivity MEDIUM unless configured,
// labels from the configuration.
func (s *server) newTool(t *mcp.Tool) (*pluginTool, error) {
	raw, err := rawJSON(t.InputSchema)
	if err != nil || raw == nil {
		return nil, fmt.Errorf("tool %s: no usable inputSchema", t.Name)
	}
	var schema jsonschema.Schema
	if err := json.Unmarshal(raw, &schema); err != nil {
		return nil, fmt.Errorf("tool %s: inputSchema: %w", t.Name, err)
	}
	if schema.Type != "object" {
		return nil, fmt.Errorf("tool %s: inputSchema type must be object", t.Name)
	}
	sens := tool.Medium
	if v, ok := s.cfg.Tools.Sensitivity[t.Name]; ok {
		if sens, err = tool.ParseSensitivity(v); err != nil {
			return nil, err
		}
	}
	def := tool.Definition{
		Name:        qualified(s.cfg.Name, t.Name),
		Title:       t.Title,
		Description: t.Description,
		InputSchema: &schema,
		Sensitivity: sens,
		Timeout:     s.cfg.Timeout,
		Server:      s.cfg.Name,
		Labels:      append([]string{}, s.cfg.Tools.Labels[t.Name]...),
	}
	if a := t.Annotations; a != nil {
		def.ReadOnly = a.ReadOnlyHint
		def.Destructive = a.DestructiveHint != nil && *a.DestructiveHint
	}
	return &pluginTool{s: s, upstream: t.Name, def: def}, nil
}

// Definition implements tool.Tool.
func (t *pluginTool) Definition() tool.Definition { return t.def }

// Call implements tool.Tool: it forwards the validated arguments on the
// server's long-lived session. While the server is restarting the call
// fails with UNAVAILABLE.
func (t *pluginTool) Call(ctx context.Context, args json.RawMessage) (*tool.Result, error) {
	c := t.s.current()
	if c == nil {
		return nil, tool.Errorf(reason.Unavailable, fmt.Errorf("%w: %s: %w", ErrUnavailable, t.s.cfg.Name, errNotConnected),
			"upstream server %s is not available; retry later", t.s.cfg.Name)
	}
	session := c.session
	if c.sessionFor != nil {
		user := ""
		if p, ok := principal.FromContext(ctx); ok && p != nil {
			user = p.Name
		}
		var err error
		if session, err = c.sessionFor(ctx, user); err != nil {
			return nil, err
		}
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: t.upstream, Arguments: args})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // the gateway maps it to TIMEOUT or CANCELLED
		}
		return nil, tool.Errorf(reason.Unavailable, err, "upstream server %s failed to answer", t.s.cfg.Name)
	}
	return convertResult(res), nil
}

// convertResult turns an upstream result into the gateway's: text content
// joined, other content summarized, structuredContent kept when it is an
// object.
func convertResult(res *mcp.CallToolResult) *tool.Result {
	var b strings.Builder
	for i, c := range res.Content {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch v := c.(type) {
		case *mcp.TextContent:
			b.WriteString(v.Text)
		case *mcp.ImageContent:
			fmt.Fprintf(&b, "[image %s, %d bytes]", v.MIMEType, len(v.Data))
		case *mcp.AudioContent:
			fmt.Fprintf(&b, "[audio %s, %d bytes]", v.MIMEType, len(v.Data))
		case *mcp.ResourceLink:
			fmt.Fprintf(&b, "[resource %s]", v.URI)
		case *mcp.EmbeddedResource:
			if v.Resource != nil && v.Resource.Text != "" {
				b.WriteString(v.Resource.Text)
			} else if v.Resource != nil {
				fmt.Fprintf(&b, "[resource %s]", v.Resource.URI)
			}
		default:
			b.WriteString("[unsupported content]")
		}
	}
	out := &tool.Result{Text: b.String(), IsError: res.IsError}
	if res.IsError {
		out.Code = reason.ToolFailed
	}
	if res.StructuredContent != nil {
		if raw, err := json.Marshal(res.StructuredContent); err == nil {
			var m map[string]any
			if json.Unmarshal(raw, &m) == nil {
				out.Structured = m
			}
		}
	}
	return out
}

// errNoCredential: a per-user HTTP upstream and the caller has stored no
// credential.
var errNoCredential = errors.New("no credential stored for this user")

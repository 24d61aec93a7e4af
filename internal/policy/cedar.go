package policy

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// ErrInvalidPolicy is returned for Cedar policy files that do not parse.
var ErrInvalidPolicy = errors.New("invalid policy")

// Entity types Portcullis puts in front of Cedar policies:
//
//	User::"alice"        the principal; parents: its Role entities
//	Role::"developer"    a role
//	Tool::"read_file"    the resource of call and approve; attributes:
//	                     server (String), sensitivity (String "LOW"..."CRITICAL"),
//	                     labels (Set of String); parent: Server::"<server>"
//	Server::"notes"      a plugin server
//	AdminArea::"keys"    the resource of admin
//	Action::"call" | Action::"admin" | Action::"approve"
//
// The request context holds: args (the call's validated arguments as a
// record), url_host (the host of args.url, when there is one), now
// (datetime), hour (0-23) and weekday ("Mon".."Sun") in the configured
// time zone, and denials (how many calls of this principal were denied in
// the last hour).
const (
	TypeUser      = types.EntityType("User")
	TypeRole      = types.EntityType("Role")
	TypeTool      = types.EntityType("Tool")
	TypeServer    = types.EntityType("Server")
	TypeAdminArea = types.EntityType("AdminArea")
	TypeAction    = types.EntityType("Action")
)

// cedarPolicy is one loaded policy with what the index needs.
type cedarPolicy struct {
	id          cedar.PolicyID
	file        string
	policy      *cedar.Policy
	forbid      bool
	conditional bool   // has when/unless clauses
	tool        string // resource == Tool::"x": only that tool; "" = any resource
	action      string // action == Action::"x": only that action; "" = any
}

// PolicyInfo describes a loaded policy (for the admin API and `policy test`).
type PolicyInfo struct {
	ID          string `json:"id"`
	File        string `json:"file"`
	Effect      string `json:"effect"`
	Conditional bool   `json:"conditional"`
}

// cedarSet is an immutable, indexed set of policies.
type cedarSet struct {
	policies []*cedarPolicy
	// subsets caches, per (action, resource), the policies that can apply.
	mu      sync.RWMutex
	subsets map[subsetKey]*subset
}

type subsetKey struct {
	action   Action
	resource string
}

type subset struct {
	ps          policyList
	conditional bool // some applicable policy has conditions
	empty       bool
	// uncond are the applicable policies without conditions (what a
	// name-level decision evaluates); condPermit says whether some
	// applicable permit has conditions.
	uncond     policyList
	condPermit bool
}

// policyList is a cedar.PolicyIterator over a fixed slice: cedar's own
// PolicySet sorts its ids on every iteration, which dominated decisions.
type policyList []*cedarPolicy

// All implements cedar.PolicyIterator.
func (l policyList) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, p := range l {
			if !yield(p.id, p.policy) {
				return
			}
		}
	}
}

// ParseCedar parses policy files (file name → content). Policy ids are
// the @id annotation when present, else "<file>#<n>". Any error rejects
// the whole set: the caller keeps the set in force.
func ParseCedar(files map[string][]byte) (*cedarSet, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	set := &cedarSet{subsets: map[subsetKey]*subset{}}
	seen := map[cedar.PolicyID]string{}
	for _, name := range names {
		// A list keeps file order, so "<file>#<n>" ids are stable across
		// reloads (a PolicySet is a map).
		ps, err := cedar.NewPolicyListFromBytes(filepath.Base(name), files[name])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPolicy, filepath.Base(name), err)
		}
		n := 0
		for _, p := range ps {
			n++
			id := cedar.PolicyID(fmt.Sprintf("%s#%d", filepath.Base(name), n))
			if v, ok := p.Annotations()["id"]; ok && v != "" {
				id = cedar.PolicyID(v)
			}
			if prev, dup := seen[id]; dup {
				return nil, fmt.Errorf("%w: policy id %q in %s already used in %s", ErrInvalidPolicy, id, filepath.Base(name), prev)
			}
			seen[id] = filepath.Base(name)
			set.policies = append(set.policies, indexPolicy(id, filepath.Base(name), p))
		}
	}
	return set, nil
}

func indexPolicy(id cedar.PolicyID, file string, p *cedar.Policy) *cedarPolicy {
	ast := (*xast.Policy)(p.AST())
	cp := &cedarPolicy{id: id, file: file, policy: p, forbid: p.Effect() == cedar.Forbid,
		conditional: len(ast.Conditions) > 0}
	if eq, ok := ast.Resource.(xast.ScopeTypeEq); ok && eq.Entity.Type == TypeTool {
		cp.tool = string(eq.Entity.ID)
	}
	if eq, ok := ast.Action.(xast.ScopeTypeEq); ok && eq.Entity.Type == TypeAction {
		cp.action = string(eq.Entity.ID)
	}
	return cp
}

// Info lists the policies.
func (s *cedarSet) Info() []PolicyInfo {
	out := make([]PolicyInfo, 0, len(s.policies))
	for _, p := range s.policies {
		eff := "permit"
		if p.forbid {
			eff = "forbid"
		}
		out = append(out, PolicyInfo{ID: string(p.id), File: p.file, Effect: eff, Conditional: p.conditional})
	}
	return out
}

// subsetFor returns the policies that can apply to (action, resource):
// those whose scope names this tool (or any resource) and this action (or
// any). Built once per pair and cached.
func (s *cedarSet) subsetFor(action Action, resource string) *subset {
	key := subsetKey{action, resource}
	s.mu.RLock()
	sub := s.subsets[key]
	s.mu.RUnlock()
	if sub != nil {
		return sub
	}
	sub = &subset{}
	for _, p := range s.policies {
		if p.action != "" && p.action != string(action) {
			continue
		}
		if p.tool != "" && (action == ActionAdmin || p.tool != resource) {
			continue
		}
		sub.ps = append(sub.ps, p)
		sub.conditional = sub.conditional || p.conditional
		if !p.conditional {
			sub.uncond = append(sub.uncond, p)
		} else if !p.forbid {
			sub.condPermit = true
		}
	}
	sub.empty = len(sub.ps) == 0
	s.mu.Lock()
	if len(s.subsets) > 4096 { // bounded: resources are tool names and admin areas
		s.subsets = map[subsetKey]*subset{}
	}
	s.subsets[key] = sub
	s.mu.Unlock()
	return sub
}

// ToolAttrs are the attributes of a Tool entity.
type ToolAttrs struct {
	Server      string
	Sensitivity string
	Labels      []string
}

// SessionFacts are facts about the caller's recent behaviour.
type SessionFacts struct {
	// Denials is how many of the principal's calls were denied recently.
	Denials int
	// Approved is context.approved: true when the gateway asks whether
	// the call would be allowed once a human approved it. A policy that
	// forbids a call `unless { context.approved }` makes it need approval.
	Approved bool
}

// pair is the two entities of a request (principal and resource), an
// EntityGetter without a map.
type pair [2]types.Entity

// Get implements types.EntityGetter.
func (p *pair) Get(uid types.EntityUID) (types.Entity, bool) {
	for i := range p {
		if p[i].UID == uid {
			return p[i], true
		}
	}
	return types.Entity{}, false
}

// entityCache keeps built principal and resource entities (they depend
// only on the principal's name, method and roles, and on the tool's
// attributes); it is emptied when it grows past maxEntities.
type entityCache struct {
	mu sync.RWMutex
	m  map[string]types.Entity
}

const maxEntities = 4096

// get returns the entity cached under key, building it on a miss. key
// is a byte slice so that a hit allocates nothing.
func (c *entityCache) get(key []byte, build func() types.Entity) types.Entity {
	c.mu.RLock()
	e, ok := c.m[string(key)]
	c.mu.RUnlock()
	if ok {
		return e
	}
	e = build()
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxEntities {
		c.m = map[string]types.Entity{}
	}
	c.m[string(key)] = e
	c.mu.Unlock()
	return e
}

// weekdays are context.weekday values, boxed once.
var weekdays = [7]types.Value{types.String("Sun"), types.String("Mon"), types.String("Tue"),
	types.String("Wed"), types.String("Thu"), types.String("Fri"), types.String("Sat")}

// appendKey appends the parts of a cache key, each followed by NUL.
func appendKey(b []byte, parts ...string) []byte {
	for _, s := range parts {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

func appendList(b []byte, list []string) []byte {
	for _, s := range list {
		b = append(b, s...)
		b = append(b, ',')
	}
	return append(b, 0)
}

// cedarRequest builds the entities and request for Cedar.
func cedarRequest(r *Request, loc *time.Location, cache *entityCache) (*pair, cedar.Request) {
	p := r.Principal
	user := types.NewEntityUID(TypeUser, types.String(p.Name))
	var ents pair
	var kb [256]byte
	key := appendList(appendKey(kb[:0], "u", p.Name, string(p.Method)), p.Roles)
	ents[0] = cache.get(key, func() types.Entity {
		parents := make([]types.EntityUID, 0, len(p.Roles))
		for _, role := range p.Roles {
			parents = append(parents, types.NewEntityUID(TypeRole, types.String(role)))
		}
		return types.Entity{UID: user, Parents: types.NewEntityUIDSet(parents...),
			Attributes: types.NewRecord(types.RecordMap{
				"name":   types.String(p.Name),
				"method": types.String(string(p.Method)),
			})}
	})
	var resource types.EntityUID
	if r.Action == ActionAdmin {
		resource = types.NewEntityUID(TypeAdminArea, types.String(r.Resource))
		ents[1] = types.Entity{UID: resource}
	} else {
		resource = types.NewEntityUID(TypeTool, types.String(r.Resource))
		key = appendKey(kb[:0], "t", r.Resource)
		if t := r.Tool; t != nil {
			key = appendList(appendKey(key, t.Server, t.Sensitivity), t.Labels)
		}
		ents[1] = cache.get(key, func() types.Entity {
			attrs := types.RecordMap{"server": types.String(""), "sensitivity": types.String(""), "labels": types.NewSet()}
			var toolParents []types.EntityUID
			if t := r.Tool; t != nil {
				labels := make([]types.Value, 0, len(t.Labels))
				for _, l := range t.Labels {
					labels = append(labels, types.String(l))
				}
				attrs["server"], attrs["sensitivity"], attrs["labels"] = types.String(t.Server), types.String(t.Sensitivity), types.NewSet(labels...)
				if t.Server != "" {
					toolParents = append(toolParents, types.NewEntityUID(TypeServer, types.String(t.Server)))
				}
			}
			return types.Entity{UID: resource, Parents: types.NewEntityUIDSet(toolParents...), Attributes: types.NewRecord(attrs)}
		})
	}
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	local := now.In(loc)
	ctx := types.RecordMap{
		"now":      types.NewDatetime(now),
		"hour":     types.Long(local.Hour()),
		"weekday":  weekdays[local.Weekday()],
		"denials":  types.Long(r.Session.Denials),
		"approved": types.Boolean(r.Session.Approved),
		"args":     cedarValue(r.Args, 0),
	}
	if u, ok := r.Args["url"].(string); ok {
		if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
			ctx["url_host"] = types.String(strings.ToLower(strings.TrimSuffix(pu.Hostname(), ".")))
		}
	}
	return &ents, cedar.Request{
		Principal: user,
		Action:    types.NewEntityUID(TypeAction, types.String(string(r.Action))),
		Resource:  resource,
		Context:   types.NewRecord(ctx),
	}
}

// maxValueDepth bounds the nesting of arguments converted for Cedar.
const maxValueDepth = 16

// cedarValue converts a decoded JSON value: strings, booleans, integral
// numbers (Long), arrays (Set), objects (Record). Numbers that are not
// integers become strings (Cedar has no floats); null and over-deep values
// are dropped (an absent attribute, which policies test with `has`).
func cedarValue(v any, depth int) types.Value {
	switch t := v.(type) {
	case map[string]any:
		m := make(types.RecordMap, len(t))
		if depth < maxValueDepth {
			for k, val := range t {
				if cv := cedarValue(val, depth+1); cv != nil {
					m[types.String(k)] = cv
				}
			}
		}
		return types.NewRecord(m)
	case []any:
		if depth >= maxValueDepth {
			return types.NewSet()
		}
		vals := make([]types.Value, 0, len(t))
		for _, val := range t {
			if cv := cedarValue(val, depth+1); cv != nil {
				vals = append(vals, cv)
			}
		}
		return types.NewSet(vals...)
	case string:
		return types.String(t)
	case bool:
		return types.Boolean(t)
	case float64:
		if t == math.Trunc(t) && t >= math.MinInt64 && t <= math.MaxInt64 {
			return types.Long(int64(t))
		}
		return types.String(fmt.Sprint(t))
	case nil:
		if depth == 0 {
			return types.NewRecord(types.RecordMap{})
		}
		return nil
	default:
		return nil
	}
}

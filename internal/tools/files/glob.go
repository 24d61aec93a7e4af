package files

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// Bounds on a search_files pattern.
const (
	maxPatternBytes = 1024
	maxPatternParts = 32 // states fit a uint64 (parts + 1 <= 64)
)

// globPattern is a compiled search_files pattern: '/'-separated parts,
// each a path.Match pattern ('*', '?', '[...]', '\' escapes the next
// character) matched against one name, or "**", which matches zero or more
// whole names. Matching runs as a small NFA over the names of a path, so it
// is linear in the path's depth whatever the number of "**".
type globPattern struct {
	parts []string
}

// globState is the set of pattern positions reached after some names:
// bit i set means parts[:i] matched them; bit len(parts) means a full match.
type globState uint64

// compileGlob validates the client's pattern. Refusals are
// INVALID_ARGUMENTS: empty, too long, NUL, absolute, empty components
// ("a//b", "a/"), "." or ".." components (names relative to the search
// directory never contain them), more than maxPatternParts parts, or a
// malformed path.Match component.
func compileGlob(p string) (globPattern, *tool.Error) {
	bad := func(cause error, format string, a ...any) (globPattern, *tool.Error) {
		return globPattern{}, tool.Errorf(reason.InvalidArguments, cause, format, a...)
	}
	switch {
	case p == "":
		return bad(errors.New("empty pattern"), "pattern is required")
	case len(p) > maxPatternBytes:
		return bad(errors.New("pattern too long"), "pattern is longer than %d bytes", maxPatternBytes)
	case strings.IndexByte(p, 0) >= 0:
		return bad(errors.New("NUL in pattern"), "pattern contains a NUL byte")
	case strings.HasPrefix(p, "/"):
		return bad(errors.New("absolute pattern"), "pattern must be relative to path (no leading '/')")
	}
	var parts []string
	for _, c := range strings.Split(p, "/") {
		switch {
		case c == "" || c == "." || c == "..":
			return bad(fmt.Errorf("component %q", c), "pattern %q: empty, \".\" or \"..\" component", clip(p))
		case c == "**":
			if len(parts) > 0 && parts[len(parts)-1] == "**" {
				continue // "**/**" is "**"
			}
		default:
			if _, err := path.Match(c, ""); err != nil {
				return bad(err, "pattern %q: malformed glob %q", clip(p), clip(c))
			}
		}
		parts = append(parts, c)
	}
	if len(parts) > maxPatternParts {
		return bad(errors.New("too many components"), "pattern has more than %d components", maxPatternParts)
	}
	return globPattern{parts: parts}, nil
}

// start is the state before any name.
func (g globPattern) start() globState { return g.closure(1) }

// closure adds position i+1 for every reached position i at a "**" (which
// may match zero names).
func (g globPattern) closure(s globState) globState {
	for i, p := range g.parts {
		if p == "**" && s&(1<<i) != 0 {
			s |= 1 << (i + 1)
		}
	}
	return s
}

// step consumes one name.
func (g globPattern) step(s globState, name string) globState {
	var next globState
	for i, p := range g.parts {
		if s&(1<<i) == 0 {
			continue
		}
		if p == "**" {
			next |= 1 << i
		} else if ok, _ := path.Match(p, name); ok {
			next |= 1 << (i + 1)
		}
	}
	return g.closure(next)
}

// matches reports a full match.
func (g globPattern) matches(s globState) bool { return s&(1<<len(g.parts)) != 0 }

// more reports whether names below the current one could still match, so
// a directory in this state is worth descending into.
func (g globPattern) more(s globState) bool { return s&(1<<len(g.parts)-1) != 0 }

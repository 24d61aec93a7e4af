package adminapi

import (
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/policy"
)

// roleName is the shape of a role name.
var roleName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// Limits on inputs.
const (
	// MaxPatternLen caps a permission pattern or key scope, in bytes.
	MaxPatternLen = 128
	// MaxScopes caps the scopes of one API key.
	MaxScopes = 64
	// MaxDescriptionLen caps a role description, in bytes.
	MaxDescriptionLen = 256
	// MaxUserRoles caps the roles given in one CreateUserRequest.
	MaxUserRoles = 32
)

// adminRole is the built-in administrator role; it always keeps its
// "admin * allow" permission.
const adminRole = "admin"

// validPattern checks a permission pattern or key scope: a path.Match
// pattern ("read_file", "git_*", "notes__*", "*") of at most
// MaxPatternLen bytes of valid UTF-8, without '/' (names never contain
// one, and path.Match's '*' stops at it), spaces or control characters.
func validPattern(s string) error {
	if s == "" {
		return badRequest("pattern must not be empty")
	}
	if len(s) > MaxPatternLen {
		return badRequest("pattern longer than %d bytes", MaxPatternLen)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
		return r == '/' || unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError
	}) {
		return badRequest("pattern %q must not contain '/', spaces or control characters", s)
	}
	if _, err := path.Match(s, ""); err != nil {
		return badRequest("pattern %q is not a valid glob: %v", s, err)
	}
	return nil
}

// validScopes checks key scopes and returns them without duplicates, in
// the order given; nil for none.
func validScopes(scopes []string) ([]string, error) {
	if len(scopes) > MaxScopes {
		return nil, badRequest("at most %d scopes", MaxScopes)
	}
	var out []string
	for _, s := range scopes {
		if err := validPattern(s); err != nil {
			return nil, badRequest("scope: %v", err)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// validAction checks a permission action.
func validAction(s string) error {
	switch policy.Action(s) {
	case policy.ActionCall, policy.ActionAdmin, policy.ActionApprove:
		return nil
	}
	return badRequest("action must be %s, %s or %s", policy.ActionCall, policy.ActionAdmin, policy.ActionApprove)
}

// validText checks free text such as a role description: valid UTF-8
// without control characters, at most max bytes.
func validText(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// validToolName checks the tool of a policy test: like a pattern, but a
// name (no glob characters).
func validToolName(s string) error {
	if err := validPattern(s); err != nil {
		return badRequest("tool: %v", err)
	}
	if strings.ContainsAny(s, `*?[]\`) {
		return badRequest("tool must be a tool name, not a pattern")
	}
	return nil
}

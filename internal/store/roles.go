package store

import (
	"slices"
	"strings"
)

// JoinRoles is the stored form of a role list, the same in every backend
// because an audit record's roles are sealed as stored: sorted and joined
// by ",". The input is not modified.
func JoinRoles(roles []string) string {
	r := slices.Clone(roles)
	slices.Sort(r)
	return strings.Join(r, ",")
}

// SplitRoles reads a stored role list back; "" is no roles (nil).
func SplitRoles(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

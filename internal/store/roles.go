package store

import (
	"encoding/json"
	"fmt"
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

// EncodeKeyLists is the stored form of an API key's roles and scopes, the
// same in every backend: JSON arrays, no scopes as "[]".
func EncodeKeyLists(k APIKey) (roles, scopes string, err error) {
	r, err := json.Marshal(k.Roles)
	if err != nil {
		return "", "", err
	}
	sc := k.Scopes
	if sc == nil {
		sc = []string{}
	}
	s, err := json.Marshal(sc)
	if err != nil {
		return "", "", err
	}
	return string(r), string(s), nil
}

// DecodeKeyLists reads them back into k; no scopes is nil.
func DecodeKeyLists(k *APIKey, roles, scopes string) error {
	if err := json.Unmarshal([]byte(roles), &k.Roles); err != nil {
		return fmt.Errorf("api key roles: %w", err)
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return fmt.Errorf("api key scopes: %w", err)
	}
	if len(k.Scopes) == 0 {
		k.Scopes = nil
	}
	return nil
}

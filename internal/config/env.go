package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every Portcullis environment variable.
const EnvPrefix = "PORTCULLIS_"

// NonConfigEnv lists PORTCULLIS_* variables that are read by commands
// rather than by Load; Load accepts and ignores them. Any other unknown
// PORTCULLIS_* variable is an error, so a misspelt security setting never
// silently falls back to its default.
var NonConfigEnv = []string{
	"PORTCULLIS_ADMIN_KEY", // admin CLI: key for the admin API
	"PORTCULLIS_SERVER",    // admin CLI: base URL of the running server
	"PORTCULLIS_CONFIG",    // path of the config file
	// The audit chain key itself (hex, at least 32 bytes), for deployments
	// that inject secrets as variables; read by serve and `audit verify`.
	"PORTCULLIS_AUDIT_CHAIN_KEY",
}

var durationType = reflect.TypeFor[time.Duration]()

// envField is one settable leaf of Config.
type envField struct {
	key  string // dotted YAML path, for messages
	path []int  // reflect field index path
}

// EnvKeys returns every supported environment variable name mapped to its
// dotted YAML key, e.g. "PORTCULLIS_MCP_SESSION_TIMEOUT" → "mcp.session_timeout".
func EnvKeys() map[string]string {
	out := map[string]string{}
	for name, f := range envFields() {
		out[name] = f.key
	}
	return out
}

func envFields() map[string]envField {
	fields := map[string]envField{}
	var walk func(t reflect.Type, prefix []string, idx []int)
	walk = func(t reflect.Type, prefix []string, idx []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			path := append(slices.Clone(prefix), tag)
			index := append(slices.Clone(idx), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, path, index)
				continue
			}
			name := EnvPrefix + strings.ToUpper(strings.Join(path, "_"))
			fields[name] = envField{key: strings.Join(path, "."), path: index}
		}
	}
	walk(reflect.TypeFor[Config](), nil, nil)
	return fields
}

// applyEnv sets fields from PORTCULLIS_* entries of environ.
func applyEnv(cfg *Config, environ []string) error {
	fields := envFields()
	var unknown []string
	root := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		f, known := fields[name]
		if !known {
			if !slices.Contains(NonConfigEnv, name) {
				unknown = append(unknown, name)
			}
			continue
		}
		if err := setValue(root.FieldByIndex(f.path), value); err != nil {
			return fmt.Errorf("%s (%s): %w", name, f.key, err)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown environment variable(s) %s; see `portcullis serve --help` for the supported names", strings.Join(unknown, ", "))
	}
	return nil
}

// setValue parses s into v according to v's type: strings, booleans,
// integers, durations ("30s"), string lists (comma-separated) and string
// maps ("k=v,k2=v2").
func setValue(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s: %w", err)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false: %w", err)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer: %w", err)
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number: %w", err)
		}
		v.SetFloat(f)
	case reflect.Map:
		if k := v.Type().Elem().Kind(); v.Type().Key().Kind() == reflect.String && (k == reflect.Struct || k == reflect.Slice) {
			return setJSON(v, s, "a JSON object of objects")
		}
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported map type %s", v.Type())
		}
		m := reflect.MakeMap(v.Type())
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			k, val, ok := strings.Cut(part, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("want key=value pairs separated by commas, got %q", part)
			}
			m.SetMapIndex(reflect.ValueOf(strings.TrimSpace(k)), reflect.ValueOf(strings.TrimSpace(val)))
		}
		v.Set(m)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			return setJSON(v, s, "a JSON list of objects")
		}
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", v.Type())
		}
		var items []string
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				items = append(items, part)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// setJSON decodes s (JSON, or YAML flow style) into v as strictly as the
// config file (unknown keys are errors): lists and maps of objects such as
// audit.sinks or limits.tools.
func setJSON(v reflect.Value, s, want string) error {
	dec := yaml.NewDecoder(strings.NewReader(s))
	dec.KnownFields(true)
	ptr := reflect.New(v.Type())
	if err := dec.Decode(ptr.Interface()); err != nil {
		return fmt.Errorf("want %s: %w", want, err)
	}
	v.Set(ptr.Elem())
	return nil
}

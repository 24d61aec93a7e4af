package adminapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/store"
)

// openAPIDoc is the embedded document, decoded.
func openAPIDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(adminapi.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// resolve follows a local "$ref" ("#/components/...") of v, if any.
func resolve(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v is not an object", v)
	}
	r, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	var cur any = doc
	for _, part := range strings.Split(strings.TrimPrefix(r, "#/"), "/") {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("$ref %s does not resolve", r)
		}
		if cur, ok = obj[part]; !ok {
			t.Fatalf("$ref %s does not resolve", r)
		}
	}
	return resolve(t, doc, cur)
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPIMatchesRoutes: openapi.json is an OpenAPI 3.1 document
// that documents exactly the routes the API serves, each operation with
// a unique operationId, a success answer, the 401 and 403 answers, and
// its path parameters declared; every $ref resolves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := newFixture(t)
	doc := openAPIDoc(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", doc["openapi"])
	}
	if info, _ := doc["info"].(map[string]any); info["title"] == nil || info["version"] != "v1" {
		t.Errorf("info = %v", doc["info"])
	}
	paths, _ := doc["paths"].(map[string]any)
	var documented []string
	ids := map[string]string{}
	for path, item := range paths {
		item := item.(map[string]any)
		for _, method := range httpMethods {
			o, ok := item[method]
			if !ok {
				continue
			}
			op := o.(map[string]any)
			key := strings.ToUpper(method) + " " + path
			documented = append(documented, key)
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s: no operationId", key)
			} else if other, dup := ids[id]; dup {
				t.Errorf("%s: operationId %s also used by %s", key, id, other)
			}
			ids[id] = key
			if s, _ := op["summary"].(string); s == "" {
				t.Errorf("%s: no summary", key)
			}
			resps, _ := op["responses"].(map[string]any)
			if resps["200"] == nil && resps["201"] == nil && resps["204"] == nil {
				t.Errorf("%s: no 200, 201 or 204 response", key)
			}
			for _, code := range []string{"401", "403"} {
				if resps[code] == nil {
					t.Errorf("%s: no %s response", key, code)
				}
			}
			// Path parameters: declared on the path item or the operation.
			var declared []string
			for _, list := range []any{item["parameters"], op["parameters"]} {
				ps, _ := list.([]any)
				for _, p := range ps {
					pm := resolve(t, doc, p)
					if pm["in"] != "path" {
						continue
					}
					if pm["required"] != true {
						t.Errorf("%s: path parameter %v not required", key, pm["name"])
					}
					declared = append(declared, pm["name"].(string))
				}
			}
			var inPath []string
			for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
				inPath = append(inPath, m[1])
			}
			slices.Sort(declared)
			slices.Sort(inPath)
			if diff := cmp.Diff(inPath, declared); diff != "" {
				t.Errorf("%s: path parameters (-in path +declared):\n%s", key, diff)
			}
		}
	}
	var served []string
	for _, r := range f.api.Routes() {
		served = append(served, r.Method+" "+r.Path)
	}
	if !slices.Contains(served, "GET /admin/v1/openapi.json") {
		t.Error("the document itself is not served")
	}
	slices.Sort(served)
	slices.Sort(documented)
	if diff := cmp.Diff(served, documented); diff != "" {
		t.Errorf("routes and openapi.json differ (-served +documented):\n%s", diff)
	}
	// Every $ref resolves.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["$ref"]; ok {
				resolve(t, doc, v)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
}

// jsonFields returns the JSON field names of struct type typ, embedded
// structs flattened.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

// schemaProps returns the property names of a schema, allOf merged, and
// whether it refuses other properties.
func schemaProps(t *testing.T, doc map[string]any, s map[string]any) (props []string, closed bool) {
	t.Helper()
	own, _ := s["properties"].(map[string]any)
	for name := range own {
		props = append(props, name)
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			p, _ := schemaProps(t, doc, resolve(t, doc, sub))
			props = append(props, p...)
		}
	}
	return props, s["additionalProperties"] == false
}

// TestOpenAPISchemasMatchTypes: each documented schema has exactly the
// JSON fields of the Go type the API encodes or decodes, and request
// bodies refuse unknown fields as decodeBody does.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := openAPIDoc(t)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	tests := []struct {
		schema  string
		v       any
		request bool
	}{
		{"Key", adminapi.KeyView{}, false},
		{"CreateKeyRequest", adminapi.CreateKeyRequest{}, true},
		{"RotateKeyRequest", adminapi.RotateKeyRequest{}, true},
		{"User", adminapi.UserView{}, false},
		{"CreateUserRequest", adminapi.CreateUserRequest{}, true},
		{"GrantRoleRequest", adminapi.GrantRoleRequest{}, true},
		{"Role", adminapi.RoleView{}, false},
		{"Permission", adminapi.PermissionView{}, false},
		{"CreateRoleRequest", adminapi.CreateRoleRequest{}, true},
		{"GrantPermissionRequest", adminapi.GrantPermissionRequest{}, true},
		{"RevokePermissionRequest", adminapi.RevokePermissionRequest{}, true},
		{"Policy", policy.PolicyInfo{}, false},
		{"Policies", adminapi.PoliciesView{}, false},
		{"ReloadResult", adminapi.ReloadResult{}, false},
		{"PolicyTestRequest", adminapi.PolicyTestRequest{}, true},
		{"PolicyTestResult", adminapi.PolicyTestResult{}, false},
		{"AuditEvent", audit.Event{}, false},
		{"Checkpoint", audit.Checkpoint{}, false},
		{"Violation", store.Violation{}, false},
		{"Quarantine", store.Quarantine{}, false},
		{"QuarantineRequest", adminapi.QuarantineRequest{}, true},
		{"ReleaseRequest", adminapi.ReleaseRequest{}, true},
		{"Usage", store.Usage{}, false},
		{"Approval", store.Approval{}, false},
		{"DecisionRequest", adminapi.DecisionRequest{}, true},
		{"PluginStatus", plugins.Status{}, false},
		{"PinRecord", pin.Record{}, false},
		{"PinFinding", pin.Finding{}, false},
		{"PluginsView", adminapi.PluginsView{}, false},
		{"PluginToolView", adminapi.PluginToolView{}, false},
		{"AcceptRequest", adminapi.AcceptRequest{}, true},
		{"SecretInfo", adminapi.SecretView{}, false},
		{"SecretList", adminapi.SecretsView{}, false},
		{"PluginHealth", adminapi.PluginHealth{}, false},
		{"Health", adminapi.HealthView{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			s, ok := schemas[tt.schema].(map[string]any)
			if !ok {
				t.Fatalf("no schema %s", tt.schema)
			}
			props, closed := schemaProps(t, doc, s)
			want := jsonFields(reflect.TypeOf(tt.v))
			slices.Sort(props)
			slices.Sort(want)
			if diff := cmp.Diff(want, props); diff != "" {
				t.Errorf("properties (-Go fields +schema):\n%s", diff)
			}
			if tt.request && !closed {
				t.Error("a request body schema must say additionalProperties: false (unknown fields are refused)")
			}
			required, _ := s["required"].([]any)
			for _, r := range required {
				if !slices.Contains(props, r.(string)) {
					t.Errorf("required %v is no property", r)
				}
			}
		})
	}
}

// TestOpenAPIServed: GET /admin/v1/openapi.json answers the document to
// admins (info.version the gateway's when given) and 403 with an
// admin.denied event to others.
func TestOpenAPIServed(t *testing.T) {
	f := newFixture(t)
	w, _ := f.do(rootP, "GET", "/admin/v1/openapi.json", "")
	if w.Code != http.StatusOK {
		t.Fatalf("admin: %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var served, embedded map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &served); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(adminapi.OpenAPI(), &embedded); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(embedded, served); diff != "" {
		t.Errorf("served document differs from the embedded one (-embedded +served):\n%s", diff)
	}

	for _, p := range []struct {
		name string
		rid  func() (int, string)
	}{
		{"developer", func() (int, string) { w, rid := f.do(devP, "GET", "/admin/v1/openapi.json", ""); return w.Code, rid }},
		{"guest", func() (int, string) { w, rid := f.do(guestP, "GET", "/admin/v1/openapi.json", ""); return w.Code, rid }},
	} {
		code, rid := p.rid()
		if code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", p.name, code)
		}
		if evs := f.spy.byRequest(rid); len(evs) != 1 || evs[0].Type != audit.AdminDenied {
			t.Errorf("%s: events %+v, want one admin.denied", p.name, evs)
		}
	}
	if w, _ := f.do(nil, "GET", "/admin/v1/openapi.json", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("no principal: %d, want 401", w.Code)
	}

	api, err := adminapi.New(adminapi.Deps{Store: f.db, Authn: f.an, Policy: f.pol, Audit: f.spy,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return t0 }, Version: "1.2.3-test",
		RequestMeta: func(r *http.Request) (string, string) { return "", "" }})
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	w, _ = f.do(rootP, "GET", "/admin/v1/openapi.json", "")
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct{ Version string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || w.Code != http.StatusOK {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Info.Version != "1.2.3-test" {
		t.Errorf("openapi %q info.version %q, want 3.1.0 and 1.2.3-test", doc.OpenAPI, doc.Info.Version)
	}
}

package adminapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/portcullis/portcullis/internal/principal"
)

// openAPIJSON is the OpenAPI 3.1 document of the admin API, written by
// hand. TestOpenAPIMatchesRoutes holds it to Routes: every route is
// documented and every documented operation is served.
//
//go:embed openapi.json
var openAPIJSON []byte

// OpenAPI returns the OpenAPI 3.1 document of the admin API as embedded
// (info.version "v1"), a copy.
func OpenAPI() []byte { return slices.Clone(openAPIJSON) }

// openAPIDocument returns the document as served: info.version set to
// version unless that is "".
func openAPIDocument(version string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIJSON, &doc); err != nil {
		return nil, fmt.Errorf("adminapi: embedded OpenAPI document: %w", err)
	}
	info, ok := doc["info"].(map[string]any)
	if !ok {
		return nil, errors.New("adminapi: embedded OpenAPI document has no info object")
	}
	if version != "" {
		info["version"] = version
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("adminapi: OpenAPI document: %w", err)
	}
	return buf.Bytes(), nil
}

func (a *API) serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ *principal.Principal) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.openapi)
	return nil
}

package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
)

// Client calls the admin API of a running gateway.
type Client struct {
	// BaseURL is the gateway's base URL, e.g. http://127.0.0.1:8420.
	BaseURL string
	// Key is an admin API key; it is sent only as a bearer token.
	Key  string
	HTTP *http.Client
}

// APIError is a non-2xx answer from the admin API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("admin API: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u, err := url.Parse(strings.TrimRight(c.BaseURL, "/") + path)
	if err != nil {
		return fmt.Errorf("admin API: bad server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("admin API: server URL must be http or https, got %q", c.BaseURL)
	}
	u.RawQuery = query.Encode()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	// The admin API never redirects. Following one would resend the key:
	// Go keeps Authorization on redirects to the same host name (another
	// port, or https → http).
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirect.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w (is `portcullis serve` running at %s?)", err, c.BaseURL)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Message string }
		_ = json.Unmarshal(data, &e)
		return &APIError{Status: resp.StatusCode, Code: e.Error, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API: bad response: %w", err)
	}
	return nil
}

// CreateKey creates a key (and the user, if new) and returns it with its
// plaintext, which the server never shows again.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (KeyView, error) {
	var v KeyView
	err := c.do(ctx, http.MethodPost, "/admin/v1/keys", nil, req, &v)
	return v, err
}

// ListKeys lists keys (never their plaintext or hash).
func (c *Client) ListKeys(ctx context.Context) ([]KeyView, error) {
	var out struct{ Keys []KeyView }
	err := c.do(ctx, http.MethodGet, "/admin/v1/keys", nil, nil, &out)
	return out.Keys, err
}

// RevokeKey revokes the key with this id.
func (c *Client) RevokeKey(ctx context.Context, id string) (KeyView, error) {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return KeyView{}, errors.New("admin API: bad key id")
	}
	var v KeyView
	err := c.do(ctx, http.MethodDelete, "/admin/v1/keys/"+url.PathEscape(id), nil, nil, &v)
	return v, err
}

// QueryAudit returns audit events matching the filters (see the API's
// /admin/v1/audit parameters: user, tool, type, status, request_id, since,
// until, before, limit).
func (c *Client) QueryAudit(ctx context.Context, filters url.Values) ([]audit.Event, error) {
	var out struct{ Events []audit.Event }
	err := c.do(ctx, http.MethodGet, "/admin/v1/audit", filters, nil, &out)
	return out.Events, err
}

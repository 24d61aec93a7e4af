package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
)

// HTTP formats (config.AuditSinkConfig.Format).
const (
	// FormatJSONL posts one event JSON per line, Content-Type
	// application/x-ndjson, for collectors that take newline-delimited
	// JSON (Vector http_server, Fluentd in_http, Logstash http with json_lines).
	FormatJSONL = "jsonl"
	// FormatLoki posts a Loki push request (POST /loki/api/v1/push):
	// {"streams":[{"stream":{"job":"portcullis","type":T},"values":[["<unix ns>","<event json>"],…]}]},
	// one stream per event type so that label cardinality stays low.
	FormatLoki = "loki"
	// FormatElasticsearch posts a bulk request (POST <index>/_bulk):
	// {"index":{"_id":"<event id>"}} LF <event json> LF per record, so a
	// record sent twice is stored once. A 200 answer with "errors":true
	// is a failure.
	FormatElasticsearch = "elasticsearch"
)

// errRedirect refuses redirects: records go to the configured URL or nowhere.
var errRedirect = errors.New("redirect refused")

// maxResponse bounds how much of a collector's answer is read.
const maxResponse = 8 << 20

// httpSender POSTs each batch as one request; only a 2xx answer
// acknowledges it.
type httpSender struct {
	url, format string
	token       string // never logged, never in an error
	client      *http.Client
}

var _ sender = (*httpSender)(nil)

func newHTTP(cfg config.AuditSinkConfig) (*httpSender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("%w: sink %q: url must be http(s)://host/… without credentials", ErrConfig, cfg.Name)
	}
	h := &httpSender{url: cfg.URL, format: cfg.Format}
	switch cfg.Format {
	case "":
		h.format = FormatJSONL
	case FormatJSONL, FormatLoki, FormatElasticsearch:
	default:
		return nil, fmt.Errorf("%w: sink %q: unknown format %q", ErrConfig, cfg.Name, cfg.Format)
	}
	if cfg.TokenFile != "" {
		b, err := datadir.ReadPrivate(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("%w: sink %q: token_file: %w", ErrConfig, cfg.Name, err)
		}
		h.token = strings.TrimSpace(string(b))
		if h.token == "" || strings.IndexFunc(h.token, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			return nil, fmt.Errorf("%w: sink %q: token_file %s: want one token of visible ASCII characters", ErrConfig, cfg.Name, cfg.TokenFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	h.client = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
	return h, nil
}

func (h *httpSender) send(ctx context.Context, events []audit.Event) error {
	payload, ctype := h.encode(events)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDelivery, err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "portcullis-audit-forwarder")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		// The url.Error would repeat the URL, whose query may hold an API key.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%w: POST: %w", ErrDelivery, err)
	}
	body := io.LimitReader(resp.Body, maxResponse)
	defer func() { // drain so that the connection can be reused
		io.Copy(io.Discard, body)
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: collector answered HTTP %d", ErrDelivery, resp.StatusCode)
	}
	if h.format == FormatElasticsearch {
		return checkBulk(body)
	}
	return nil
}

func (h *httpSender) close() error {
	h.client.CloseIdleConnections()
	return nil
}

// encode renders a batch in h.format and returns its Content-Type.
func (h *httpSender) encode(events []audit.Event) ([]byte, string) {
	var b bytes.Buffer
	switch h.format {
	case FormatLoki:
		type stream struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		}
		var streams []stream
		index := map[audit.Type]int{}
		for _, e := range events {
			i, ok := index[e.Type]
			if !ok {
				i = len(streams)
				index[e.Type] = i
				streams = append(streams, stream{Stream: map[string]string{"job": appName, "type": string(e.Type)}})
			}
			ts := strconv.FormatInt(e.Time.UnixNano(), 10)
			streams[i].Values = append(streams[i].Values, [2]string{ts, string(encodeEvent(e))})
		}
		json.NewEncoder(&b).Encode(struct {
			Streams []stream `json:"streams"`
		}{streams})
		return b.Bytes(), "application/json"
	case FormatElasticsearch:
		for _, e := range events {
			if e.ID == "" {
				b.WriteString(`{"index":{}}`)
			} else {
				id, _ := json.Marshal(e.ID)
				fmt.Fprintf(&b, `{"index":{"_id":%s}}`, id)
			}
			b.WriteByte('\n')
			b.Write(encodeEvent(e))
			b.WriteByte('\n')
		}
	default:
		for _, e := range events {
			b.Write(encodeEvent(e))
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), "application/x-ndjson"
}

// checkBulk fails an Elasticsearch bulk answer that reports item errors
// or cannot be read. Only the error type goes into the message: the
// reason may quote record contents.
func checkBulk(r io.Reader) error {
	var resp struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Error *struct {
				Type string `json:"type"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.NewDecoder(r).Decode(&resp); err != nil {
		return fmt.Errorf("%w: elasticsearch bulk: unreadable answer", ErrDelivery)
	}
	if !resp.Errors {
		return nil
	}
	failed, first := 0, ""
	for _, item := range resp.Items {
		for _, res := range item {
			if res.Error != nil {
				if failed++; first == "" {
					first = res.Error.Type
				}
			}
		}
	}
	return fmt.Errorf("%w: elasticsearch bulk: %d of %d items failed (first: %.64s)", ErrDelivery, failed, len(resp.Items), first)
}

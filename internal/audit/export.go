package audit

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Export formats.
const (
	FormatJSONL = "jsonl" // one Event JSON object per line
	FormatCSV   = "csv"   // RFC 4180, header row CSVColumns
)

// CSVColumns is the header of a CSV export: every stored field plus the
// numeric event code (chain, added with per-replica chains, comes last).
var CSVColumns = []string{
	"seq", "id", "time", "type", "code", "principal", "roles", "session", "request_id", "remote_addr",
	"tool", "server", "args_digest", "args", "decision", "reason", "status", "duration_ns",
	"result_digest", "error", "detail", "prev_hash", "hash", "chain",
}

// Exporter writes events in an export format. Not safe for concurrent use.
type Exporter struct {
	format string
	bw     *bufio.Writer
	jw     *json.Encoder
	cw     *csv.Writer
	header bool
}

// NewExporter returns an exporter writing format (FormatJSONL or
// FormatCSV) to w; any other format is an error.
func NewExporter(w io.Writer, format string) (*Exporter, error) {
	x := &Exporter{format: format, bw: bufio.NewWriterSize(w, 64<<10)}
	switch format {
	case FormatJSONL:
		x.jw = json.NewEncoder(x.bw)
		x.jw.SetEscapeHTML(false)
	case FormatCSV:
		x.cw = csv.NewWriter(x.bw)
	default:
		return nil, fmt.Errorf("audit: export format must be %s or %s, got %q", FormatJSONL, FormatCSV, format)
	}
	return x, nil
}

// Write writes one event.
func (x *Exporter) Write(e *Event) error {
	if x.jw != nil {
		return x.jw.Encode(e)
	}
	if !x.header {
		x.header = true
		if err := x.cw.Write(CSVColumns); err != nil {
			return err
		}
	}
	return x.cw.Write([]string{
		strconv.FormatInt(e.Seq, 10), e.ID, e.Time.UTC().Format(time.RFC3339Nano), string(e.Type),
		strconv.Itoa(e.Type.Code()), cell(e.Principal), cell(strings.Join(e.Roles, ",")), cell(e.Session),
		cell(e.RequestID), cell(e.RemoteAddr), cell(e.Tool), cell(e.Server), e.ArgsDigest, cell(string(e.Args)),
		e.Decision, string(e.Reason), e.Status, strconv.FormatInt(int64(e.Duration), 10), e.ResultDigest,
		cell(e.Error), cell(e.Detail), e.PrevHash, e.Hash, e.Chain,
	})
}

// Flush writes buffered output; call it at the end (and to push a tail).
func (x *Exporter) Flush() error {
	if x.cw != nil {
		x.cw.Flush()
		if err := x.cw.Error(); err != nil {
			return err
		}
	}
	return x.bw.Flush()
}

// cell defuses CSV formula injection (OWASP "CSV Injection"): a value an
// attacker controls (a tool name, an argument, a user name) that starts
// with = + - @ or a tab/CR would run as a formula when a spreadsheet opens
// the export, so it gets a leading apostrophe.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

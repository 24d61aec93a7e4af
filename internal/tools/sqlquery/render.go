package sqlquery

import (
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/tool"
)

// Text rendering bounds: the table in the text content shows each value
// in at most maxDisplayRunes runes (the structured rows carry it whole, up
// to MaxCellBytes) and a blob's first maxDisplayBlob bytes.
const (
	maxDisplayRunes = 60
	maxDisplayBlob  = 16
)

// cell is one value: its JSON form, its display form and its size.
type cell struct {
	json      any
	display   string
	size      int
	truncated bool
}

// collect reads at most MaxRows rows (and MaxResultBytes of values) and
// builds the result.
func (t *Tool) collect(rows *sql.Rows) (*tool.Result, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var (
		outRows   = [][]any{}
		display   [][]string
		total     int
		truncCell int
		truncated string // why rows were left off, "" if none
	)
	for rows.Next() {
		if len(outRows) == t.cfg.MaxRows {
			truncated = fmt.Sprintf("more than %d rows", t.cfg.MaxRows)
			break
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, len(cols))
		disp := make([]string, len(cols))
		size := 0
		for i, v := range vals {
			c := t.encode(v)
			row[i], disp[i] = c.json, c.display
			size += c.size
			if c.truncated {
				truncCell++
			}
		}
		if total+size > t.cfg.MaxResultBytes {
			// Even a first row that alone is too large is left off: the
			// cap holds for any number of columns.
			truncated = fmt.Sprintf("more than %d bytes", t.cfg.MaxResultBytes)
			break
		}
		total += size
		outRows = append(outRows, row)
		display = append(display, disp)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if cols == nil {
		cols = []string{}
	}
	structured := map[string]any{
		"columns":         cols,
		"rows":            outRows,
		"row_count":       len(outRows),
		"truncated":       truncated != "",
		"truncated_cells": truncCell,
	}
	return &tool.Result{Text: table(cols, display, truncated, truncCell), Structured: structured}, nil
}

// encode turns one value from the driver into its JSON and display forms.
func (t *Tool) encode(v any) cell {
	switch v := v.(type) {
	case nil:
		return cell{json: nil, display: "NULL", size: 4}
	case int64:
		s := strconv.FormatInt(v, 10)
		return cell{json: v, display: s, size: len(s)}
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 64)
		switch {
		case math.IsInf(v, 1):
			return cell{json: "Infinity", display: "Infinity", size: 8}
		case math.IsInf(v, -1):
			return cell{json: "-Infinity", display: "-Infinity", size: 9}
		case math.IsNaN(v):
			return cell{json: "NaN", display: "NaN", size: 3}
		}
		return cell{json: v, display: s, size: len(s)}
	case string:
		c := cell{}
		if len(v) > t.cfg.MaxCellBytes {
			v, c.truncated = cutUTF8(v, t.cfg.MaxCellBytes), true
		}
		v = strings.ToValidUTF8(v, "\uFFFD")
		c.json, c.display, c.size = v, v, len(v)
		return c
	case []byte:
		c := cell{}
		n := len(v)
		if n > t.cfg.MaxCellBytes {
			v, c.truncated = v[:t.cfg.MaxCellBytes], true
		}
		b64 := base64.StdEncoding.EncodeToString(v)
		m := map[string]any{"blob": b64, "bytes": n}
		if c.truncated {
			m["truncated"] = true
		}
		c.json, c.size = m, len(b64)
		d := "x'" + hex.EncodeToString(v[:min(len(v), maxDisplayBlob)])
		if n > maxDisplayBlob {
			d += "…"
		}
		c.display = d + "'"
		return c
	case time.Time:
		s := v.Format(time.RFC3339Nano)
		return cell{json: s, display: s, size: len(s)}
	case bool: // not produced by SQLite; kept total
		s := strconv.FormatBool(v)
		return cell{json: v, display: s, size: len(s)}
	default:
		s := strings.ToValidUTF8(fmt.Sprint(v), "\uFFFD")
		if len(s) > t.cfg.MaxCellBytes {
			s = cutUTF8(s, t.cfg.MaxCellBytes)
		}
		return cell{json: s, display: s, size: len(s)}
	}
}

// cutUTF8 returns at most n bytes of s, not splitting a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for i := 0; i < utf8.UTFMax && len(s) > 0; i++ {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// table renders the rows as a small text table:
//
//	id | name
//	---+------
//	1  | alice
//	(1 row)
func table(cols []string, rows [][]string, truncated string, truncCells int) string {
	width := make([]int, len(cols))
	hdr := make([]string, len(cols))
	for i, c := range cols {
		hdr[i] = displayCell(c)
		width[i] = utf8.RuneCountInString(hdr[i])
	}
	for ri, r := range rows {
		for i, v := range r {
			r[i] = displayCell(v)
			width[i] = max(width[i], utf8.RuneCountInString(r[i]))
		}
		rows[ri] = r
	}
	var b strings.Builder
	line := func(vals []string) {
		for i, v := range vals {
			if i > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(v)
			if i < len(vals)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(v)))
			}
		}
		b.WriteByte('\n')
	}
	if len(cols) > 0 {
		line(hdr)
		for i, w := range width {
			if i > 0 {
				b.WriteString("-+-")
			}
			b.WriteString(strings.Repeat("-", max(w, 1)))
		}
		b.WriteByte('\n')
		for _, r := range rows {
			line(r)
		}
	}
	noun := "rows"
	if len(rows) == 1 {
		noun = "row"
	}
	fmt.Fprintf(&b, "(%d %s", len(rows), noun)
	if truncated != "" {
		fmt.Fprintf(&b, "; truncated: %s", truncated)
	}
	if truncCells > 0 {
		fmt.Fprintf(&b, "; %d values cut at the size limit", truncCells)
	}
	b.WriteString(")")
	return b.String()
}

// displayCell makes a value safe and short for the table: control
// characters are escaped (no terminal escapes, no broken lines) and the
// value is cut at maxDisplayRunes runes.
func displayCell(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxDisplayRunes {
			b.WriteString("…")
			break
		}
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029 || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		n++
	}
	return b.String()
}

package files

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// maxContentBytes bounds the search_files content argument.
const maxContentBytes = 1024

// Excerpt bounds: bytes kept before and after a content match, within
// its line.
const (
	excerptBefore = 80
	excerptAfter  = 120
)

// scanChunk is the read size for content scanning.
const scanChunk = 64 << 10

// Values of search_files "truncated_by".
const (
	truncResults = "max_results"
	truncEntries = "max_entries"
	truncBytes   = "max_bytes"
)

func searchFilesDef() tool.Definition {
	return tool.Definition{
		Name:  ToolSearchFiles,
		Title: "Search files",
		Description: "Find entries below a workspace directory whose path relative to it matches a glob pattern, " +
			"optionally only regular files containing a substring. Symbolic links are reported, never followed. " +
			"Results are bounded (matches, entries examined, bytes read) and say when they were truncated.",
		InputSchema: objectSchema([]string{"path", "pattern"}, []string{"path", "pattern", "content"}, map[string]*jsonschema.Schema{
			"path": pathSchema(pathDesc + ` The directory to search; "." is the workspace root.`),
			"pattern": {
				Type: "string",
				Description: "Glob matched against each entry's path relative to path, '/'-separated: " +
					"'*' and '?' match within one name, '[...]' a character class, '\\' escapes, " +
					"and a whole component '**' matches zero or more directories. " +
					"\"*.go\" matches only directly in path; \"**/*.go\" at any depth.",
				MinLength: ptr(1),
				MaxLength: ptr(maxPatternBytes),
			},
			"content": {
				Type:        "string",
				Description: "Optional exact substring (case-sensitive, bytes): only regular files containing it match, reported with the line of the first occurrence.",
				MinLength:   ptr(1),
				MaxLength:   ptr(maxContentBytes),
			},
		}),
		Sensitivity: tool.Low,
		ReadOnly:    true,
		Labels:      []string{"filesystem", "read"},
	}
}

type searchArgs struct {
	Path    string  `json:"path"`
	Pattern string  `json:"pattern"`
	Content *string `json:"content"`
}

// searchMatch is one search_files result entry.
type searchMatch struct {
	Path    string
	Type    string
	Size    int64
	Line    int // 1-based; 0 without content
	Excerpt string
}

// searchDir is a directory waiting to be walked.
type searchDir struct {
	rel   string      // workspace-relative path, opened through the root
	canon string      // rel with the search root's links resolved (deny-list)
	state globState   // pattern state after this directory's names
	info  fs.FileInfo // lstat when listed: the directory opened must be this one
}

// searcher holds one search_files call's state and budgets.
type searcher struct {
	w         *Workspace
	ctx       context.Context
	g         globPattern
	needle    []byte
	matches   []searchMatch
	entries   int
	bytesRead int64
	skipped   int
	truncBy   string
}

// searchFiles implements search_files.
//
// Arguments: {"path": string, "pattern": string, "content"?: string}. path
// must be a directory (checked like list_directory); pattern is compiled
// by compileGlob and matched against each entry's path relative to path.
// The walk goes through the root, depth first with each directory's
// entries in byte order, and never follows a symbolic link: a link is
// reported as type "symlink" and not descended into or read, and every
// directory and file opened is checked (os.SameFile against the lstat
// taken when it was listed) to be the entry listed, so swapping a
// directory for a link mid-walk only drops it. Deny-listed entries are
// neither reported, descended into nor read.
//
// With content, only regular files with one hard link are read (others
// are skipped and counted), up to MaxSearchBytes in total; a match
// reports the 1-based line of the first occurrence and, when valid UTF-8,
// an excerpt of that line.
//
// Bounds: at most MaxSearchResults matches, MaxSearchEntries directory
// entries examined and MaxSearchBytes file bytes read per call; when one is
// hit the walk stops and the result says "truncated": true with
// "truncated_by" "max_results", "max_entries" or "max_bytes".
//
// Result: Structured is {"path", "pattern", "matches": [{"path"
// (workspace-relative), "type", "size", "line"?, "excerpt"?}],
// "truncated", "truncated_by"?, "entries_scanned", "bytes_read",
// "skipped"}.
func (w *Workspace) searchFiles(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	var a searchArgs
	if te := decodeArgs(raw, &a, "path", "pattern", "content"); te != nil {
		return nil, te
	}
	g, te := compileGlob(a.Pattern)
	if te != nil {
		return nil, te
	}
	var needle []byte
	if a.Content != nil {
		switch n := len(*a.Content); {
		case n == 0:
			return nil, tool.Errorf(reason.InvalidArguments, errors.New("empty content"), "content must not be empty")
		case n > maxContentBytes:
			return nil, tool.Errorf(reason.InvalidArguments, errors.New("content too long"), "content is longer than %d bytes", maxContentBytes)
		}
		needle = []byte(*a.Content)
	}
	rel, canon, te := w.checkPath(a.Path, true)
	if te != nil {
		return nil, te
	}
	d, err := w.root.OpenFile(rel, openReadFlags, 0)
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	fi, err := d.Stat()
	d.Close()
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	if !fi.IsDir() {
		return nil, tool.Errorf(reason.PathForbidden, fmt.Errorf("%w (type %q)", errNotDir, fileType(fi.Mode())),
			"%q: not a directory", clip(rel))
	}
	if te := w.sameFile(a.Path, canon, fi); te != nil {
		return nil, te
	}

	s := &searcher{w: w, ctx: ctx, g: g, needle: needle}
	if te := s.walk(searchDir{rel: rel, canon: canon, state: g.start(), info: fi}); te != nil {
		return nil, te
	}
	return s.result(rel, a.Pattern), nil
}

// walk visits root and the directories below it, depth first.
func (s *searcher) walk(root searchDir) *tool.Error {
	stack := []searchDir{root}
	for len(stack) > 0 && s.truncBy == "" {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		subdirs, te := s.visit(d)
		if te != nil {
			return te
		}
		for _, sd := range slices.Backward(subdirs) {
			stack = append(stack, sd)
		}
	}
	return nil
}

// visit lists one directory, records its matching entries and returns its
// subdirectories worth descending into, in order.
func (s *searcher) visit(d searchDir) ([]searchDir, *tool.Error) {
	w := s.w
	f, err := w.root.OpenFile(d.rel, openReadFlags, 0)
	if err != nil {
		s.skipped++ // removed or replaced since it was listed
		return nil, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.IsDir() || !os.SameFile(fi, d.info) {
		s.skipped++ // not the directory that was listed (a swapped-in link, ...)
		return nil, nil
	}
	left := w.cfg.MaxSearchEntries - s.entries
	ents, err := f.ReadDir(left + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		s.skipped++
		return nil, nil
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	if len(ents) > left {
		ents = ents[:left]
		defer func() { s.truncate(truncEntries) }()
	}
	var subdirs []searchDir
	for _, e := range ents {
		if te := ctxError(s.ctx); te != nil {
			return nil, te
		}
		s.entries++
		name := e.Name()
		rel, canon := path.Join(d.rel, name), path.Join(d.canon, name)
		if _, bad := w.deniedBy(canon); bad {
			continue
		}
		if _, bad := w.deniedBy(rel); bad {
			continue
		}
		st := s.g.step(d.state, name)
		if st == 0 {
			continue
		}
		info, err := e.Info() // lstat, through the directory's descriptor
		if err != nil {
			s.skipped++
			continue
		}
		if s.g.matches(st) {
			if !s.consider(rel, info) {
				return nil, nil
			}
		}
		if info.IsDir() && s.g.more(st) {
			subdirs = append(subdirs, searchDir{rel: rel, canon: canon, state: st, info: info})
		}
	}
	return subdirs, nil
}

// consider records the matching entry rel if it qualifies. It returns
// false when a budget ran out and the walk must stop.
func (s *searcher) consider(rel string, info fs.FileInfo) bool {
	m := searchMatch{Path: rel, Type: fileType(info.Mode())}
	if m.Type == typeFile {
		m.Size = info.Size()
	}
	if s.needle != nil {
		if m.Type != typeFile {
			return true
		}
		found, ok := s.scan(rel, info, &m)
		if !ok {
			return false
		}
		if !found {
			return true
		}
	}
	if len(s.matches) >= s.w.cfg.MaxSearchResults {
		s.truncate(truncResults)
		return false
	}
	s.matches = append(s.matches, m)
	return true
}

// scan looks for the needle in the regular file rel, listed with info. It
// reads through the root, non-blocking, and only if the opened descriptor
// is a regular file with one link and the very file listed. found reports
// a match (filling m.Line and m.Excerpt); ok is false when the byte budget
// ran out before the file was fully read.
func (s *searcher) scan(rel string, info fs.FileInfo, m *searchMatch) (found, ok bool) {
	w := s.w
	f, err := w.root.OpenFile(rel, openReadFlags, 0)
	if err != nil {
		s.skipped++
		return false, true
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || checkRegular(rel, fi) != nil || !os.SameFile(fi, info) {
		s.skipped++
		return false, true
	}
	m.Size = fi.Size()
	keep := len(s.needle) - 1
	buf := make([]byte, 0, scanChunk+keep)
	lines := 0 // newlines in the bytes already dropped from buf
	for {
		left := s.w.cfg.MaxSearchBytes - s.bytesRead
		if left <= 0 {
			s.truncate(truncBytes)
			return false, false
		}
		n, err := f.Read(buf[len(buf):min(cap(buf), len(buf)+int(min(left, scanChunk)))])
		s.bytesRead += int64(n)
		buf = buf[:len(buf)+n]
		if i := bytes.Index(buf, s.needle); i >= 0 {
			m.Line = lines + bytes.Count(buf[:i], []byte{'\n'}) + 1
			m.Excerpt = excerpt(buf, i, len(s.needle))
			return true, true
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.skipped++
			}
			return false, true
		}
		drop := max(len(buf)-keep, 0)
		lines += bytes.Count(buf[:drop], []byte{'\n'})
		buf = buf[:copy(buf, buf[drop:])]
	}
}

// excerpt returns the part of buf's line around the match at i (length
// n), at most excerptBefore bytes before and excerptAfter after, or "" if
// that is not valid UTF-8.
func excerpt(buf []byte, i, n int) string {
	start := max(i-excerptBefore, 0)
	if nl := bytes.LastIndexByte(buf[start:i], '\n'); nl >= 0 {
		start += nl + 1
	}
	end := min(i+n+excerptAfter, len(buf))
	if nl := bytes.IndexByte(buf[i+n:end], '\n'); nl >= 0 {
		end = i + n + nl
	}
	for start < i && !utf8.RuneStart(buf[start]) {
		start++
	}
	for end > i+n && end < len(buf) && !utf8.RuneStart(buf[end]) {
		end--
	}
	ex := bytes.TrimRight(buf[start:end], "\r")
	if !utf8.Valid(ex) {
		return ""
	}
	return string(ex)
}

// truncate records the first budget that stopped the walk.
func (s *searcher) truncate(by string) {
	if s.truncBy == "" {
		s.truncBy = by
	}
}

// result renders the search_files result.
func (s *searcher) result(rel, pattern string) *tool.Result {
	var b strings.Builder
	for _, m := range s.matches {
		p := displayName(m.Path)
		switch {
		case m.Line > 0 && m.Excerpt != "":
			fmt.Fprintf(&b, "%s:%d: %s\n", p, m.Line, displayName(m.Excerpt))
		case m.Line > 0:
			fmt.Fprintf(&b, "%s:%d\n", p, m.Line)
		case m.Type == typeDir:
			fmt.Fprintf(&b, "%s/\n", p)
		case m.Type == typeSymlink:
			fmt.Fprintf(&b, "%s@\n", p)
		default:
			fmt.Fprintf(&b, "%s\n", p)
		}
	}
	if len(s.matches) == 0 {
		b.WriteString("(no matches)\n")
	}
	if s.truncBy != "" {
		fmt.Fprintf(&b, "(truncated: %s reached after %d entries and %d bytes; narrow path or pattern)\n",
			s.truncBy, s.entries, s.bytesRead)
	}
	matches := make([]map[string]any, 0, len(s.matches))
	for _, m := range s.matches {
		e := map[string]any{"path": m.Path, "type": m.Type, "size": m.Size}
		if m.Line > 0 {
			e["line"] = m.Line
			if m.Excerpt != "" {
				e["excerpt"] = m.Excerpt
			}
		}
		matches = append(matches, e)
	}
	st := map[string]any{
		"path":            rel,
		"pattern":         pattern,
		"matches":         matches,
		"truncated":       s.truncBy != "",
		"entries_scanned": s.entries,
		"bytes_read":      s.bytesRead,
		"skipped":         s.skipped,
	}
	if s.truncBy != "" {
		st["truncated_by"] = s.truncBy
	}
	return &tool.Result{Text: b.String(), Structured: st}
}

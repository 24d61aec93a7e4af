package pin

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Scan rules: the stable ids of Finding.Rule. Each is a heuristic tuned for
// few false positives on ordinary tool descriptions; a finding only means
// an admin must look before the tool is offered. Phrase rules match on a
// normalized copy of the text: lower case, invisible characters dropped,
// runs of whitespace as one space, fullwidth ASCII and curly quotes folded,
// and Unicode tag characters (U+E0020-U+E007E, "ASCII smuggling") read as
// the ASCII they encode. The attacks are those of Invariant Labs' "tool
// poisoning" and "rug pull" reports (2025) and Trojan Source
// (CVE-2021-42574).
const (
	// RuleHiddenInstruction: prompt-injection markers and phrases: tags
	// such as <IMPORTANT>, <system>, <instructions>, <hidden>, </important>;
	// chat-template tokens (<|im_start|>, [INST], <<SYS>>); HTML comments
	// (<!--, hidden when Markdown is rendered); "ignore/disregard/forget
	// (all) previous/prior/above instructions"; "do not tell/inform/mention
	// (this) to the user", "without telling the user", "hide this from the
	// user"; "reveal/leak/repeat your system prompt".
	RuleHiddenInstruction = "hidden-instruction"
	// RuleSensitiveFile: secret files and the environment: ~/.ssh, id_rsa
	// and the other key names, authorized_keys, .env (.env.local, ...),
	// ~/.aws, .kube/config, .docker/config.json, .netrc, .git-credentials,
	// .npmrc, .pypirc, .pgpass, .gnupg, /etc/passwd and /etc/shadow,
	// /proc/self/environ, shell histories, MCP client configuration
	// (mcp.json, claude_desktop_config.json, ~/.cursor/, ~/.claude/,
	// .config/gcloud|gh), and requests to send or dump ("all") environment
	// variables. Words such as "config" or "configuration" alone are not
	// flagged.
	RuleSensitiveFile = "sensitive-file"
	// RuleCrossTool: instructions about other tools (tool shadowing): "when
	// (you) call(ing) send_email, (...) also/always/first/make sure ...",
	// "before/after/instead of using any (other) tool", "instead of
	// (using) read_file", "overrides all other tools/instructions". A tool
	// is recognised by an underscore, quotes or backticks, or the word
	// "tool" after it, and a tool mentioning itself is not flagged.
	RuleCrossTool = "cross-tool"
	// RuleWhitespacePadding: a run of 64 or more whitespace characters, or
	// of 8 or more line breaks, that pushes text out of view.
	RuleWhitespacePadding = "whitespace-padding"
	// RuleInvisibleUnicode: characters that render as nothing: zero-width
	// space/joiners (U+200B-U+200D, U+2060, U+FEFF), soft hyphen, tag
	// characters (U+E0000-U+E007F, always, even in flag emoji), fillers
	// (U+3164, U+115F, U+2800, ...), other format (Cf) characters, control
	// characters other than tab, CR and LF (including ESC: terminal
	// escapes), and variation selectors other than one directly after a
	// visible non-ASCII character, a digit, '#' or '*' (emoji smuggling). ZWJ and ZWNJ between non-ASCII letters
	// (Indic, Arabic) and ZWJ inside emoji sequences are not flagged.
	RuleInvisibleUnicode = "invisible-unicode"
	// RuleBidiUnicode: bidirectional controls that reorder what is shown
	// (Trojan Source, CVE-2021-42574): U+202A-U+202E, U+2066-U+2069,
	// U+200E, U+200F, U+061C.
	RuleBidiUnicode = "bidi-unicode"
	// RuleMalformed: a part that cannot be scanned: a schema or the
	// annotations not well-formed JSON (syntax, invalid UTF-8, a duplicate
	// key, a lone surrogate escape, nesting deeper than 256), or a name,
	// title or description that is not UTF-8. Accept refuses it.
	RuleMalformed = "malformed"
)

// MaxExcerpt bounds Finding.Excerpt, in bytes; maxField bounds
// Finding.Field. maxFindings bounds the findings of one definition (one per
// rule and field).
const (
	MaxExcerpt  = 200
	maxField    = 200
	maxFindings = 64
)

// Finding is one thing Scan flagged.
type Finding struct {
	// Rule is one of the Rule constants.
	Rule string `json:"rule"`
	// Field says where: "name", "title", "description", or a path into a
	// schema or the annotations ("inputSchema.properties.path.description",
	// "inputSchema.properties.mode.enum[2]"); a property name is reported
	// at its own path. Unusual keys are quoted and escaped; at most 200
	// bytes.
	Field string `json:"field"`
	// Excerpt is the flagged text with some context, hidden characters
	// shown as \u{XXXX}, long whitespace as "[N whitespace]": valid UTF-8,
	// at most MaxExcerpt bytes.
	Excerpt string `json:"excerpt"`
}

// Scan returns the poisoning findings of d (see the Rule constants): its
// name, title and description, and every string and property name in its
// schemas and annotations (descriptions, titles, enum values, defaults,
// examples, ...), at most one finding per rule and field, at most 64 in
// all, in a stable order. nil means nothing was found.
func Scan(d Definition) []Finding {
	return scanParsed(d, parseFields(d))
}

type scanner struct {
	self  string // the tool's own name, lower case
	out   []Finding
	found map[string]bool
}

func scanParsed(d Definition, fields []jsonField) []Finding {
	s := &scanner{self: strings.ToLower(d.Name), found: map[string]bool{}}
	for _, f := range []struct{ field, text string }{{"name", d.Name}, {"title", d.Title}, {"description", d.Description}} {
		if !utf8.ValidString(f.text) {
			s.add(RuleMalformed, f.field, "invalid UTF-8")
		}
		s.text(f.field, strings.ToValidUTF8(f.text, "\uFFFD"))
	}
	for _, f := range fields {
		switch {
		case f.raw == nil:
		case f.err != nil:
			s.add(RuleMalformed, f.key, f.err.Error())
		default:
			s.walk(f.key, f.value)
		}
	}
	return s.out
}

func (s *scanner) full() bool { return len(s.out) >= maxFindings }

func (s *scanner) add(rule, field, excerpt string) {
	if s.full() || s.found[rule+"\x00"+field] {
		return
	}
	s.found[rule+"\x00"+field] = true
	s.out = append(s.out, Finding{Rule: rule, Field: boundField(field), Excerpt: excerpt})
}

func (s *scanner) walk(path string, v any) {
	if s.full() {
		return
	}
	switch v := v.(type) {
	case string:
		s.text(path, v)
	case []any:
		for i, e := range v {
			s.walk(path+"["+strconv.Itoa(i)+"]", e)
		}
	case map[string]any:
		for _, k := range sortedKeys(v) {
			p := path + "." + segment(k)
			s.text(p, k)
			s.walk(p, v[k])
		}
	}
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_$@-]{1,64}$`)

// segment is key as a path segment: as is when plain, else quoted, escaped
// and shortened.
func segment(k string) string {
	if plainKey.MatchString(k) {
		return k
	}
	var b strings.Builder
	b.WriteByte('"')
	if appendEscaped(&b, k, 64) {
		b.WriteString("…")
	}
	b.WriteByte('"')
	return b.String()
}

// boundField keeps the end of a field path longer than maxField bytes.
func boundField(f string) string {
	if len(f) <= maxField {
		return f
	}
	i := len(f) - (maxField - len("…"))
	for i < len(f) && !utf8.RuneStart(f[i]) {
		i++
	}
	return "…" + f[i:]
}

// text runs every rule over one string.
func (s *scanner) text(field, t string) {
	if s.full() || t == "" {
		return
	}
	if i, n, ok := firstBidi(t); ok {
		s.add(RuleBidiUnicode, field, excerpt(t, i, i+n))
	}
	if i, n, ok := firstInvisible(t); ok {
		s.add(RuleInvisibleUnicode, field, invisibleExcerpt(t, i, i+n))
	}
	if i, j, ok := padding(t); ok {
		s.add(RuleWhitespacePadding, field, excerpt(t, i, j))
	}
	n := normalize(t)
	matched := map[string]bool{}
	for _, ph := range phrases {
		if matched[ph.rule] || !ph.triggered(n.s) {
			continue
		}
		if i, j, ok := ph.match(s, n.s); ok {
			matched[ph.rule] = true
			s.add(ph.rule, field, excerpt(t, n.start[i], n.end[j-1]))
		}
	}
}

// phrase is one pattern of a phrase rule. any lists literals of which the
// pattern needs at least one: text holding none of them is not matched
// against re (regexp is slow; strings.Contains is not).
type phrase struct {
	rule  string
	any   []string
	re    *regexp.Regexp
	named bool // re has (open)(name)(close)(tool) groups: see crossTool
}

func (ph *phrase) triggered(t string) bool {
	for _, a := range ph.any {
		if strings.Contains(t, a) {
			return true
		}
	}
	return false
}

func (ph *phrase) match(s *scanner, t string) (int, int, bool) {
	if ph.named {
		return s.namedTool(ph.re, t)
	}
	m := ph.re.FindStringIndex(t)
	if m == nil {
		return 0, 0, false
	}
	return m[0], m[1], true
}

// toolName matches a tool name in normalized text, in groups: an opening
// quote, the name, a closing quote, and " tool" after it.
const toolName = `([\x60'"]?)([a-z0-9](?:[a-z0-9_.-]*[a-z0-9_])?)([\x60'"]?)(\s(?:tool|function)\b)?`

// phrases are the phrase rules (see the Rule constants), on normalized
// text, in the order they are tried.
var phrases = []phrase{
	{rule: RuleHiddenInstruction, any: []string{"<"}, re: regexp.MustCompile(
		`<\s?/?\s?(?:important|system|instructions?|hidden|sys|critical|override)\b[^<>]{0,40}>` +
			`|<!--|<\|(?:im_start|im_end|system|endoftext)\|>|<</?sys>>`)},
	{rule: RuleHiddenInstruction, any: []string{"inst]"}, re: regexp.MustCompile(`\[/?inst\]`)},
	{rule: RuleHiddenInstruction, any: []string{"ignore", "disregard", "forget", "override", "bypass"}, re: regexp.MustCompile(
		`\b(?:ignore|disregard|forget|override|bypass)\s(?:(?:all|any|the|your|of|these|those|my|every)\s){0,6}` +
			`(?:previous|prior|above|preceding|earlier|former|original|other|system|safety|existing)\s` +
			`(?:instructions?|prompts?|directions?|rules|guidelines|guidance|messages?|context|directives?|constraints|commands)\b`)},
	{rule: RuleHiddenInstruction, any: []string{"user"}, re: regexp.MustCompile(
		`\b(?:do not|don'?t|never|must not|mustn'?t|should not|shouldn'?t|without)\s` +
			`(?:tell|telling|inform|informing|notify|notifying|alert|alerting|mention|mentioning|reveal|revealing|disclose|disclosing)` +
			`(?:\s(?:this|it|that|anything|them|any of this))?(?:\s(?:to|with))?\s(?:the\s)?users?(?:$|[^'a-z0-9_])` +
			`|\b(?:hide|conceal)\s(?:this|it|that|these|them|the following)\sfrom\s(?:the\s)?user\b` +
			`|\bkeep\s(?:this|it|that|these)\s(?:secret|hidden|private)\sfrom\s(?:the\s)?user\b`)},
	{rule: RuleHiddenInstruction, any: []string{"system prompt", "system instructions", "hidden instructions"}, re: regexp.MustCompile(
		`\b(?:reveal|leak|disclose|exfiltrate|repeat)\s(?:(?:your|the|full|entire|whole|complete|all)\s){0,4}` +
			`(?:system prompt|system instructions|hidden instructions)\b`)},

	{rule: RuleSensitiveFile, any: []string{".ssh", "id_", "authorized_keys", ".env", ".aws", ".kube", ".docker", ".netrc",
		".git-credentials", ".npmrc", ".pypirc", ".pgpass", ".gnupg", ".password-store", ".vault-token", ".s3cfg",
		"/etc/", "/proc/", ".json", ".cursor", ".claude", ".codeium", ".config", "_history"}, re: regexp.MustCompile(strings.Join([]string{
		`(?:^|[^a-z0-9_.-])\.ssh\b`,
		`\bid_(?:rsa|dsa|ecdsa|ed25519)\b`,
		`\bauthorized_keys\b`,
		`(?:^|[\s"'\x60(\[=/\\:,])\.env(?:\.[a-z0-9_-]+)?\b`,
		`(?:^|[^a-z0-9_.-])\.aws\b`,
		`\.kube[/\\]config\b`,
		`\.docker[/\\]config\.json\b`,
		`(?:^|[^a-z0-9_.-])\.(?:netrc|git-credentials|npmrc|pypirc|pgpass|gnupg|password-store|vault-token|s3cfg)\b`,
		`/etc/(?:passwd|shadow|gshadow|sudoers)\b`,
		`/proc/(?:self|\d+|\*)/environ\b`,
		`\b(?:claude_desktop_config|mcp)\.json\b`,
		`(?:^|[^a-z0-9_.-])\.(?:cursor|claude|codeium)[/\\]`,
		`\.config[/\\](?:gcloud|gh|claude|cursor)\b`,
		`\.(?:bash|zsh|sh|python|psql|mysql|node_repl|sqlite)_history\b`,
	}, "|"))},
	{rule: RuleSensitiveFile, any: []string{"environment variables", "env vars", "env variables"}, re: regexp.MustCompile(
		`\b(?:send|include|attach|upload|post|dump|exfiltrate|leak|share|forward|copy)\s` +
			`(?:(?:all|the|your|any|every|of|user'?s|current|process)\s){0,4}(?:environment variables|env vars|env variables)\b` +
			`|\b(?:read|collect|list|print|get|gather)\s(?:all|every)\s(?:(?:the|your|of|user'?s|current|process)\s){0,4}` +
			`(?:environment variables|env vars|env variables)\b`)},

	{rule: RuleCrossTool, any: []string{"tool", "function", "instruction"}, re: regexp.MustCompile(
		`\b(?:before|after|instead of|prior to|when|whenever|every time|each time|while)\s(?:you\s)?` +
			`(?:use|using|call|calling|invoke|invoking|run|running|execute|executing)\s(?:(?:any|all|every|each|other|another)\s){1,3}` +
			`(?:of the\s)?(?:other\s)?(?:mcp\s)?(?:tools?|functions?)\b` +
			`|\b(?:overrides?|supersedes?|takes? precedence over)\s(?:(?:all|any|the|every|your)\s){0,3}` +
			`(?:other|previous|prior|existing|default)\s(?:tools?|instructions|functions)\b`)},
	// A named tool after "when(ever) ... call(ing)/use/...", with a
	// directive later in the same sentence.
	{rule: RuleCrossTool, any: []string{"when", "every time", "each time"}, named: true, re: regexp.MustCompile(
		`\b(?:when|whenever|every time|each time)\s` +
			`(?:(?:you|the assistant|the agent|the model|the ai|an? (?:assistant|agent|model))\s)?` +
			`(?:call|calls|calling|use|uses|using|invoke|invokes|invoking|run|runs|running|execute|executes|executing)\s` +
			`(?:the\s)?(?:(?:tool|function)\s)?` + toolName +
			`[^.;!?]{0,100}?[\s,:;(-](?:also|always|first|additionally|instead|secretly|silently|make sure|be sure|remember to|ensure|must|should)\b`)},
	// "instead of (using) X": shadowing another tool.
	{rule: RuleCrossTool, any: []string{"instead of"}, named: true, re: regexp.MustCompile(
		`\binstead of\s(?:(?:using|calling|invoking)\s)?(?:the\s)?(?:(?:tool|function)\s)?` + toolName)},
}

// notTools are words that follow "when using" without naming a tool.
var notTools = map[string]bool{"this": true, "that": true, "it": true, "these": true, "those": true, "the": true,
	"a": true, "an": true, "any": true, "each": true, "every": true, "such": true, "your": true, "our": true,
	"another": true, "other": true, "them": true, "all": true}

// namedTool returns the first match of re (see toolName) that names a tool
// other than the scanned one: a name with an underscore, in quotes or
// backticks, or followed by "tool".
func (s *scanner) namedTool(re *regexp.Regexp, t string) (int, int, bool) {
	// A rejected candidate must not hide a later one inside its span, so
	// resume just after its start.
	for pos := 0; pos < len(t); {
		m := re.FindStringSubmatchIndex(t[pos:])
		if m == nil {
			break
		}
		open, name, closing := t[pos+m[2]:pos+m[3]], t[pos+m[4]:pos+m[5]], t[pos+m[6]:pos+m[7]]
		named := strings.Contains(name, "_") || (open != "" && open == closing) || m[8] >= 0
		if named && !notTools[name] && name != s.self {
			return pos + m[0], pos + m[1], true
		}
		pos += m[0] + 1
	}
	return 0, 0, false
}

// normText is a normalized copy of a string (see the Rule constants), with
// the span in the original of the rune behind each of its bytes.
type normText struct {
	s          string
	start, end []int
}

func normalize(t string) normText {
	var b strings.Builder
	n := normText{start: make([]int, 0, len(t)), end: make([]int, 0, len(t))}
	emit := func(r rune, from, to int) {
		k := utf8.RuneLen(r)
		if k < 0 {
			r, k = utf8.RuneError, 3
		}
		b.WriteRune(r)
		for range k {
			n.start = append(n.start, from)
			n.end = append(n.end, to)
		}
	}
	space, inTags := true, false // true at the start: no leading space
	for i, r := range t {
		to := i + utf8.RuneLen(r)
		if r == utf8.RuneError {
			to = i + 1
			if _, size := utf8.DecodeRuneInString(t[i:]); size > 1 {
				to = i + size
			}
		}
		tag := r >= 0xE0020 && r <= 0xE007E
		if tag != inTags && !space {
			emit(' ', i, to)
			space = true
		}
		inTags = tag
		switch {
		case tag:
			r = r - 0xE0000
		case unicode.IsSpace(r):
			if !space {
				emit(' ', i, to)
				space = true
			}
			continue
		case hiddenRune(r):
			continue
		case r >= 0xFF01 && r <= 0xFF5E: // fullwidth ASCII
			r -= 0xFEE0
		case r == '\u2018' || r == '\u2019' || r == '\u02BC' || r == '\u2032':
			r = '\''
		case r == '\u201C' || r == '\u201D':
			r = '"'
		}
		if unicode.IsSpace(r) { // a tag space
			if !space {
				emit(' ', i, to)
				space = true
			}
			continue
		}
		emit(unicode.ToLower(r), i, to)
		space = false
	}
	n.s = b.String()
	return n
}

// padding returns the first run of at least 64 whitespace characters, or
// of at least 8 line breaks.
func padding(t string) (int, int, bool) {
	const minRun, minLines = 64, 8
	start, runes, lines := -1, 0, 0
	for i, r := range t {
		if !unicode.IsSpace(r) {
			start, runes, lines = -1, 0, 0
			continue
		}
		if start < 0 {
			start = i
		}
		runes++
		switch r {
		case '\n', '\v', '\f', '\u0085', '\u2028', '\u2029':
			lines++
		case '\r':
			if !strings.HasPrefix(t[i+1:], "\n") {
				lines++
			}
		}
		if runes >= minRun || lines >= minLines {
			end := i + utf8.RuneLen(r)
			for end < len(t) {
				r2, size := utf8.DecodeRuneInString(t[end:])
				if !unicode.IsSpace(r2) {
					break
				}
				end += size
			}
			return start, end, true
		}
	}
	return 0, 0, false
}

func isBidi(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F || r == 0x061C
}

func isVariationSelector(r rune) bool {
	return (r >= 0xFE00 && r <= 0xFE0F) || (r >= 0xE0100 && r <= 0xE01EF)
}

func isTag(r rune) bool { return r >= 0xE0000 && r <= 0xE007F }

// isFiller reports characters that are letters or symbols by category but
// render as blank.
func isFiller(r rune) bool {
	switch r {
	case 0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F, 0x17B4, 0x17B5, 0x1D159:
		return true
	}
	return r >= 0x180B && r <= 0x180F
}

// isVisibleFormat reports the format (Cf) characters that do render
// (prepended concatenation marks).
func isVisibleFormat(r rune) bool {
	switch r {
	case 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD:
		return true
	}
	return r >= 0x0600 && r <= 0x0605
}

// hiddenRune reports whether r, wherever it stands, can hide or reorder
// text: control characters other than tab, CR and LF, bidi controls,
// variation selectors, tag characters, fillers and other format characters.
func hiddenRune(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r':
		return false
	case unicode.IsControl(r), isBidi(r), isVariationSelector(r), isTag(r), isFiller(r):
		return true
	case unicode.Is(unicode.Cf, r):
		return !isVisibleFormat(r)
	}
	return false
}

// displayable reports whether r is shown as is to an admin (in excerpts
// and diffs); everything else is escaped.
func displayable(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' || (unicode.IsGraphic(r) && !hiddenRune(r))
}

func firstBidi(t string) (int, int, bool) {
	for i, r := range t {
		if isBidi(r) {
			return i, utf8.RuneLen(r), true
		}
	}
	return 0, 0, false
}

// firstInvisible returns the first hidden character (not bidi: see
// firstBidi) that its neighbours do not explain.
func firstInvisible(t string) (int, int, bool) {
	prev := rune(-1)
	for i, r := range t {
		size := utf8.RuneLen(r)
		if r == utf8.RuneError {
			_, size = utf8.DecodeRuneInString(t[i:])
		}
		if hiddenRune(r) && !isBidi(r) {
			next := rune(-1)
			if i+size < len(t) {
				next, _ = utf8.DecodeRuneInString(t[i+size:])
			}
			if !joined(prev, r, next) {
				return i, size, true
			}
		}
		prev = r
	}
	return 0, 0, false
}

// joined reports the legitimate uses of ZWJ, ZWNJ and variation selectors.
func joined(prev, r, next rune) bool {
	script := func(c rune) bool { return c >= 0x80 && unicode.In(c, unicode.L, unicode.M) && !hiddenRune(c) }
	emoji := func(c rune) bool { return unicode.Is(unicode.So, c) || (c >= 0x1F000 && c <= 0x1FAFF) }
	switch {
	case r == 0x200C: // ZWNJ: Persian, Indic
		return script(prev) && script(next)
	case r == 0x200D: // ZWJ: Indic conjuncts, emoji sequences
		return (script(prev) && script(next)) ||
			((emoji(prev) || isVariationSelector(prev) || (prev >= 0x1F3FB && prev <= 0x1F3FF)) && emoji(next))
	case isVariationSelector(r): // one, right after a visible character
		return prev >= 0 && !hiddenRune(prev) && !unicode.IsSpace(prev) &&
			(prev >= 0x80 || strings.ContainsRune("#*0123456789", prev))
	}
	return false
}

// excerpt renders t[start:end] with up to 32 characters of context either
// side, bounded by MaxExcerpt.
func excerpt(t string, start, end int) string {
	return excerptBudget(t, start, end, MaxExcerpt)
}

func excerptBudget(t string, start, end, budget int) string {
	from, to := start, end
	for k := 0; k < 32 && from > 0; k++ {
		_, size := utf8.DecodeLastRuneInString(t[:from])
		from -= size
	}
	for k := 0; k < 32 && to < len(t); k++ {
		_, size := utf8.DecodeRuneInString(t[to:])
		to += size
	}
	var b strings.Builder
	if from > 0 {
		b.WriteString("…")
	}
	if appendEscaped(&b, t[from:to], budget-len("…")) || to < len(t) {
		b.WriteString("…")
	}
	return b.String()
}

// invisibleExcerpt is excerpt, followed for tag characters by the ASCII
// they spell.
func invisibleExcerpt(t string, start, end int) string {
	r, _ := utf8.DecodeRuneInString(t[start:])
	if !isTag(r) {
		return excerpt(t, start, end)
	}
	var hidden strings.Builder
	for _, r := range t[start:] {
		if !isTag(r) {
			break
		}
		if r >= 0xE0020 && r <= 0xE007E {
			hidden.WriteRune(r - 0xE0000)
		}
	}
	const suffix = 80
	var b strings.Builder
	b.WriteString(excerptBudget(t, start, end, MaxExcerpt-suffix))
	b.WriteString(` (tag text "`)
	if appendEscaped(&b, hidden.String(), MaxExcerpt-len(`…")`)) {
		b.WriteString("…")
	}
	b.WriteString(`")`)
	return b.String()
}

// appendEscaped writes t to b, hidden and non-graphic characters as
// \u{XXXX}, newlines and tabs as \n and \t, a backslash as \\, and runs of
// more than 3 whitespace characters as "[N whitespace]", stopping before b
// would exceed limit bytes. It reports whether it stopped early.
func appendEscaped(b *strings.Builder, t string, limit int) bool {
	for i := 0; i < len(t); {
		r, size := utf8.DecodeRuneInString(t[i:])
		tok, adv := "", size
		if unicode.IsSpace(r) {
			j, n := i, 0
			for j < len(t) {
				r2, s2 := utf8.DecodeRuneInString(t[j:])
				if !unicode.IsSpace(r2) {
					break
				}
				j, n = j+s2, n+1
			}
			if n > 3 {
				tok, adv = "["+strconv.Itoa(n)+" whitespace]", j-i
			}
		}
		if tok == "" {
			tok = escapeRune(r)
		}
		if b.Len()+len(tok) > limit {
			return true
		}
		b.WriteString(tok)
		i += adv
	}
	return false
}

func escapeRune(r rune) string {
	switch {
	case r == '\n':
		return `\n`
	case r == '\t':
		return `\t`
	case r == '\r':
		return `\r`
	case r == '\\':
		return `\\`
	case r == ' ' || (displayable(r) && !unicode.IsSpace(r)):
		return string(r)
	}
	return fmt.Sprintf(`\u{%04X}`, r)
}

// escapeText returns t with every character an admin would not see
// escaped as \u{XXXX}; line breaks and tabs stay.
func escapeText(t string) string {
	var b strings.Builder
	for _, r := range t {
		if r == '\n' || r == '\t' || r == ' ' || (displayable(r) && !unicode.IsSpace(r)) {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\u{%04X}`, r)
	}
	return b.String()
}

package sqlquery

import (
	"errors"
	"fmt"
	"strings"
)

// Causes of refused queries (audit only; the client gets the *queryError
// message).
var (
	errEmptyQuery     = errors.New("empty query")
	errMultiStatement = errors.New("more than one statement")
	errParameter      = errors.New("bound parameter")
	errNotReadOnly    = errors.New("statement kind not allowed")
	errNULQuery       = errors.New("query contains NUL")
)

// queryError is a refused query: a category (one of the errors above) and
// a message safe to show the client.
type queryError struct {
	cat error
	msg string
}

func (e *queryError) Error() string { return e.msg }
func (e *queryError) Unwrap() error { return e.cat }

func refuse(cat error, format string, args ...any) *queryError {
	return &queryError{cat: cat, msg: fmt.Sprintf(format, args...)}
}

// token kinds, as far as statement splitting and classification need
// them. The rules follow SQLite's tokenizer (tokenize.c, sqlite3GetToken).
type tokKind int

const (
	tkSpace   tokKind = iota // white space
	tkComment                // -- to end of line, /* to */ or end of text
	tkQuoted                 // '...', "...", `...` (doubled quote escapes), [...]
	tkWord                   // identifier or keyword
	tkNumber                 // numeric literal
	tkVar                    // bound parameter: ? :name @name $name #name
	tkSemi                   // ;
	tkOther                  // an operator or punctuation, one byte
)

type token struct {
	kind tokKind
	text string
}

// isSpace is SQLite's class CC_SPACE: space, \t, \n, \f, \r. (\v is only
// white space inside a run of other white space; here it is tkOther,
// which errs on the side of refusing.)
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// isIDStart and isIDChar follow SQLite's IdChar: letters, '_', bytes
// >= 0x80 (UTF-8) and, after the first byte, digits and '$'.
func isIDStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIDChar(c byte) bool { return isIDStart(c) || c >= '0' && c <= '9' || c == '$' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// nextToken returns the token at the start of s (s non-empty).
func nextToken(s string) token {
	c := s[0]
	n := 1
	kind := tkOther
	switch {
	case isSpace(c):
		kind = tkSpace
		for n < len(s) && isSpace(s[n]) {
			n++
		}
	case c == '-' && len(s) > 1 && s[1] == '-':
		kind = tkComment
		for n < len(s) && s[n] != '\n' {
			n++
		}
	case c == '/' && len(s) > 2 && s[1] == '*':
		// SQLite: "/*" followed by at least one byte opens a comment that
		// runs to "*/" or to the end of the text.
		kind = tkComment
		if i := strings.Index(s[2:], "*/"); i >= 0 {
			n = 2 + i + 2
		} else {
			n = len(s)
		}
	case c == '\'' || c == '"' || c == '`':
		kind = tkQuoted
		for n < len(s) {
			if s[n] == c {
				if n+1 < len(s) && s[n+1] == c {
					n += 2
					continue
				}
				n++
				break
			}
			n++
		}
	case c == '[':
		kind = tkQuoted
		if i := strings.IndexByte(s, ']'); i >= 0 {
			n = i + 1
		} else {
			n = len(s)
		}
	case c == ';':
		kind = tkSemi
	case c == '?' || c == ':' || c == '@' || c == '$' || c == '#':
		// Parameters are never bound here; the token is refused, so its
		// extent (SQLite's $name(...) form swallows odd bytes) does not
		// matter.
		kind = tkVar
	case isDigit(c) || c == '.' && len(s) > 1 && isDigit(s[1]):
		kind = tkNumber
		for n < len(s) && (isIDChar(s[n]) || s[n] == '.' ||
			(s[n] == '+' || s[n] == '-') && (s[n-1] == 'e' || s[n-1] == 'E')) {
			n++
		}
	case isIDStart(c):
		kind = tkWord
		for n < len(s) && isIDChar(s[n]) {
			n++
		}
	}
	return token{kind: kind, text: s[:n]}
}

// statementKinds are the first keywords of the statements sql_query runs.
var statementKinds = map[string]bool{"SELECT": true, "WITH": true, "VALUES": true}

// pragmasWithArg are read-only PRAGMAs that take a name or number in
// parentheses (table_info(t)); their argument is never a new setting.
var pragmasWithArg = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true,
	"index_list": true, "index_info": true, "index_xinfo": true,
	"foreign_key_list": true, "foreign_key_check": true,
	"integrity_check": true, "quick_check": true,
}

// pragmasNoArg are PRAGMAs allowed only in their reading form, without
// an argument (with one, most of them would change a setting).
var pragmasNoArg = map[string]bool{
	"database_list": true, "collation_list": true, "function_list": true,
	"module_list": true, "pragma_list": true, "compile_options": true,
	"user_version": true, "application_id": true, "schema_version": true,
	"data_version": true, "page_count": true, "page_size": true,
	"freelist_count": true, "encoding": true, "journal_mode": true,
	"auto_vacuum": true, "foreign_keys": true,
}

// checkQuery validates q as one read-only statement and returns it
// without the trailing ';', white space and comments, ready to prepare.
// It refuses (a *queryError):
//
//   - NUL bytes (SQLite would silently ignore what follows);
//   - anything but white space, comments and further ';' after the ';'
//     that ends the first statement (SQLite and the driver would run the
//     rest as more statements);
//   - bound parameters (?, :a, @a, $a, #a): none are ever bound, and
//     SQLite's $a(...) form would hide a ';' from a simpler tokenizer;
//   - statements other than SELECT, WITH, VALUES, EXPLAIN [QUERY PLAN]
//     of those, and the read-only PRAGMAs above in their reading form (no
//     '=', an argument only for pragmasWithArg). INSERT, UPDATE, DELETE,
//     REPLACE, CREATE, DROP, ALTER, ATTACH, DETACH, VACUUM, REINDEX,
//     ANALYZE, BEGIN, SAVEPOINT and any setting PRAGMA never reach SQLite.
//
// A WITH that ends in a write is left to the engine, which refuses it:
// the connection is read-only and query_only (see the package comment).
func checkQuery(q string) (string, *queryError) {
	if strings.IndexByte(q, 0) >= 0 {
		return "", refuse(errNULQuery, "query contains a NUL byte")
	}
	var toks []token // significant tokens of the first statement
	end := -1        // byte offset of the ';' ending the first statement
	for i := 0; i < len(q); {
		tk := nextToken(q[i:])
		switch {
		case tk.kind == tkSpace || tk.kind == tkComment:
		case end >= 0 && tk.kind != tkSemi:
			return "", refuse(errMultiStatement, "only one statement is allowed; nothing but white space and comments may follow the ';'")
		case end >= 0:
		case tk.kind == tkSemi:
			end = i
		case tk.kind == tkVar:
			return "", refuse(errParameter, "bound parameters (%s) are not supported; write values as literals", clip(tk.text, 20))
		default:
			toks = append(toks, tk)
		}
		i += len(tk.text)
	}
	if len(toks) == 0 {
		return "", refuse(errEmptyQuery, "query is empty")
	}
	if err := classify(toks); err != nil {
		return "", err
	}
	if end >= 0 {
		q = q[:end]
	}
	return q, nil
}

const allowedKinds = "only SELECT, WITH, VALUES, EXPLAIN and read-only PRAGMA statements are allowed"

// classify checks the significant tokens of the one statement.
func classify(toks []token) *queryError {
	first := keyword(toks[0])
	switch {
	case statementKinds[first]:
		return nil
	case first == "EXPLAIN":
		rest := toks[1:]
		if len(rest) >= 2 && keyword(rest[0]) == "QUERY" && keyword(rest[1]) == "PLAN" {
			rest = rest[2:]
		}
		if len(rest) > 0 && statementKinds[keyword(rest[0])] {
			return nil
		}
		return refuse(errNotReadOnly, "EXPLAIN is allowed only for SELECT, WITH and VALUES statements")
	case first == "PRAGMA":
		return checkPragma(toks[1:])
	case first == "":
		return refuse(errNotReadOnly, "%s; the query does not start with a keyword", allowedKinds)
	default:
		return refuse(errNotReadOnly, "%s, not %s (the database is opened read-only)", allowedKinds, clip(first, 20))
	}
}

// checkPragma accepts "[schema.]name" for pragmasNoArg and
// "[schema.]name[(arg)]" for pragmasWithArg, arg one name, string or
// number.
func checkPragma(toks []token) *queryError {
	if len(toks) >= 2 && toks[0].kind == tkWord && toks[1].text == "." {
		toks = toks[2:]
	}
	if len(toks) == 0 || toks[0].kind != tkWord {
		return refuse(errNotReadOnly, "PRAGMA needs a name")
	}
	name := strings.ToLower(toks[0].text)
	rest := toks[1:]
	switch {
	case pragmasNoArg[name] && len(rest) == 0:
		return nil
	case pragmasWithArg[name] && len(rest) == 0:
		return nil
	case pragmasWithArg[name] && len(rest) == 3 && rest[0].text == "(" && rest[2].text == ")" &&
		(rest[1].kind == tkWord || rest[1].kind == tkQuoted || rest[1].kind == tkNumber):
		return nil
	case pragmasNoArg[name] || pragmasWithArg[name]:
		return refuse(errNotReadOnly, "PRAGMA %s may only be read here (no '=' or new value)", name)
	default:
		return refuse(errNotReadOnly, "PRAGMA %s is not allowed; allowed are the read-only information pragmas such as table_info, index_list, foreign_key_list, integrity_check, user_version", clip(name, 40))
	}
}

// keyword returns a word token upper-cased, "" for any other token.
func keyword(tk token) string {
	if tk.kind != tkWord {
		return ""
	}
	return strings.ToUpper(tk.text)
}

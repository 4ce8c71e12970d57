package authz

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// syntaxProblem is a policy file that does not parse, located at the token that is wrong and said in a
// sentence.
type syntaxProblem struct {
	File         string
	Line, Column int // 0 when cedar-go gave no position
	Msg          string
	// Err is cedar-go's own error.
	Err error
}

func (e *syntaxProblem) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: syntax error: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: syntax error: %s", e.File, e.Line, e.Column, e.Msg)
}

func (e *syntaxProblem) Unwrap() error { return e.Err }

// syntaxError rewrites cedar-go's parse error for the file path holding src. cedar-go reports
// "parse error at <input>:LINE:COL "TOKEN": DETAIL", where the position is usually that of the token
// after the one at fault (the parser has already consumed it), and DETAIL is terse ("exact got resource
// want ,"). The error exposes no structured position, so its text is read, and the source is tokenized
// again to find the token at fault.
func syntaxError(path string, src []byte, err error) *syntaxProblem {
	msg := strings.TrimPrefix(err.Error(), "parser error: ")
	out := &syntaxProblem{File: path, Msg: msg, Err: err}
	if rest, ok := strings.CutPrefix(msg, "parse error at <input>:"); ok {
		pos, rest, _ := strings.Cut(rest, " ")
		line, col, ok := parsePos(pos)
		tok, err := strconv.QuotedPrefix(rest)
		if !ok || err != nil {
			return out
		}
		detail := strings.TrimPrefix(rest[len(tok):], ": ")
		out.Line, out.Column, out.Msg = line, col, detail
		explainParse(out, tokenize(src), detail)
		return out
	}
	if rest, ok := strings.CutPrefix(msg, "<input>:"); ok {
		// The scanner's errors: "<input>:LINE:COL: DETAIL", at the character at fault.
		pos, detail, _ := strings.Cut(rest, ": ")
		if line, col, ok := parsePos(pos); ok {
			out.Line, out.Column, out.Msg = line, col, scanSentence(detail)
		}
	}
	return out
}

func parsePos(s string) (line, col int, ok bool) {
	l, c, found := strings.Cut(s, ":")
	line, err1 := strconv.Atoi(l)
	col, err2 := strconv.Atoi(c)
	return line, col, found && err1 == nil && err2 == nil
}

func scanSentence(detail string) string {
	switch detail {
	case "literal not terminated":
		return `a string is not closed: its closing '"' is missing on this line`
	case "comment not terminated":
		return "a /* comment is not closed with */"
	case "invalid char escape":
		return `a string holds an invalid escape; use \n, \r, \t, \\, \", \', \0, \*, \xHH or \u{HHHH}`
	default:
		return detail
	}
}

// explainParse turns the parser's detail into a sentence and moves the position to the token at fault.
func explainParse(e *syntaxProblem, toks []token, detail string) {
	at := len(toks) // the reported token; len(toks) is the end of the file
	for i, t := range toks {
		if t.line == e.Line && t.col == e.Column {
			at = i
			break
		}
	}
	// Most errors are raised once the token at fault has been consumed: it is the one before.
	fault := at - 1
	found := func(i int) string {
		if i < 0 || i >= len(toks) {
			return "the end of the file"
		}
		return strconv.Quote(toks[i].text)
	}
	// named finds the latest token before the reported one that is name (a function, method or key).
	named := func(name string) {
		for i := at - 1; i >= 0; i-- {
			if toks[i].text == name || toks[i].text == strconv.Quote(name) {
				fault = i
				return
			}
		}
		fault = -1
	}
	var msg string
	switch {
	case strings.HasPrefix(detail, "exact got "):
		got, want, _ := strings.Cut(strings.TrimPrefix(detail, "exact got "), " want ")
		if got == "" {
			fault = -1
			msg = fmt.Sprintf("the file ends where %q was expected", want)
			if want == ";" {
				msg += ": end each policy with a semicolon"
			}
			break
		}
		msg = fmt.Sprintf("expected %q but found %s", want, found(fault))
		if strings.Contains(",;)]}", want) {
			msg += fmt.Sprintf(": is a %q missing before it?", want)
		}
	case strings.HasPrefix(detail, "got ") && strings.HasSuffix(detail, " want ,"):
		fault = at // raised before consuming
		msg = fmt.Sprintf("expected \",\" between elements, or the closing bracket, but found %s: is a \",\" missing before it?", found(fault))
	case detail == "invalid primary":
		msg = fmt.Sprintf("expected a value (a literal, an entity such as Action::\"connect\", principal, action, resource, context, a [set] or a {record}) but found %s", found(fault))
	case strings.HasPrefix(detail, "unexpected effect: "):
		msg = fmt.Sprintf("a policy starts with \"permit\" or \"forbid\" (after its annotations), not %s", found(fault))
	case detail == "expected ident or reserved keyword":
		msg = fmt.Sprintf("expected an annotation name after \"@\" but found %s", found(fault))
	case strings.HasPrefix(detail, "duplicate annotation: "):
		msg = fmt.Sprintf("the annotation %s appears twice on one policy", strings.TrimPrefix(detail, "duplicate annotation: "))
	case detail == "expected string":
		msg = fmt.Sprintf("an annotation's value is a quoted string, as in @id(\"name\"), not %s", found(fault))
	case detail == "expected ident":
		msg = fmt.Sprintf("expected a name but found %s", found(fault))
	case detail == "expected ident after dot":
		msg = fmt.Sprintf("expected an attribute name after \".\" but found %s", found(fault))
	case detail == "expected ident or string":
		msg = fmt.Sprintf("expected a name or a quoted string but found %s", found(fault))
	case detail == "expected string literal":
		msg = fmt.Sprintf("\"like\" takes a quoted pattern, not %s", found(fault))
	case detail == "unexpected token":
		msg = fmt.Sprintf("unexpected %s", found(fault))
	case strings.HasSuffix(detail, "` is not a function"):
		name := between(detail, "`", "`")
		named(lastSegment(name))
		msg = fmt.Sprintf("%q is not a Cedar function (they are ip, decimal, datetime and duration)", name)
	case strings.HasSuffix(detail, "` is a method, not a function"):
		name := between(detail, "`", "`")
		named(lastSegment(name))
		msg = fmt.Sprintf("%q is a method: call it on a value, as in value.%s(...)", name, name)
	case strings.HasSuffix(detail, "` is not a method"):
		name := between(detail, "`", "`")
		named(name)
		msg = fmt.Sprintf("%q is not a Cedar method", name)
	case strings.HasSuffix(detail, "` is a function, not a method"):
		name := between(detail, "`", "`")
		named(name)
		msg = fmt.Sprintf("%q is a function: call it as %s(...)", name, name)
	case strings.HasSuffix(detail, " expects no arguments"):
		name := strings.TrimSuffix(detail, " expects no arguments")
		named(name)
		msg = fmt.Sprintf("%s() takes no arguments", name)
	case strings.HasSuffix(detail, " expects one argument"):
		name := strings.TrimSuffix(detail, " expects one argument")
		named(name)
		msg = fmt.Sprintf("%s() takes exactly one argument", name)
	case strings.HasPrefix(detail, "duplicate key: "):
		key := strings.TrimPrefix(detail, "duplicate key: ")
		named(key)
		msg = fmt.Sprintf("the record key %q appears twice", key)
	default:
		msg = fmt.Sprintf("%s (near %s)", detail, found(at))
		fault = at
	}
	e.Msg = msg
	if fault >= 0 && fault < len(toks) {
		e.Line, e.Column = toks[fault].line, toks[fault].col
	}
}

func between(s, open, close string) string {
	_, rest, _ := strings.Cut(s, open)
	in, _, _ := strings.Cut(rest, close)
	return in
}

func lastSegment(path string) string {
	if i := strings.LastIndex(path, "::"); i >= 0 {
		return path[i+2:]
	}
	return path
}

// token is a Cedar token and where it starts (line and column from 1, columns in characters), as
// cedar-go's scanner positions it. cedar-go's scanner is internal, so the tokens are found again here,
// only to point at the one at fault.
type token struct {
	text      string
	line, col int
}

// tokenize splits src into tokens the way cedar-go's scanner does; it stops at the first character
// that scanner would refuse.
func tokenize(src []byte) []token {
	var toks []token
	s := string(src)
	line, col := 1, 1
	i := 0
	// advance moves past n bytes, counting lines and characters.
	advance := func(n int) {
		for _, r := range s[i : i+n] {
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		i += n
	}
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		rest := s[i:]
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			advance(size)
			continue
		case strings.HasPrefix(rest, "//"):
			n := strings.IndexByte(rest, '\n')
			if n < 0 {
				n = len(rest)
			}
			advance(n)
			continue
		case strings.HasPrefix(rest, "/*"):
			n := strings.Index(rest[2:], "*/")
			if n < 0 {
				return toks
			}
			advance(n + 4)
			continue
		}
		n := size
		switch {
		case r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z':
			n = identLen(rest)
		case r >= '0' && r <= '9':
			n = 0
			for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
				n++
			}
		case r == '"':
			n = stringLen(rest)
			if n < 0 {
				return toks
			}
		default:
			for _, op := range []string{"::", "!=", "<=", ">=", "==", "||", "&&"} {
				if strings.HasPrefix(rest, op) {
					n = 2
					break
				}
			}
		}
		toks = append(toks, token{text: rest[:n], line: line, col: col})
		advance(n)
	}
	return toks
}

func identLen(s string) int {
	n := 0
	for n < len(s) {
		c := s[n]
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			break
		}
		n++
	}
	return n
}

// stringLen is the length of the string literal s starts with, quotes included, or -1 when it does
// not end on its line.
func stringLen(s string) int {
	for n := 1; n < len(s); n++ {
		switch s[n] {
		case '\\':
			n++
		case '\n':
			return -1
		case '"':
			return n + 1
		}
	}
	return -1
}

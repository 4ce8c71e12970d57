package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/go-json-experiment/json/jsontext"
)

// The SDK's jsonrpc.DecodeMessage is lax where a proxy must not be: it keeps the last of duplicate
// member names (another parser may keep the first), matches no unknown members but ignores them,
// truncates a fractional id to an integer, reads a null id as "no id" (a request becomes a
// notification) and accepts invalid UTF-8. A proxy that decides on one reading of a message while
// the server acts on another is bypassed, so every message is first checked here with jsontext (a
// strict RFC 8259 / RFC 7493 parser): one JSON value, no duplicate member names, valid UTF-8
// (escaped lone surrogates included), nesting within the depth limit, and no two member names of
// one object that differ only in case (encoding/json matches names case-insensitively, the SDK
// does not).

// syntaxProblem says why data is not acceptable JSON, naming where (never what) it found.
func syntaxProblem(err error) string {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		at := where(se.JSONPointer)
		switch {
		case errors.Is(se.Err, jsontext.ErrDuplicateName):
			return fmt.Sprintf("an object has two members of the same name (in %s); send each member once", at)
		case strings.Contains(se.Err.Error(), "UTF-8"), strings.Contains(se.Err.Error(), "surrogate"):
			return fmt.Sprintf("a string holds invalid UTF-8 or a lone surrogate escape (in %s, byte %d)", at, se.ByteOffset)
		}
		return fmt.Sprintf("the JSON is malformed at byte %d (in %s)", se.ByteOffset, at)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "the JSON ends early"
	}
	return "the JSON is malformed"
}

// where renders a JSON pointer for an error, keeping only its first two tokens: member names under
// params.arguments are the caller's data and are not repeated.
func where(p jsontext.Pointer) string {
	if p == "" {
		return "the top level"
	}
	var keep []string
	for tok := range p.Tokens() {
		if len(keep) == 2 {
			keep = append(keep, "…")
			break
		}
		keep = append(keep, tok)
	}
	return "/" + strings.Join(keep, "/")
}

// checkValue verifies that data is exactly one strict JSON value nested at most maxDepth deep.
func checkValue(data []byte, maxDepth int) error {
	d := jsontext.NewDecoder(bytes.NewReader(data))
	// names holds, per open object, the case-folded member names seen so far (nil for arrays).
	var names []map[string]struct{}
	for {
		tok, err := d.ReadToken()
		if err == io.EOF {
			if len(names) != 0 || d.InputOffset() == 0 {
				return errors.New("the JSON ends early")
			}
			return nil
		}
		if err != nil {
			return errors.New(syntaxProblem(err))
		}
		switch tok.Kind() {
		case '{', '[':
			if len(names) >= maxDepth {
				return fmt.Errorf("the JSON nests deeper than %d levels", maxDepth)
			}
			if tok.Kind() == '{' {
				names = append(names, map[string]struct{}{})
			} else {
				names = append(names, nil)
			}
			continue
		case '}', ']':
			names = names[:len(names)-1]
		case '"':
			// A string is a member name when the innermost container is an object and an even number of
			// its tokens came before it.
			if n := len(names); n > 0 && names[n-1] != nil {
				if k, length := d.StackIndex(d.StackDepth()); k == '{' && length%2 == 1 {
					f := fold(tok.String())
					if _, dup := names[n-1][f]; dup {
						return fmt.Errorf("an object has two members whose names differ only in case (in %s); member names are case-sensitive, send each once", where(d.StackPointer().Parent()))
					}
					names[n-1][f] = struct{}{}
				}
			}
		}
		if len(names) == 0 {
			// The one top-level value is complete: only whitespace may follow.
			if _, err := d.ReadToken(); err != io.EOF {
				return errors.New("more than one JSON value; send one message or one batch array")
			}
			return nil
		}
	}
}

// fold maps s to one representative of its case-insensitive equivalence class (simple folding, as
// encoding/json and strings.EqualFold use).
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}

// objectMembers splits a strict JSON object into its members (exact, case-sensitive names). It
// returns an error when raw is not an object. Values are the raw bytes of each member.
func objectMembers(raw []byte) ([]string, map[string]jsontext.Value, error) {
	d := jsontext.NewDecoder(bytes.NewReader(raw))
	tok, err := d.ReadToken()
	if err != nil {
		return nil, nil, errors.New(syntaxProblem(err))
	}
	if tok.Kind() != '{' {
		return nil, nil, fmt.Errorf("is %s, not an object", kindName(tok.Kind()))
	}
	var order []string
	m := map[string]jsontext.Value{}
	for d.PeekKind() != '}' {
		name, err := d.ReadToken()
		if err != nil {
			return nil, nil, errors.New(syntaxProblem(err))
		}
		k := name.String()
		v, err := d.ReadValue()
		if err != nil {
			return nil, nil, errors.New(syntaxProblem(err))
		}
		order = append(order, k)
		m[k] = v.Clone()
	}
	return order, m, nil
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "not JSON"
}

// splitBody returns the messages of a body: one object, or the elements of a batch array.
func splitBody(body []byte) (msgs [][]byte, batch bool, err error) {
	d := jsontext.NewDecoder(bytes.NewReader(body))
	switch d.PeekKind() {
	case '{':
		v, err := d.ReadValue()
		if err != nil {
			return nil, false, errors.New(syntaxProblem(err))
		}
		msgs = append(msgs, v.Clone())
	case '[':
		if _, err := d.ReadToken(); err != nil {
			return nil, true, errors.New(syntaxProblem(err))
		}
		for d.PeekKind() != ']' {
			v, err := d.ReadValue()
			if err != nil {
				return nil, true, errors.New(syntaxProblem(err))
			}
			msgs = append(msgs, v.Clone())
		}
		if _, err := d.ReadToken(); err != nil {
			return nil, true, errors.New(syntaxProblem(err))
		}
		batch = true
	case 0:
		_, err := d.ReadToken()
		if err == io.EOF {
			return nil, false, errors.New("the body is empty; send one JSON-RPC message")
		}
		return nil, false, errors.New(syntaxProblem(err))
	default:
		return nil, false, errors.New("the body is neither a JSON-RPC message (an object) nor a batch (an array)")
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return nil, batch, errors.New("more than one JSON value; send one message or one batch array")
	}
	return msgs, batch, nil
}

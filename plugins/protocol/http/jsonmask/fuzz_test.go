package jsonmask

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// The fuzz rules: every kind of step, and every strategy but partial, which by design shows part of
// a value, so its originals are left out of the leak check.
var fuzzRules = []string{"$.ssn=redact", "$.items[*].email=hash", "$..secret=null", "$.a.*=redact", `$["k y"]=hash`, "$.p=partial"}

// seg is one step from the root to a value in the reference walk: a key, or an array element.
type seg struct {
	key   string
	array bool
}

// refMatch is the reference reading of a path: steps against the segments from the root.
func refMatch(steps []step, path []seg) bool {
	if len(steps) == 0 {
		return len(path) == 0
	}
	if len(path) == 0 {
		return false
	}
	st, sg := steps[0], path[0]
	switch st.kind {
	case stepName:
		return !sg.array && sg.key == st.name && refMatch(steps[1:], path[1:])
	case stepAnyMember:
		return !sg.array && refMatch(steps[1:], path[1:])
	case stepAnyElement:
		return sg.array && refMatch(steps[1:], path[1:])
	case stepDescendant:
		return (!sg.array && sg.key == st.name && refMatch(steps[1:], path[1:])) || refMatch(steps, path[1:])
	}
	return false
}

type refWalk struct {
	masked   []string // strings (keys too) at or under masked positions, partial ones left out
	unmasked []string // keys and scalar texts elsewhere
}

// walk reads data with encoding/json's tokenizer, which sees duplicate keys, and sorts its texts.
func walk(t *testing.T, f *Filter, data []byte) refWalk {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var w refWalk
	type frame struct {
		array      bool
		key        string
		masked     bool
		maskedPart bool
	}
	stack := []frame{{}}
	ruleOf := func(path []seg) (hit, partial bool) {
		for _, r := range f.rules {
			if refMatch(r.Path.steps, path) {
				hit = true
				partial = partial || r.Strategy == "partial"
				if r.Strategy != "partial" {
					return true, false
				}
			}
		}
		return hit, partial
	}
	pathOf := func() []seg {
		var p []seg
		for _, fr := range stack[1:] {
			p = append(p, seg{key: fr.key, array: fr.array})
		}
		return p
	}
	expectKey := func() bool { top := stack[len(stack)-1]; return len(stack) > 1 && !top.array && top.key == "\x00" }
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return w
		}
		if err != nil {
			t.Fatalf("reference tokenizer: %v", err)
		}
		top := &stack[len(stack)-1]
		if s, ok := tok.(string); ok && expectKey() {
			top.key = s
			if top.masked && !top.maskedPart {
				w.masked = append(w.masked, s)
			} else if !top.masked {
				w.unmasked = append(w.unmasked, s)
			}
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 1 && !stack[len(stack)-1].array {
				stack[len(stack)-1].key = "\x00"
			}
			continue
		}
		// A value: its path is the stack's.
		masked, part := top.masked, top.maskedPart
		if !masked && len(stack) > 1 {
			masked, part = ruleOf(pathOf())
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{array: d == '[', key: "\x00", masked: masked, maskedPart: part})
			continue
		}
		text := ""
		switch v := tok.(type) {
		case string:
			text = v
		case json.Number:
			text = string(v)
		}
		if masked && !part {
			w.masked = append(w.masked, text)
		} else if !masked {
			w.unmasked = append(w.unmasked, text)
		}
		if !top.array && len(stack) > 1 {
			top.key = "\x00"
		}
	}
}

// strip compares in and out (decoded) outside masked positions, returning what differs.
func strip(f *Filter, in, out any, path []seg) string {
	for _, r := range f.rules {
		if refMatch(r.Path.steps, path) {
			switch o := out.(type) {
			case nil:
				return ""
			case string:
				if _, isObj := in.(map[string]any); isObj && o != "***" {
					return "a masked object is not redacted"
				}
				return ""
			}
			return "a masked value is neither a string nor null"
		}
	}
	switch iv := in.(type) {
	case map[string]any:
		ov, ok := out.(map[string]any)
		if !ok || len(ov) != len(iv) {
			return "object changed"
		}
		for k, v := range iv {
			o, ok := ov[k]
			if !ok {
				return "key lost"
			}
			if d := strip(f, v, o, append(path, seg{key: k})); d != "" {
				return d
			}
		}
	case []any:
		ov, ok := out.([]any)
		if !ok || len(ov) != len(iv) {
			return "array changed"
		}
		for i := range iv {
			if d := strip(f, iv[i], ov[i], append(path, seg{array: true})); d != "" {
				return d
			}
		}
	default:
		if !reflect.DeepEqual(in, out) {
			return "unmasked value changed"
		}
	}
	return ""
}

func decode(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

func FuzzJSONMask(f *testing.F) {
	for _, s := range []string{
		`{"ssn":"123-45-6789","name":"x"}`,
		`{"items":[{"email":"alice@example.com"},{"email":"bob@example.com","n":1}]}`,
		`{"s\u0073n":"123-45-6789","ssn":"dup"}`,
		`[{"x":{"secret":{"a":["deep"]}}},{"secret":42}]`,
		`{"a":{"u":"v","w":[1,2]},"k y":"z","p":"partial@example.com"}`,
		` [1, -0.5e-3, true, false, null, "\ud83d\ude00\ud800"] `,
		`{"ssn":`, `{"ssn":"a\u00"}`, `[[[[]]]]`,
	} {
		f.Add([]byte(s))
	}
	filter := newFilter(f, fuzzRules...)
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		n, err := filter.Copy(&out, bytes.NewReader(data))
		var slow bytes.Buffer
		_, err2 := filter.Copy(&slow, iotest.HalfReader(bytes.NewReader(data)))
		if (err == nil) != (err2 == nil) || out.String() != slow.String() && err == nil {
			t.Fatalf("short reads change the result: %v vs %v", err, err2)
		}
		// Append, over the body in memory, is Copy: the same output, count and error.
		app, n3, err3 := filter.Append([]byte("prefix"), data)
		if fmt.Sprint(err3) != fmt.Sprint(err) || n3 != n || err == nil && string(app) != "prefix"+out.String() || err != nil && string(app) != "prefix" {
			t.Fatalf("Append: %q, %d, %v; Copy: %q, %d, %v", app, n3, err3, out.String(), n, err)
		}
		valid := json.Valid(data)
		switch {
		case errors.Is(err, ErrLimit):
			return
		case err != nil:
			if valid {
				t.Fatalf("refused valid JSON: %v", err)
			}
			return
		case !valid:
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if !json.Valid(out.Bytes()) {
			t.Fatalf("output %q is not valid JSON", out.Bytes())
		}
		in, err := decode(data)
		if err != nil {
			t.Fatal(err)
		}
		o, err := decode(out.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if d := strip(filter, in, o, nil); d != "" {
			t.Fatalf("%s: %q -> %q", d, data, out.Bytes())
		}
		ref, got := walk(t, filter, data), walk(t, newFilter(t), out.Bytes())
		for _, secret := range ref.masked {
			if len(secret) < 3 || strings.Trim(secret, "*") == "" {
				continue
			}
			innocent := false
			for _, u := range ref.unmasked {
				innocent = innocent || strings.Contains(u, secret)
			}
			for _, u := range got.unmasked {
				if !innocent && strings.Contains(u, secret) {
					t.Fatalf("masked value %q leaked: %q -> %q", secret, data, out.Bytes())
				}
			}
		}
	})
}

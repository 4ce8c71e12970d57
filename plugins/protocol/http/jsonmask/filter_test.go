package jsonmask

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/svidbroker/svidbroker/broker/inspect"
)

var testKey = bytes.Repeat([]byte{7}, inspect.MinHashKeyBytes)

func newFilter(t testing.TB, rules ...string) *Filter {
	t.Helper()
	m, err := inspect.NewMasker(testKey)
	if err != nil {
		t.Fatal(err)
	}
	var rs []Rule
	for _, r := range rules {
		path, strat, _ := strings.Cut(r, "=")
		p, err := ParsePath(path)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, Rule{Path: p, Strategy: inspect.Strategy(strat)})
	}
	f, err := New(Config{Rules: rs, Masker: m})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mask runs f over in, both whole and one byte at a time, and checks that both give the same output.
func mask(t *testing.T, f *Filter, in string) (string, int, error) {
	t.Helper()
	var out, slow bytes.Buffer
	n, err := f.Copy(&out, strings.NewReader(in))
	n2, err2 := f.Copy(&slow, iotest.OneByteReader(strings.NewReader(in)))
	if (err == nil) != (err2 == nil) || n != n2 || (err == nil && out.String() != slow.String()) {
		t.Fatalf("reading one byte at a time changes the result: %q (%d, %v) vs %q (%d, %v)", out.String(), n, err, slow.String(), n2, err2)
	}
	return out.String(), n, err
}

func TestMaskLeaks(t *testing.T) {
	const secret = "123-45-6789"
	const mail = "alice@example.com"
	tests := []struct {
		name  string
		rules []string
		in    string
		want  string
		n     int
	}{
		{"top-level field", []string{"$.ssn=redact"},
			`{"id":1,"ssn":"123-45-6789","name":"Al"}`, `{"id":1,"ssn":"***","name":"Al"}`, 1},
		{"every element of an array", []string{"$.items[*].email=redact", "$.items[*].ssn=null"},
			`{"items":[{"email":"alice@example.com","ssn":"123-45-6789","n":1},{"email":"alice@example.com","ssn":"123-45-6789"}]}`,
			`{"items":[{"email":"***","ssn":null,"n":1},{"email":"***","ssn":null}]}`, 4},
		{"nested objects", []string{"$.a.b.ssn=redact"},
			`{"a":{"b":{"ssn":"123-45-6789"},"ssn":"keep"}}`, `{"a":{"b":{"ssn":"***"},"ssn":"keep"}}`, 1},
		{"every duplicate key", []string{"$.ssn=redact"},
			`{"ssn":"123-45-6789","ssn":"123-45-6789","x":{"ssn":"inner"}}`, `{"ssn":"***","ssn":"***","x":{"ssn":"inner"}}`, 2},
		{"escaped key", []string{"$.ssn=redact"},
			`{"s\u0073n":"123-45-6789","\u0073\u0073\u006e":"123-45-6789"}`, `{"s\u0073n":"***","\u0073\u0073\u006e":"***"}`, 2},
		{"escaped value", []string{"$.ssn=redact"},
			`{"ssn":"123\u002d45-6789"}`, `{"ssn":"***"}`, 1},
		{"quoted key in the path", []string{`$["the ssn"]=redact`},
			`{"the ssn":"123-45-6789","ssn":"x"}`, `{"the ssn":"***","ssn":"x"}`, 1},
		{"descendant at any depth", []string{"$..ssn=redact"},
			`[{"ssn":"123-45-6789"},{"p":{"q":[{"ssn":"123-45-6789"}]}}]`, `[{"ssn":"***"},{"p":{"q":[{"ssn":"***"}]}}]`, 2},
		{"every member", []string{"$.secrets.*=redact"},
			`{"secrets":{"a":"123-45-6789","b":"123-45-6789"},"c":"keep"}`, `{"secrets":{"a":"***","b":"***"},"c":"keep"}`, 2},
		{"masked object redacted whole", []string{"$.ssn=partial"},
			`{"ssn":{"v":"123-45-6789","w":["123-45-6789"]},"k":1}`, `{"ssn":"***","k":1}`, 1},
		{"masked array nulled whole", []string{"$.ssn=null"},
			`{"ssn":["123-45-6789",{"a":"123-45-6789"}]}`, `{"ssn":null}`, 1},
		{"partial shows the last four", []string{"$.ssn=partial"},
			`{"ssn":"123-45-6789"}`, `{"ssn":"***-**-6789"}`, 1},
		{"partial email", []string{"$.email=partial"},
			`{"email":"alice@example.com"}`, `{"email":"a***@example.com"}`, 1},
		{"strongest strategy wins", []string{"$.ssn=partial", "$..ssn=null"},
			`{"ssn":"123-45-6789"}`, `{"ssn":null}`, 1},
		{"whitespace kept", []string{"$.ssn=redact"},
			"{ \"ssn\" :\n \"123-45-6789\" ,\t\"a\" : [ 1 , 2 ] }", "{ \"ssn\" :\n \"***\" ,\t\"a\" : [ 1 , 2 ] }", 1},
		{"masked number redacted", []string{"$.ssn=redact"},
			`{"ssn":123456789}`, `{"ssn":"***"}`, 1},
		{"masked number partial", []string{"$.ssn=partial"},
			`{"ssn":123456789}`, `{"ssn":"*****6789"}`, 1},
		{"masked bool never hashed", []string{"$.flag=hash"},
			`{"flag":true}`, `{"flag":"***"}`, 1},
		{"masked null stays null", []string{"$.ssn=redact"},
			`{"ssn":null}`, `{"ssn":null}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := mask(t, newFilter(t, tc.rules...), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || n != tc.n {
				t.Errorf("got %s (%d masked), want %s (%d)", got, n, tc.want, tc.n)
			}
			if strings.Contains(got, secret) || strings.Contains(got, "6789\"") && strings.Contains(tc.rules[0], "redact") {
				t.Errorf("the masked value leaked: %s", got)
			}
			if !strings.Contains(tc.rules[0], "partial") && strings.Contains(got, mail) {
				t.Errorf("the masked email leaked: %s", got)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("output is not valid JSON: %s", got)
			}
		})
	}
}

func TestMaskHashIsTheColumnsHash(t *testing.T) {
	f := newFilter(t, "$.ssn=hash")
	m, _ := inspect.NewMasker(testKey)
	want, _, err := m.Mask(inspect.Hash, []byte("123-45-6789"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{`{"ssn":"123-45-6789"}`, `{"ssn":"123\u002d45\u002d6789"}`} {
		got, _, err := mask(t, f, in)
		if err != nil {
			t.Fatal(err)
		}
		if got != `{"ssn":"`+string(want)+`"}` {
			t.Errorf("%s: got %s, want the column hash %s", in, got, want)
		}
	}
}

// Control: with no rule reaching anything, the output is the input, byte for byte.
func TestMaskUnmatchedIsIdentity(t *testing.T) {
	f := newFilter(t, "$.ssn=redact", "$.items[*].email=null", "$..secret=hash")
	for _, in := range []string{
		`{"id":1,"name":"Al","items":[{"mail":"a@b.c"}],"nested":{"sn":"x"}}`,
		" [1, -2.5e+10, true, false, null, \"s\\u0073n\\n\\\"\", {}, []] ",
		`{"SSN":"123-45-6789","items":{"email":"x"},"ssn ":"y"}`,
		`"ssn"`,
		`{"items":[[{"email":"nested one level too deep"}]]}`,
	} {
		got, n, err := mask(t, f, in)
		if err != nil || got != in || n != 0 {
			t.Errorf("%s: got %s (%d masked, %v), want it unchanged", in, got, n, err)
		}
	}
}

func TestMaskRefusesInvalidJSON(t *testing.T) {
	f := newFilter(t, "$.ssn=redact")
	for _, in := range []string{
		``, ` `, `{`, `{"ssn":"123-45-6789"`, `{"ssn":"123-45-6789",}`, `{"ssn" "x"}`, `[1,]`, `[1 2]`,
		`{"ssn":"abc}`, `{"ssn":'x'}`, `{"ssn":01}`, `{"ssn":1.}`, `{"ssn":-}`, `{"ssn":tru}`, `{"ssn":nul}`,
		`{"ssn":"a\x"}`, `{"ssn":"a\u12"}`, "{\"ssn\":\"a\x01\"}", `{} {}`, `{}x`, "\xef\xbb\xbf{}", `NaN`,
		`{"ssn":Infinity}`, `{"a":1}]`, `[}`, `{"a"}`, `{1:2}`,
	} {
		var out bytes.Buffer
		_, err := f.Copy(&out, strings.NewReader(in))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: got %v, want ErrInvalid", in, err)
		}
		if json.Valid([]byte(in)) {
			t.Errorf("%q: the test input is valid JSON", in)
		}
		if strings.Contains(out.String(), "123-45-6789") {
			t.Errorf("%q: the masked value was written before the refusal: %q", in, out.String())
		}
	}
}

func TestMaskLimits(t *testing.T) {
	m, _ := inspect.NewMasker(nil)
	p, _ := ParsePath("$.k")
	f, err := New(Config{Rules: []Rule{{Path: p, Strategy: inspect.Redact}}, Masker: m, MaxDepth: 3, MaxToken: 64})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 100)
	tests := []struct {
		in    string
		limit bool
	}{
		{`[[[1]]]`, false},
		{`[[[[1]]]]`, true},
		{`{"k":"` + long + `"}`, true},       // a masked string is held whole
		{`{"` + long + `":1,"k":"x"}`, true}, // so is a key that must be compared
		{`{"j":"` + long + `"}`, false},      // an unmasked string streams at any length
		{`[` + strings.Repeat("1", 100) + `]`, true},
	}
	for _, tc := range tests {
		_, err := f.Copy(&bytes.Buffer{}, strings.NewReader(tc.in))
		if tc.limit != errors.Is(err, ErrLimit) || (!tc.limit && err != nil) {
			t.Errorf("%.40s: got %v, want limit %v", tc.in, err, tc.limit)
		}
	}
}

func TestNewRefusesBadRules(t *testing.T) {
	noKey, _ := inspect.NewMasker(nil)
	p, _ := ParsePath("$.ssn")
	if _, err := New(Config{Rules: []Rule{{Path: p, Strategy: inspect.Hash}}, Masker: noKey}); !errors.Is(err, inspect.ErrNoHashKey) {
		t.Errorf("hash without a key: got %v", err)
	}
	if _, err := New(Config{Rules: []Rule{{Path: p, Strategy: "shuffle"}}, Masker: noKey}); err == nil || !strings.Contains(err.Error(), "shuffle") {
		t.Errorf("unknown strategy: got %v", err)
	}
	if _, err := New(Config{Rules: []Rule{{Path: p, Strategy: inspect.Redact}}, Masker: noKey}); err != nil {
		t.Errorf("control: %v", err)
	}
}

func TestParsePath(t *testing.T) {
	good := map[string]string{
		"$.ssn": "", "$.items[*].email": "", "$..ssn": "", `$["a b"].c`: "", `$..["x.y"]`: "", "$.a.*": "",
		"$.a-b_c1": "", `$["\u0073sn"]`: "",
	}
	for s := range good {
		if _, err := ParsePath(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "$", "ssn", "$.", "$.1a", "$[0]", "$[\"a\"", "$.a..", "$...a", "$.a b", "$[*", "$.a[", `$["a]`, "$..*"} {
		if _, err := ParsePath(s); err == nil {
			t.Errorf("%q: parsed, want an error", s)
		}
	}
}

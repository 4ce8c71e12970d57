package jsonmask

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/svidbroker/svidbroker/broker/inspect"
)

// skipPair returns two filters with the same rules and limits: one skips the subtrees no rule
// reaches and the values it masks whole, the other walks them with object and array.
func skipPair(t testing.TB, maxDepth, maxToken int, rules ...string) (fast, walked *Filter) {
	t.Helper()
	f := newFilter(t, rules...)
	m, _ := inspect.NewMasker(testKey)
	fast, err := New(Config{Rules: f.rules, Masker: m, MaxDepth: maxDepth, MaxToken: maxToken})
	if err != nil {
		t.Fatal(err)
	}
	walked, _ = New(Config{Rules: f.rules, Masker: m, MaxDepth: maxDepth, MaxToken: maxToken})
	walked.noSkip = true
	return fast, walked
}

// sameAsWalked runs both filters over in, whole and one byte at a time, and reports how they differ:
// output, masked count, or error (its text, offset included).
func sameAsWalked(fast, walked *Filter, in []byte) string {
	for _, one := range []bool{false, true} {
		var of, ow bytes.Buffer
		var rf, rw = bytes.NewReader(in), bytes.NewReader(in)
		nf, ef := fast.Copy(&of, maybeOneByte(rf, one))
		nw, ew := walked.Copy(&ow, maybeOneByte(rw, one))
		if fmt.Sprint(ef) != fmt.Sprint(ew) || nf != nw || of.String() != ow.String() {
			return fmt.Sprintf("skipped: %q, %d masked, %v; walked: %q, %d masked, %v", of.String(), nf, ef, ow.String(), nw, ew)
		}
	}
	return ""
}

func maybeOneByte(r *bytes.Reader, one bool) interface{ Read([]byte) (int, error) } {
	if one {
		return iotest.OneByteReader(r)
	}
	return r
}

// Skipping a subtree no rule reaches, or a value masked whole, accepts, refuses and limits exactly as
// walking it does, at the same offsets, and writes the same bytes.
func TestSkipIsTheWalk(t *testing.T) {
	fast, walked := skipPair(t, 4, 64, "$.ssn=redact", "$.m=null", "$.items[*].email=hash")
	long := strings.Repeat("a", 100)
	var n int
	for _, frag := range []string{
		// valid: unmasked under "other", masked whole under "m"
		`{}`, `[]`, ` { "a" : [ 1 , -2.5e+10 , true , false , null , "s\u0073n\n\"" , { } , [ ] ] } `,
		`{"a":{"b":{"c":1}}}`, `[[["x"]]]`, `{"` + long + `":"` + long + `"}`, `["\ud83d\ude00\ud800"]`,
		`{"ssn":"123-45-6789","email":"x"}`,
		// invalid, at every kind of place the walk checks
		`{`, `[`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,`, `[1`, `[1,`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[1 2]`,
		`{"a":1]`, `[1}`, `{1:2}`, `{"a":01}`, `[1.]`, `[-]`, `[tru]`, `[nul]`, `[fals]`, `["a\x"]`,
		`["a\u12"]`, "[\"a\x01\"]", `["abc]`, `['x']`, `[NaN]`, `{"a":}`, `[,1]`, `{,}`,
		// limits: too deep below, a number longer than MaxToken
		`[[[[1]]]]`, `{"a":{"b":{"c":{"d":1}}}}`, `[` + strings.Repeat("1", 100) + `]`,
	} {
		for _, in := range []string{`{"other":` + frag + `}`, `{"m":` + frag + `}`, `[` + frag + `]`, frag} {
			if d := sameAsWalked(fast, walked, []byte(in)); d != "" {
				t.Errorf("%q: %s", in, d)
			}
			n++
		}
	}
	// Control: the pairs do see subtrees skipped and masked whole, and a refusal inside one.
	var out bytes.Buffer
	if k, err := fast.Copy(&out, strings.NewReader(`{"m":{"a":[1]},"other":{"ssn":"1"},"ssn":"2"}`)); err != nil || k != 2 ||
		out.String() != `{"m":null,"other":{"ssn":"1"},"ssn":"***"}` {
		t.Errorf("got %q, %d masked, %v", out.String(), k, err)
	}
	if _, err := fast.Copy(&out, strings.NewReader(`{"other":{"a":[1,]}}`)); err == nil {
		t.Error("an invalid skipped subtree was accepted")
	}
}

func FuzzSkip(f *testing.F) {
	for _, s := range []string{
		`{"other":{"a":[1,{"b":"c"}]},"ssn":"x"}`, `{"a":{"u":[1,[2,{"v":null}]]},"items":[{"email":"e","x":{}}]}`,
		`{"m":{"secret":[true]}}`, `[[[[[[]]]]]]`, `{"a":{"b":[1,]}}`, `{"x":[1 2]}`, `{"x":{"y" 1}}`,
		` [ "\u0041" , -0.5e-3 , { } ] `,
	} {
		f.Add([]byte(s), false)
	}
	fast, walked := skipPair(f, 0, 0, fuzzRules...)
	fastL, walkedL := skipPair(f, 5, 64, fuzzRules...)
	f.Fuzz(func(t *testing.T, data []byte, limited bool) {
		a, b := fast, walked
		if limited {
			a, b = fastL, walkedL
		}
		if d := sameAsWalked(a, b, data); d != "" {
			t.Fatalf("%q: %s", data, d)
		}
	})
}

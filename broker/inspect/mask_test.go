package inspect

import (
	"bytes"
	"strings"
	"testing"
	"unicode"
)

func TestMask(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	m, err := NewMasker(key)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		s        Strategy
		in, want string
		null     bool
	}{
		{Partial, "alice@example.com", "a***@example.com", false},
		{Partial, "123-45-6789", "***-**-6789", false},
		{Partial, "4111 1111 1111 1111", "**** **** **** 1111", false},
		{Partial, "Bob", "***", false},
		{Partial, "", "", false},
		{Redact, "alice@example.com", "***", false},
		{Null, "alice@example.com", "", true},
	}
	for _, tc := range cases {
		out, null, err := m.Mask(tc.s, []byte(tc.in))
		if err != nil || string(out) != tc.want || null != tc.null {
			t.Errorf("Mask(%s, %q) = %q %v %v; want %q %v", tc.s, tc.in, out, null, err, tc.want, tc.null)
		}
	}
	// Hash: deterministic, keyed, and not the value.
	a, _, _ := m.Mask(Hash, []byte("alice@example.com"))
	b, _, _ := m.Mask(Hash, []byte("alice@example.com"))
	c, _, _ := m.Mask(Hash, []byte("bob@example.com"))
	other, _ := NewMasker(bytes.Repeat([]byte{8}, 32))
	d, _, _ := other.Mask(Hash, []byte("alice@example.com"))
	if !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, d) || bytes.Contains(a, []byte("alice")) {
		t.Errorf("hash: %s %s %s %s", a, b, c, d)
	}
	if _, _, err := (&Masker{}).Mask(Hash, []byte("x")); err != ErrNoHashKey {
		t.Errorf("hash without a key: %v", err)
	}
	if _, _, err := m.Mask("scramble", []byte("x")); err == nil {
		t.Error("an unknown strategy masked a value")
	}
	if _, err := NewMasker([]byte("short")); err == nil {
		t.Error("a short hash key was accepted")
	}
}

// FuzzPartial checks that partial masking never shows more than four letters or digits of a value,
// or a quarter of a short one, outside an email domain.
func FuzzPartial(f *testing.F) {
	for _, s := range []string{"alice@example.com", "123-45-6789", "", "a", "\xff\xfe", "@@@", "ü1234567890"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := string(partial([]byte(in)))
		if at, ok := emailAt(in); ok && strings.IndexByte(out, '@') >= 0 {
			in, out = in[:at], out[:strings.IndexByte(out, '@')] // the domain is kept on purpose
		}
		shown := 0
		for _, r := range out {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				shown++
			}
		}
		if shown > 4 {
			t.Fatalf("partial(%q) = %q shows %d letters or digits", in, out, shown)
		}
	})
}

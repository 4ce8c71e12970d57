package inspect

import (
	"bytes"
	"strings"
	"sync"
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

// TestHashValue pins the hash strategy's output: "h:" and, in hex, the AES-CMAC tag of the value under
// the AES-256 key HKDF-SHA-256 derives from the configured key. The expected value was computed with
// OpenSSL, independently of this package:
//
//	openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:0707...07 \
//	    -kdfopt info:"svidbroker mask hash AES-256-CMAC v1" HKDF
//	echo -n alice@example.com | openssl mac -cipher AES-256-CBC -macopt hexkey:<that key> CMAC
func TestHashValue(t *testing.T) {
	const want = "h:d653351d733dd3eb03aa3df1dd8793a4"
	m, _ := NewMasker(bytes.Repeat([]byte{7}, 32))
	sc := m.NewScratch()
	for name, mask := range map[string]func(Strategy, []byte) ([]byte, bool, error){"Masker": m.Mask, "Scratch": sc.Mask} {
		if got, _, err := mask(Hash, []byte("alice@example.com")); string(got) != want || err != nil {
			t.Errorf("%s: hash = %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestMaskConcurrent checks that goroutines sharing a Masker get each their own value's hash.
func TestMaskConcurrent(t *testing.T) {
	m, _ := NewMasker(bytes.Repeat([]byte{7}, 32))
	want := map[string]string{}
	for i := range 8 {
		v := strings.Repeat("v", i)
		out, _, _ := m.Mask(Hash, []byte(v))
		want[v] = string(out)
	}
	var wg sync.WaitGroup
	for v, w := range want {
		wg.Go(func() {
			for range 1000 {
				if out, _, err := m.Mask(Hash, []byte(v)); string(out) != w || err != nil {
					t.Errorf("Mask(%q) = %q, %v; want %q", v, out, err, w)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestScratch checks that a Scratch masks as its Masker does, value after value, that the values of one
// row stay intact until Reset, and that hashing allocates nothing.
func TestScratch(t *testing.T) {
	type masked struct {
		out  []byte
		null bool
		err  error
	}
	values := []string{"alice@example.com", "123-45-6789", "4111 1111 1111 1111", "Bob", "", "\xff\xfe",
		"ü1234567890", strings.Repeat("x", 5000)}
	for _, key := range [][]byte{bytes.Repeat([]byte{7}, 32), nil} {
		m, _ := NewMasker(key)
		sc := m.NewScratch()
		for range 2 { // the second time in a grown buffer
			sc.Reset()
			var got, want []masked
			for _, s := range []Strategy{Partial, Hash, Redact, Null, "scramble"} {
				for _, v := range values {
					var g, w masked
					g.out, g.null, g.err = sc.Mask(s, []byte(v))
					w.out, w.null, w.err = m.Mask(s, []byte(v))
					got, want = append(got, g), append(want, w)
				}
			}
			for _, g := range got {
				_ = append(g.out, '!') // must not overwrite the next value
			}
			for i, g := range got {
				w := want[i]
				if !bytes.Equal(g.out, w.out) || (g.out == nil) != (w.out == nil) || g.null != w.null || (g.err == nil) != (w.err == nil) {
					t.Errorf("key %v, value %d: Scratch %q %v %v, Masker %q %v %v", key != nil, i, g.out, g.null, g.err, w.out, w.null, w.err)
				}
			}
		}
		if _, _, err := sc.Mask(Hash, []byte("x")); key == nil && err != ErrNoHashKey {
			t.Errorf("hash without a key: %v", err)
		}
	}
	m, _ := NewMasker(bytes.Repeat([]byte{7}, 32))
	sc := m.NewScratch()
	v := []byte("alice@example.com")
	if n := testing.AllocsPerRun(100, func() {
		sc.Reset()
		sc.Mask(Hash, v)
		sc.Mask(Hash, v)
	}); n != 0 {
		t.Errorf("hashing allocates %v times per row", n)
	}
}

// FuzzPartial checks that partial masking never shows more than four letters or digits of a value,
// or a quarter of a short one, outside an email domain.
func FuzzPartial(f *testing.F) {
	for _, s := range []string{"alice@example.com", "123-45-6789", "", "a", "\xff\xfe", "@@@", "ü1234567890"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := string(appendPartial(nil, []byte(in)))
		if at, ok := emailAt([]byte(in)); ok && strings.IndexByte(out, '@') >= 0 {
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

package inspect

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// partialSeeds are values of each shape partial masking tells apart, ASCII and not.
var partialSeeds = []string{"alice@example.com", "a@b.c", "@example.com", "alice@", "alice@example", "alice@.example.com",
	"alice@example.com.", "al@ice@example.com", "alice@exa_mple.com", "alice@ex-ample.co.uk", "123-45-6789",
	"4111 1111 1111 1111", "Bob", "", "a", "ab12", "\xff\xfe", "@@@", "ü1234567890", "jürgen@example.com",
	"alice@exämple.com", "[{`~}]", "Z9z0", "\x00\x1f\x7f", "١٢٣٤٥٦٧٨٩"}

// FuzzPartialASCII holds appendPartial, whose ASCII values take a path of their own, to
// appendPartialText, the partial strategy for any text: the same output for every value, appended
// after what dst holds. Each input is also tried folded into ASCII, so that the fast path is taken
// as often as the other.
func FuzzPartialASCII(f *testing.F) {
	for _, s := range partialSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ascii := []byte(in)
		for i := range ascii {
			ascii[i] &= 0x7f
		}
		for _, v := range [][]byte{[]byte(in), ascii} {
			want := appendPartialText([]byte("prefix:"), v)
			if got := appendPartial([]byte("prefix:"), v); !bytes.Equal(got, want) {
				t.Fatalf("appendPartial(%q) = %q, appendPartialText %q", v, got, want)
			}
		}
	})
}

// TestPartialASCIIMatchesText runs the comparison of FuzzPartialASCII over random values in every
// run: short values of the bytes that matter to the strategy (letters, digits, '@', '.', '-',
// other punctuation and non-ASCII bytes), and the seeds.
func TestPartialASCIIMatchesText(t *testing.T) {
	const alphabet = "aZ09@@..--_ +\x00\x7f\xc3\xbc\xff"
	rng := rand.New(rand.NewPCG(1, 2))
	values := [][]byte{}
	for _, s := range partialSeeds {
		values = append(values, []byte(s))
	}
	for range 100000 {
		v := make([]byte, rng.IntN(24))
		for i := range v {
			v[i] = alphabet[rng.IntN(len(alphabet))]
		}
		values = append(values, v)
	}
	ascii := 0
	for _, v := range values {
		want := appendPartialText(nil, v)
		got := appendPartial(nil, v)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendPartial(%q) = %q, appendPartialText %q", v, got, want)
		}
		if bytes.IndexFunc(v, func(r rune) bool { return r >= 0x80 }) < 0 {
			ascii++
		}
	}
	if ascii < len(values)/10 || ascii == len(values) {
		t.Fatalf("%d of %d values ASCII: both paths must be tried", ascii, len(values))
	}
}

// BenchmarkPartial masks values of the usual shapes (an email address, an SSN, a card number, a name)
// with the partial strategy, ASCII and not.
func BenchmarkPartial(b *testing.B) {
	for _, tc := range []struct{ name, v string }{
		{"email", "customer.12345@example.org"}, {"ssn", "123-45-6789"}, {"card", "4111 1111 1111 1111"},
		{"name", "Ada Lovelace"}, {"email-utf8", "jürgen.müller@example.org"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			v, dst := []byte(tc.v), make([]byte, 0, 64)
			b.SetBytes(int64(len(v)))
			for b.Loop() {
				dst = appendPartial(dst[:0], v)
			}
		})
	}
}

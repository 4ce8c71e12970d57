package jsonmask

import "testing"

// plainRun finds the first '"', '\\' or control byte at every alignment, against a bytewise scan,
// and passes over every other byte, UTF-8 and DEL included.
func TestPlainRun(t *testing.T) {
	ref := func(b []byte, i int) int {
		for ; i < len(b); i++ {
			if b[i] == '"' || b[i] == '\\' || b[i] < 0x20 {
				return i
			}
		}
		return i
	}
	for c := range 256 {
		for n := 0; n < 20; n++ {
			for at := 0; at <= n; at++ {
				b := make([]byte, n)
				for k := range b {
					b[k] = 'a' + byte(k%26)
					if k%5 == 3 {
						b[k] = 0xff - byte(k) // high bytes between
					}
				}
				if at < n {
					b[at] = byte(c)
				}
				for from := 0; from <= n; from++ {
					if got, want := plainRun(b, from), ref(b, from); got != want {
						t.Fatalf("byte %#x at %d of %d from %d: got %d, want %d", c, at, n, from, got, want)
					}
				}
			}
		}
	}
}

package jsonmask

import "testing"

// numberRef is numberEnd's reference: the run of number bytes, then validNumber on it.
func numberRef(b []byte, i int) int {
	j := i
	for j < len(b) && numByte[b[j]] {
		j++
	}
	if j == len(b) || !validNumber(b[i:j]) {
		return -1
	}
	return j
}

// numberEnd agrees with the run of number bytes checked by validNumber, at every start.
func FuzzNumberEnd(f *testing.F) {
	for _, s := range []string{"0,", "-0.5e-3]", "12", "01,", "1.}", "1e+}", "-}", "1.5E10 ", "00", "1-2,", "1e5e5,", "--1,", "0.0.0,", "9.99e+999,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := range len(b) + 1 {
			if got, want := numberEnd(b, i), numberRef(b, i); got != want {
				t.Fatalf("%q from %d: got %d, want %d", b, i, got, want)
			}
		}
	})
}

func TestNumberEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"0,", 1}, {"-0.5e-3]", 7}, {"12", -1}, {"01,", -1}, {"1.}", -1}, {"1e+}", -1}, {"-}", -1},
		{"1.5E10 ", 6}, {"1-2,", -1}, {"123 ", 3}, {"-1E+2}", 5}, {"", -1}, {"x", -1},
	} {
		if got := numberEnd([]byte(tc.in), 0); got != tc.want || got != numberRef([]byte(tc.in), 0) {
			t.Errorf("%q: got %d, want %d", tc.in, got, tc.want)
		}
	}
}

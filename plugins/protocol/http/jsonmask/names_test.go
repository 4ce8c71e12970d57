package jsonmask

import (
	"strings"
	"testing"
)

// Keys are passed over by their first byte and length only when no rule can name them: keys that
// share both with a named key, the empty key, and keys of 63 bytes or more still reach the
// comparison, and only the named ones are masked.
func TestMaskKeyPrefilter(t *testing.T) {
	a70, a71, a64 := strings.Repeat("a", 70), strings.Repeat("a", 71), strings.Repeat("a", 64)
	f := newFilter(t, `$[""]=redact`, "$.email=redact", `$["`+a70+`"]=redact`, "$.items[*].ssn=redact")
	in := `{"":"e0","email":"e1","esail":"k1","Email":"k2","` + a70 + `":"e2","` + a71 + `":"k3","` + a64 +
		`":"k4","ssn":"k5","items":[{"ssn":"e3","sn":"k6","email":"k7"}],"e":"k8","emails":"k9"}`
	want := `{"":"***","email":"***","esail":"k1","Email":"k2","` + a70 + `":"***","` + a71 + `":"k3","` + a64 +
		`":"k4","ssn":"k5","items":[{"ssn":"***","sn":"k6","email":"k7"}],"e":"k8","emails":"k9"}`
	got, n, err := mask(t, f, in)
	if err != nil || n != 4 || got != want {
		t.Errorf("got %s (%d masked, %v), want %s", got, n, err, want)
	}
}

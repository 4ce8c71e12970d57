package jsonmask

import (
	"bytes"
	"errors"
	"testing"
)

// Append masks a body held in memory as Copy does, after what dst holds, and leaves dst as it was
// when it refuses the body.
func TestAppendIsCopy(t *testing.T) {
	f := newFilter(t, "$[*].email=partial", "$[*].ssn=redact")
	data, objects := customers(200<<10, -1, false)
	var want bytes.Buffer
	if _, err := f.Copy(&want, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, n, err := f.Append([]byte("x"), data)
	if err != nil || n != 2*objects || string(got) != "x"+want.String() {
		t.Fatalf("Append: %d masked, %v, same as Copy: %t", n, err, string(got) == "x"+want.String())
	}
	// The source is read in place, never written.
	if again, _ := customers(200<<10, -1, false); !bytes.Equal(again, data) {
		t.Fatal("Append changed its source")
	}
	bad := append(append([]byte{}, data[:len(data)-1]...), ',', ']')
	got, _, err = f.Append([]byte("x"), bad)
	if !errors.Is(err, ErrInvalid) || string(got) != "x" {
		t.Fatalf("invalid body: %q..., %v", got[:min(len(got), 20)], err)
	}
}

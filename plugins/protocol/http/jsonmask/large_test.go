package jsonmask

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/svidbroker/svidbroker/broker/inspect"
)

// A body far larger than the window, read in odd-sized pieces: every object's two fields are masked,
// nothing else changes, and no SSN survives.
func TestMaskLargeBodyInPieces(t *testing.T) {
	data, objects := customers(3<<20, -1, false)
	f := newFilter(t, "$[*].email=partial", "$[*].ssn=redact")
	var out bytes.Buffer
	n, err := f.Copy(&out, iotest.HalfReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*objects {
		t.Errorf("masked %d values, want %d", n, 2*objects)
	}
	if bytes.Contains(out.Bytes(), []byte("-45-")) || bytes.Contains(out.Bytes(), []byte(`"customer1@`)) {
		t.Error("an SSN or an email's local part survived")
	}
	// Control: the same objects written with the two fields masked are the output, byte for byte.
	want, _ := customers(0, objects, true)
	if !bytes.Equal(out.Bytes(), want) {
		t.Error("the output differs from the body with its two fields per object masked")
	}
}

// A failing writer stops the copy with its error.
func TestMaskWriteError(t *testing.T) {
	f := newFilter(t, "$..ssn=redact")
	_, err := f.Copy(failWriter{}, strings.NewReader(string(body(200<<10))))
	if err == nil || !strings.Contains(err.Error(), "writing the body") {
		t.Fatalf("got %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func ExampleFilter_Copy() {
	masker, _ := inspect.NewMasker(nil) // no hash key: the hash strategy is refused by New
	ssn, _ := ParsePath("$.items[*].ssn")
	email, _ := ParsePath("$..email")
	f, err := New(Config{Masker: masker, Rules: []Rule{
		{Path: ssn, Strategy: inspect.Redact},
		{Path: email, Strategy: inspect.Partial},
	}})
	if err != nil {
		panic(err)
	}
	body := `{"items":[{"id":1,"ssn":"123-45-6789","contact":{"email":"alice@example.com"}}]}`
	n, err := f.Copy(os.Stdout, strings.NewReader(body))
	fmt.Println()
	fmt.Println(n, err)
	// Output:
	// {"items":[{"id":1,"ssn":"***","contact":{"email":"a***@example.com"}}]}
	// 2 <nil>
}

package sse

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
)

func readAll(t testing.TB, r io.Reader, max int) ([]Event, error) {
	t.Helper()
	rd := NewReader(r, max)
	var evs []Event
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, e)
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event
	}{
		{"data lines joined", "data: a\ndata: b\n\n", []Event{{Data: "a\nb", HasData: true}}},
		{"CRLF, CR and LF endings", "data: a\r\ndata: b\rdata:c\n\r\n", []Event{{Data: "a\nb\nc", HasData: true}}},
		{"one leading space stripped", "data:  two\ndata:none\n\n", []Event{{Data: " two\nnone", HasData: true}}},
		{"fields", "id: 7\nevent: update\nretry: 1500\ndata: {}\n\n", []Event{{ID: "7", HasID: true, Type: "update", HasType: true, Retry: "1500", HasRetry: true, Data: "{}", HasData: true}}},
		{"empty data dispatches", "data\n\n", []Event{{Data: "", HasData: true}}},
		{"id alone kept", "id: 9\n\n", []Event{{ID: "9", HasID: true}}},
		{"id with NUL ignored", "id: a\x00b\ndata: x\n\n", []Event{{Data: "x", HasData: true}}},
		{"bad retry ignored", "retry: 1s\ndata: x\n\n", []Event{{Data: "x", HasData: true}}},
		{"comment recorded, text dropped", ": secret keep-alive\n\n", []Event{{Comment: true}}},
		{"unknown fields and blank blocks skipped", "\n\nfoo: bar\n\ndata: x\n\n", []Event{{Data: "x", HasData: true}}},
		{"leading BOM skipped", "\xef\xbb\xbfdata: x\n\n", []Event{{Data: "x", HasData: true}}},
		{"second BOM kept", "\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", nil},
		{"unfinished block dropped", "data: a\n\ndata: b\n", []Event{{Data: "a", HasData: true}}},
		{"field name without colon", "data\ndata\n\n", []Event{{Data: "\n", HasData: true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in))} {
				got, err := readAll(t, r, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
			}
		})
	}
}

func TestReaderLimit(t *testing.T) {
	in := "data: small\n\ndata: " + strings.Repeat("x", 100) + "\n\n"
	evs, err := readAll(t, strings.NewReader(in), 64)
	if !errors.Is(err, ErrTooLarge) || len(evs) != 1 {
		t.Fatalf("got %d events, %v; want the small one then ErrTooLarge", len(evs), err)
	}
	// Control: many small events in a long stream are each within the limit.
	evs, err = readAll(t, strings.NewReader(strings.Repeat("data: small\n\n", 100)), 64)
	if err != nil || len(evs) != 100 {
		t.Fatalf("got %d events, %v", len(evs), err)
	}
}

func TestAppendEventRefuses(t *testing.T) {
	for _, e := range []Event{
		{Type: "a\nb", HasType: true}, {ID: "a\rb", HasID: true}, {ID: "a\x00", HasID: true},
		{Data: "a\rb", HasData: true}, {Retry: "1s", HasRetry: true}, {Retry: "", HasRetry: true},
	} {
		if _, err := AppendEvent(nil, e); err == nil {
			t.Errorf("%+v: written", e)
		}
	}
	out, err := AppendEvent(nil, Event{Data: "a\n\nb", HasData: true, Type: "t", HasType: true})
	if err != nil || string(out) != "event: t\ndata: a\ndata: \ndata: b\n\n" {
		t.Errorf("control: %q, %v", out, err)
	}
}

// The engine's use: each event's JSON data masked, everything else passed on.
func TestMaskedFieldInsideAStream(t *testing.T) {
	m, _ := inspect.NewMasker(nil)
	p, _ := jsonmask.ParsePath("$..ssn")
	f, err := jsonmask.New(jsonmask.Config{Rules: []jsonmask.Rule{{Path: p, Strategy: inspect.Redact}}, Masker: m})
	if err != nil {
		t.Fatal(err)
	}
	in := "id: 1\nevent: customer\ndata: {\"id\":1,\ndata:  \"s\\u0073n\":\"123-45-6789\"}\n\n" +
		": ping\n\n" +
		"data: [{\"ssn\":\"123-45-6789\"},{\"name\":\"Al\"}]\r\n\r\n"
	rd := NewReader(strings.NewReader(in), 0)
	var out []byte
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.HasData {
			var b bytes.Buffer
			if _, err := f.Copy(&b, strings.NewReader(e.Data)); err != nil {
				t.Fatal(err)
			}
			e.Data = b.String()
		}
		if out, err = AppendEvent(out, e); err != nil {
			t.Fatal(err)
		}
	}
	want := "id: 1\nevent: customer\ndata: {\"id\":1,\ndata:  \"s\\u0073n\":\"***\"}\n\n:\n\ndata: [{\"ssn\":\"***\"},{\"name\":\"Al\"}]\n\n"
	if string(out) != want {
		t.Fatalf("got %q\nwant %q", out, want)
	}
	if bytes.Contains(out, []byte("6789")) || bytes.Contains(out, []byte("ping")) {
		t.Fatalf("leaked: %q", out)
	}
}

func FuzzSSE(f *testing.F) {
	for _, s := range []string{
		"data: a\ndata: b\n\n", "id: 1\r\nevent: x\r\nretry: 10\r\ndata: {}\r\n\r\n", ": c\n\n", "data\rdata\r\r",
		"\xef\xbb\xbfdata: x\n\n", "id: a\x00\ndata: b\n\n", "data:  lead\n\nfoo\n\n", "data: x\r",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, err := readAll(t, bytes.NewReader(in), 256)
		if err != nil && !errors.Is(err, ErrTooLarge) {
			t.Fatal(err)
		}
		slow, err2 := readAll(t, iotest.OneByteReader(bytes.NewReader(in)), 256)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(evs, slow) {
			t.Fatalf("one byte at a time reads %+v (%v), not %+v (%v)", slow, err2, evs, err)
		}
		var out []byte
		for _, e := range evs {
			if out, err = AppendEvent(out, e); err != nil {
				t.Fatalf("%+v: %v", e, err)
			}
		}
		again, err := readAll(t, bytes.NewReader(out), 0)
		if err != nil || !reflect.DeepEqual(again, evs) {
			t.Fatalf("round trip: %+v (%v), want %+v; wire %q", again, err, evs, out)
		}
	})
}

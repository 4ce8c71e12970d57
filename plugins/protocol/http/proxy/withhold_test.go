package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

// readAllIn reads r through pieces of the given sizes (cycled), as an upstream's body arrives.
func readAllIn(r io.Reader, sizes []int) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		p := make([]byte, max(1, sizes[i%len(sizes)]))
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// checkWithheld holds withholdSecret to its contract on one body, arriving in pieces: a body
// without the secret passes whole and unchanged; one with it ends in errCredentialQuoted having passed
// on only bytes before the secret's first occurrence.
func checkWithheld(t *testing.T, body, secret []byte, in, out []int) {
	t.Helper()
	for _, size := range []int{bodyBuffer(-1), bodyBuffer(int64(len(body))), 7} { // unknown length, known, tiny reads
		var src io.Reader = bytes.NewReader(body)
		if len(in) > 0 {
			src = &chunked{b: body, sizes: in}
		}
		got, err := readAllIn(newWithholdSecret(src, string(secret), size), out)
		at := bytes.Index(body, secret)
		if at < 0 {
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("reads of %d, body without the secret: got %q, %v; want %q", size, got, err, body)
			}
			continue
		}
		if !errors.Is(err, errCredentialQuoted) {
			t.Fatalf("reads of %d, body with the secret at %d: error %v, passed %q", size, at, err, got)
		}
		if len(got) > at || !bytes.HasPrefix(body, got) {
			t.Fatalf("reads of %d: passed on %q of %q, beyond the secret's start at %d", size, got, body, at)
		}
	}
}

// chunked returns b in reads of the given sizes (cycled).
type chunked struct {
	b     []byte
	sizes []int
	i     int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.b), max(1, c.sizes[c.i%len(c.sizes)]))
	c.i++
	n = copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func TestWithholdSecret(t *testing.T) {
	const secret = "canary-token-6f1d2a"
	cases := []struct{ name, body string }{
		{"echoed in an error", `{"error":"token Bearer ` + secret + ` is not valid"}`},
		{"at the start", secret + `"}`},
		{"at the end", `{"t":"` + secret},
		{"after a false start", `{"t":"canary-tocanary-token-6f1d2a"}`},
		{"clean", `{"id":1,"name":"Ada"}`},
		{"ends in a prefix (control)", `{"t":"canary-tok`},
		{"prefixes only (control)", strings.Repeat("canary-", 50)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, in := range [][]int{nil, {1}, {3, 7}, {19}, {18, 1}} {
				for _, out := range [][]int{{1}, {5}, {32 << 10}} {
					checkWithheld(t, []byte(tc.body), []byte(secret), in, out)
				}
			}
		})
	}
	// The underlying reader's error passes as it is, after what came before it.
	r := newWithholdSecret(iotest.DataErrReader(iotest.TimeoutReader(strings.NewReader("{}"))), secret, bodyBuffer(-1))
	if b, err := io.ReadAll(r); string(b) != "{}" || !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("got %q, %v", b, err)
	}
}

func FuzzWithholdSecret(f *testing.F) {
	f.Add([]byte(`{"error":"token abcabd is not valid"}`), []byte("abcabd"), uint8(3), uint8(5))
	f.Add([]byte(`abcababcabd`), []byte("abcabd"), uint8(1), uint8(1))
	f.Add([]byte(`aaaaaaab`), []byte("aab"), uint8(2), uint8(7))
	f.Fuzz(func(t *testing.T, body, secret []byte, in, out uint8) {
		if len(secret) == 0 || len(body) > 1<<16 {
			return
		}
		checkWithheld(t, body, secret, []int{int(in), int(in)/2 + 1}, []int{int(out)})
	})
}

// An upstream that echoes the injected credential in a body gives the agent none of it, whether the
// body is relayed, masked or an event stream, and none reaches the records; bodies without it pass.
func TestCredentialQuotedInAResponseBodyIsWithheld(t *testing.T) {
	for _, tc := range []struct {
		name, path, contentType string
		masked                  bool
	}{
		{"relayed error", "/v1/orders/1", "application/json", false},
		{"relayed stream", "/v1/orders/1", "text/event-stream", false},
		{"masked json", "/v1/customers/1", "application/json", true},
		{"masked stream", "/v1/customers/1/events", "text/event-stream", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := true
			r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				quoted := "none"
				if echo {
					quoted = req.Header.Get("Authorization")
				}
				if tc.contentType == "text/event-stream" {
					fmt.Fprintf(w, "data: {\"id\":1,\"ssn\":\"1\"}\n\ndata: {\"id\":2,\"note\":\"%s\"}\n\n", quoted)
					return
				}
				fmt.Fprintf(w, `{"id":1,"ssn":"1","error":"token %s is not valid"}`, quoted)
			}})
			r.policy.record = "full"
			r.engine.cfg.FullData = true
			if tc.masked {
				r.policy.masks = map[string]string{"$.ssn": "redact"}
			}
			c := r.client(t, agentID)
			var got []byte
			if resp, err := c.Do(newReq(t, "GET", r.url(tc.path), "")); err == nil {
				got, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				for k, v := range resp.Header {
					noCanary(t, "the response header "+k, strings.Join(v, ","))
				}
			}
			noCanary(t, "the response body", string(got))
			recs := recordsText(t, r.sink)
			noCanary(t, "the records", recs)
			if !strings.Contains(recs, errCredentialQuoted.Error()) {
				t.Fatalf("no record says the response was withheld: %s", recs)
			}
			// Control: the same response without the credential reaches the agent whole.
			echo = false
			status, body, _ := get(t, c, newReq(t, "GET", r.url(tc.path), ""))
			if status != 200 || !strings.Contains(body, `"id":2`) && !strings.Contains(body, "token none is not valid") {
				t.Fatalf("control: %d %q", status, body)
			}
		})
	}
}

package proxy

import (
	"bytes"
	"errors"
	"io"
)

// errCredentialQuoted ends a response whose body quotes the session's credential.
var errCredentialQuoted = errors.New("the upstream's response quotes the target's credential, so it is withheld")

// withholdSecret reads an upstream's response body for whatever relays it (plain, masked, as events,
// recorded), ending it with errCredentialQuoted where the credential appears, before any byte of that
// occurrence is passed on: an upstream that echoes the request's headers, or an error that quotes the
// token it refused, must not hand the agent the credential the broker injected. It holds back only
// the longest tail of what it read that could begin the credential, so a stream's event or chunk
// that ends in anything else is passed on whole, at once.
type withholdSecret struct {
	r       io.Reader
	secret  []byte
	buf     []byte // read, not passed on: ready then held
	ready   int    // bytes of buf that may be passed on
	scratch []byte
	err     error
}

// newWithholdSecret withholds secret from r, reading it size bytes at a time (bodyBuffer).
func newWithholdSecret(r io.Reader, secret string, size int) *withholdSecret {
	return &withholdSecret{r: r, secret: []byte(secret), scratch: make([]byte, size)}
}

func (w *withholdSecret) Read(p []byte) (int, error) {
	for {
		if w.ready > 0 {
			n := copy(p, w.buf[:w.ready])
			w.buf = w.buf[:copy(w.buf, w.buf[n:])]
			w.ready -= n
			return n, nil
		}
		if w.err != nil {
			if w.err == io.EOF && len(w.buf) > 0 {
				// The stream ended within a tail that began the credential but did not complete it.
				w.ready = len(w.buf)
				continue
			}
			return 0, w.err
		}
		n, err := w.r.Read(w.scratch)
		w.buf = append(w.buf, w.scratch[:n]...)
		w.err = err
		if bytes.Contains(w.buf, w.secret) {
			w.buf, w.ready, w.err = nil, 0, errCredentialQuoted
			return 0, w.err
		}
		w.ready = len(w.buf) - w.heldTail()
		if n == 0 && err == nil && w.ready == 0 {
			return 0, nil
		}
	}
}

// heldTail is the length of the longest tail of buf that is a proper prefix of the credential.
func (w *withholdSecret) heldTail() int {
	b := w.buf
	if len(b) >= len(w.secret) {
		b = b[len(b)-len(w.secret)+1:]
	}
	for i := 0; i < len(b); i++ {
		if b[i] == w.secret[0] && bytes.HasPrefix(w.secret, b[i:]) {
			return len(b) - i
		}
	}
	return 0
}

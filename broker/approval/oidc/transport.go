package oidc

import (
	"fmt"
	"io"
	"net/http"
)

// boundedTransport fails the read of any response body longer than max bytes, so a provider (or
// anything in its place) cannot make the broker buffer without limit.
type boundedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t *boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("oidc: %s %s answered %d bytes, more than the %d allowed (max_response_bytes)", r.Method, r.URL.Redacted(), resp.ContentLength, t.max)
	}
	resp.Body = &boundedBody{rc: resp.Body, left: t.max, url: r.URL.Redacted()}
	return resp, nil
}

type boundedBody struct {
	rc   io.ReadCloser
	left int64
	url  string
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("oidc: the response of %s exceeds max_response_bytes", b.url)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

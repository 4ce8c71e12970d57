package proxy

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// A HEAD on a path whose GET masks fields gets no length, validator or digest of the unmasked GET
// body, and sends no precondition; a HEAD where the GET masks nothing keeps them.
func TestHeadOfAMaskedGetDescribesNoUnmaskedBody(t *testing.T) {
	const doc = `{"id":1,"email":"ada@example.org","ssn":"123-45-6789"}`
	routes := append([]route.Block{
		{Pattern: "HEAD /v1/customers/{id}"},
		{Pattern: "HEAD /v1/orders/{id}"},
	}, customerRoutes...)
	r := newRig(t, rigOptions{routes: routes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(doc))))
		w.Header().Set("Digest", "sha-256=x")
		http.ServeContent(w, req, "", time.Time{}, strings.NewReader(doc))
	}})
	r.policy.masks = map[string]string{"$.ssn": "redact", "$.email": "redact"}
	c := r.client(t, agentID)
	head := func(path string) (int, http.Header) {
		req := newReq(t, "HEAD", r.url(path), "")
		req.Header.Set("If-None-Match", fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(doc))))
		status, _, hdr := get(t, c, req)
		return status, hdr
	}
	status, hdr := head("/v1/customers/1")
	if status != http.StatusOK {
		t.Fatalf("HEAD of a masked GET: %d (a 304 says the guessed ETag is right)", status)
	}
	for _, h := range []string{"Content-Length", "Etag", "Digest"} {
		if hdr.Get(h) != "" {
			t.Errorf("HEAD of a masked GET carried the unmasked body's %s: %q", h, hdr.Get(h))
		}
	}
	if got := r.up.requests()[0].Header.Get("If-None-Match"); got != "" {
		t.Errorf("the precondition reached the upstream")
	}
	// Control: where the GET masks nothing, HEAD keeps its head and its preconditions.
	status, hdr = head("/v1/orders/1")
	if status != http.StatusNotModified || hdr.Get("Etag") == "" {
		t.Fatalf("control: %d %v", status, hdr)
	}
	status, _, hdr = get(t, c, newReq(t, "HEAD", r.url("/v1/orders/1"), ""))
	if status != http.StatusOK || hdr.Get("Content-Length") != fmt.Sprint(len(doc)) {
		t.Fatalf("control: %d %v", status, hdr)
	}
}

package proxy

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A masked response reaches the agent only in the charset the masker read it in, under one
// Content-Type: a client decoding UTF-7 reads "+AHM-sn" as "ssn", a key the masker never saw.
func TestMaskedResponseCharsetAndTypeAreTheMaskersReading(t *testing.T) {
	const ssn = "123-45-6789"
	cases := []struct {
		name        string
		contentType []string
		body        string
		status      int
		wantType    string
	}{
		{"utf-7 charset", []string{"application/json; charset=utf-7"}, `{"id":1,"+AHM-sn":"` + ssn + `"}`, http.StatusBadGateway, ""},
		{"utf-16 charset", []string{"application/problem+json; charset=UTF-16"}, `{"id":1,"ssn":"` + ssn + `"}`, http.StatusBadGateway, ""},
		{"two content types", []string{"application/json", "text/plain; charset=utf-7"}, `{"id":1,"ssn":"` + ssn + `"}`, http.StatusBadGateway, ""},
		{"unparseable content type", []string{"application/json; charset"}, `{"id":1,"ssn":"` + ssn + `"}`, http.StatusBadGateway, ""},
		// Controls: UTF-8, said or not, is masked and sent under the media type alone.
		{"utf-8 charset", []string{"application/json; charset=UTF-8"}, `{"id":1,"ssn":"` + ssn + `"}`, http.StatusOK, "application/json"},
		{"no charset, +json", []string{"application/problem+json"}, `{"id":1,"ssn":"` + ssn + `"}`, http.StatusOK, "application/problem+json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
				w.Header()["Content-Type"] = tc.contentType
				fmt.Fprint(w, tc.body)
			}})
			r.policy.masks = map[string]string{"$.ssn": "redact"}
			status, body, hdr := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/customers/1"), ""))
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if strings.Contains(body, ssn) {
				t.Fatalf("the masked value reached the agent: %s", body)
			}
			if tc.wantType != "" {
				if got := hdr.Values("Content-Type"); len(got) != 1 || got[0] != tc.wantType {
					t.Fatalf("Content-Type %q, want only %q", got, tc.wantType)
				}
				if !strings.Contains(body, `"ssn":"***"`) {
					t.Fatalf("not masked: %s", body)
				}
			}
		})
	}
}

// A content coding in any Content-Encoding header of a masked response refuses it: the masker reads
// the bytes as they come, and the agent would decode them with every coding listed.
func TestMaskedResponseWithACodingInAnyContentEncodingIsRefused(t *testing.T) {
	cases := []struct {
		name     string
		encoding []string
		status   int
	}{
		{"identity then gzip", []string{"identity", "gzip"}, http.StatusBadGateway},
		{"identity, br in one", []string{"identity, br"}, http.StatusBadGateway},
		{"gzip", []string{"gzip"}, http.StatusBadGateway},
		{"identity alone (control)", []string{"identity"}, http.StatusOK},
		{"none (control)", nil, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if tc.encoding != nil {
					w.Header()["Content-Encoding"] = tc.encoding
				}
				fmt.Fprint(w, `{"id":1,"ssn":"123-45-6789"}`)
			}})
			r.policy.masks = map[string]string{"$.ssn": "redact"}
			status, body, _ := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/customers/1"), ""))
			if status != tc.status || strings.Contains(body, "123-45-6789") {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if status == http.StatusOK && !strings.Contains(body, `"ssn":"***"`) {
				t.Fatalf("not masked: %s", body)
			}
		})
	}
}

// A masked route's response is the whole representation: the agent's Range is not forwarded, and an
// upstream's part of one (206) is refused, since the bytes of one value ("123-45-6789") are a JSON
// document of their own, whose root no field path names.
func TestMaskedResponseIsNeverAPart(t *testing.T) {
	const doc = `{"id":1,"ssn":"123-45-6789"}`
	forceRange := false
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if forceRange {
			req.Header.Set("Range", "bytes=14-26")
		}
		http.ServeContent(w, req, "", time.Time{}, strings.NewReader(doc))
	}})
	r.policy.masks = map[string]string{"$.ssn": "redact"}
	c := r.client(t, agentID)
	ranged := func(path string) (int, string) {
		req := newReq(t, "GET", r.url(path), "")
		req.Header.Set("Range", "bytes=14-26")
		status, body, _ := get(t, c, req)
		return status, body
	}
	if status, body := ranged("/v1/customers/1"); status != http.StatusOK || body != `{"id":1,"ssn":"***"}` {
		t.Fatalf("ranged request of a masked route: %d %q, want the whole body masked", status, body)
	}
	if got := r.up.requests()[0].Header; got.Get("Range") != "" {
		t.Fatalf("the agent's Range reached the upstream of a masked route")
	}
	forceRange = true // an upstream that answers with a part unasked
	if status, body := ranged("/v1/customers/1"); status != http.StatusBadGateway || strings.Contains(body, "123-45") {
		t.Fatalf("a part of a masked response: %d %q", status, body)
	}
	// Control: a route with nothing masked forwards Range and relays the part.
	forceRange = false
	r.policy.masks = nil
	if status, body := ranged("/v1/orders/1"); status != http.StatusPartialContent || body != `"123-45-6789"` {
		t.Fatalf("control: %d %q", status, body)
	}
}

// A masked route's request reaches the upstream without preconditions: a 304 or 412 would tell the
// agent whether its guess of a validator hashed from the unmasked body (the ETag it never sees) is
// right.
func TestMaskedResponseIsNoValidatorOracle(t *testing.T) {
	const doc = `{"id":1,"ssn":"123-45-6789"}`
	etag := func(body string) string { return fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(body))) }
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", etag(doc))
		http.ServeContent(w, req, "", time.Time{}, strings.NewReader(doc))
	}})
	r.policy.masks = map[string]string{"$.ssn": "redact"}
	c := r.client(t, agentID)
	guess := func(path, header, value string) int {
		req := newReq(t, "GET", r.url(path), "")
		req.Header.Set(header, value)
		status, _, _ := get(t, c, req)
		return status
	}
	for _, h := range []string{"If-None-Match", "If-Match"} {
		right, wrong := guess("/v1/customers/1", h, etag(doc)), guess("/v1/customers/1", h, etag(`{"id":1,"ssn":"000-00-0000"}`))
		if right != http.StatusOK || wrong != http.StatusOK {
			t.Fatalf("%s on a masked route: %d for the right guess, %d for a wrong one; want 200 for both", h, right, wrong)
		}
	}
	// Control: a route with nothing masked keeps its conditional requests.
	r.policy.masks = nil
	if status := guess("/v1/orders/1", "If-None-Match", etag(doc)); status != http.StatusNotModified {
		t.Fatalf("control: %d, want 304", status)
	}
}

// The refusal of a body the masker cannot read quotes none of it: the byte where it failed may be
// the first of a masked value.
func TestUnreadableMaskedBodyRefusalQuotesNoneOfIt(t *testing.T) {
	for _, tc := range []struct{ value, quoted string }{
		{"Q23-45-6789", "Q"}, // an upstream that forgot the quotes
		{"tQ3-45-6789", "true"},
		{"nQ3-45-6789", "null"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"id":1,"ssn":%s}`, tc.value)
			}})
			r.policy.masks = map[string]string{"$.ssn": "redact"}
			status, body, _ := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/customers/1"), ""))
			if status != http.StatusBadGateway || !strings.Contains(body, "could not be masked") {
				t.Fatalf("got %d %s", status, body)
			}
			for _, where := range []string{body, recordsText(t, r.sink)} {
				if strings.Contains(where, "'"+tc.quoted+"'") || strings.Contains(where, "want "+tc.quoted+")") || strings.Contains(where, tc.value) {
					t.Fatalf("the start of the masked value was quoted: %s", where)
				}
			}
		})
	}
}

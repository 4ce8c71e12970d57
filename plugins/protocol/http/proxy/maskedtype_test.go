package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
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

package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// secrets appear in the upstream's responses; none may reach the agent where its field is masked.
var secrets = []string{"ada@example.org", "123-45-6789", "bob@example.org", "987-65-4321", "dup-first@example.org", "dup-second@example.org"}

func TestJSONFieldsAreMasked(t *testing.T) {
	list := `{"items":[{"id":1,"email":"ada@example.org","ssn":"123-45-6789","manager":{"email":"kept@example.org"}},` +
		`{"id":2,"email":"dup-first@example.org","email":"dup-second@example.org","ssn":"987-65-4321"},` +
		`{"id":3,"email":"bob@example.org","ssn":null}],"next":"c2"}`
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		if strings.HasPrefix(req.URL.Path, "/v1/customers/") {
			fmt.Fprint(w, `{"id":1,"name":"Ada","email":"ada@example.org","ssn":"123-45-6789"}`)
			return
		}
		fmt.Fprint(w, list)
	}})
	r.policy.masks = map[string]string{"$.items[*].email": "redact", "$.items[*].ssn": "null", "$.ssn": "partial", "$.email": "redact"}
	r.policy.record = "full"
	r.engine.cfg.FullData = true
	c := r.client(t, agentID)

	status, body, hdr := get(t, c, newReq(t, "GET", r.url("/v1/customers?limit=3"), ""))
	if status != 200 {
		t.Fatalf("got %d %s", status, body)
	}
	var doc struct {
		Items []map[string]any `json:"items"`
		Next  string           `json:"next"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("the masked body is not JSON: %v: %s", err, body)
	}
	if len(doc.Items) != 3 || doc.Next != "c2" || doc.Items[0]["manager"].(map[string]any)["email"] != "kept@example.org" {
		t.Fatalf("unmasked parts changed: %s", body)
	}
	for _, it := range doc.Items {
		if it["ssn"] != nil || it["email"] == nil {
			t.Fatalf("item %v", it)
		}
	}
	if hdr.Get("Content-Length") != "" && hdr.Get("Content-Length") != fmt.Sprint(len(body)) || hdr.Get("Etag") != "" {
		t.Fatalf("headers of the unmasked body reached the agent: %v", hdr)
	}
	status, one, _ := get(t, c, newReq(t, "GET", r.url("/v1/customers/1"), ""))
	if status != 200 || !strings.Contains(one, `"name":"Ada"`) {
		t.Fatalf("got %d %s", status, one)
	}
	for _, s := range secrets {
		if strings.Contains(body, s) || strings.Contains(one, s) {
			t.Fatalf("%q reached the agent: %s %s", s, body, one)
		}
	}
	// The records hold the masked bodies (full recording) and which fields were masked, never the
	// values.
	recs := recordsText(t, r.sink)
	for _, s := range secrets {
		if strings.Contains(recs, s) {
			t.Fatalf("%q reached the audit records", s)
		}
	}
	found := false
	for _, rec := range r.sink.all() {
		if rec.Kind == audit.KindResult && rec.Detail["route"] == "GET /v1/customers" {
			found = rec.Detail["masked"] == "$.items[*].email=redact,$.items[*].ssn=null" && strings.Contains(rec.Detail["body"], `"next":"c2"`) && rec.Result.Rows == 6
		}
	}
	if !found {
		t.Fatalf("no result record with the masked fields and body: %s", recs)
	}
	// Control: a principal with nothing masked sees the values. The fake policy has no epochs, so the
	// changed policy is seen by a new session: this one keeps its verdicts, with their field masks.
	r.policy.masks = nil
	if _, clear, _ := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/customers/1"), "")); !strings.Contains(clear, "123-45-6789") {
		t.Fatalf("control: %s", clear)
	}
}

func TestEventStreamFieldsAreMaskedPerEvent(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		fmt.Fprint(w, ": keep-alive\n\n")
		fmt.Fprint(w, "event: customer\nid: 1\ndata: {\"id\":1,\n")
		fmt.Fprint(w, "data:  \"ssn\":\"123-45-6789\"}\n\n")
		fl.Flush()
		fmt.Fprint(w, "event: customer\r\ndata: {\"id\":2,\"ssn\":\"987-65-4321\"}\r\n\r\n")
	}})
	r.policy.masks = map[string]string{"$.ssn": "redact"}
	status, body, hdr := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/customers/1/events"), ""))
	if status != 200 || hdr.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %d %v %s", status, hdr, body)
	}
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Fatalf("%q reached the agent: %s", s, body)
		}
	}
	if strings.Count(body, "event: customer\n") != 2 || !strings.Contains(body, `"id":2`) || !strings.Contains(body, "id: 1\n") {
		t.Fatalf("events changed beyond the masked field: %q", body)
	}
}

func TestUnparseableBodyWithMaskedFieldIsRefused(t *testing.T) {
	var respond func(w http.ResponseWriter)
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) { respond(w) }})
	r.policy.masks = map[string]string{"$.ssn": "redact"}
	c := r.client(t, agentID)
	cases := []struct {
		name    string
		respond func(w http.ResponseWriter)
	}{
		{"text/plain", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "ssn 123-45-6789")
		}},
		{"no content type", func(w http.ResponseWriter) {
			w.Header()["Content-Type"] = nil
			fmt.Fprint(w, `{"ssn":"123-45-6789"}`)
		}},
		{"invalid JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ssn":"123-45-6789",}`)
		}},
		{"two values", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":1} {"ssn":"123-45-6789"}`)
		}},
		{"gzip", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			fmt.Fprint(w, `{"ssn":"123-45-6789"}`)
		}},
		{"error status with text", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			fmt.Fprint(w, "<p>123-45-6789</p>")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			respond = tc.respond
			status, body, _ := get(t, c, newReq(t, "GET", r.url("/v1/customers/1"), ""))
			if status != http.StatusBadGateway || strings.Contains(body, "123-45-6789") || !strings.Contains(body, "GET /v1/customers/{id}") {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
	// Controls: the same text on a route without masked fields, and valid JSON on the masked route.
	respond = cases[0].respond
	if status, body, _ := get(t, c, newReq(t, "GET", r.url("/v1/orders/1"), "")); status != 200 || body != "ssn 123-45-6789" {
		t.Fatalf("control text: %d %s", status, body)
	}
	respond = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":1,"ssn":"123-45-6789"}`)
	}
	if status, body, _ := get(t, c, newReq(t, "GET", r.url("/v1/customers/1"), "")); status != 200 || !strings.Contains(body, `"id":1`) || strings.Contains(body, "123-45") {
		t.Fatalf("control JSON: %d %s", status, body)
	}
}

func TestLargeMaskedBodyRefusedMidStreamIsCutOff(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// Far more than commitBytes and all the masking path buffers (the filter's output, the
		// write-behind buffers), so that the headers have gone before the refusal.
		fmt.Fprint(w, `{"pad":"`+strings.Repeat("x", 16*commitBytes+pipeDepth*writeBuffer)+`","ssn":"123-45-6789",]`)
	}})
	r.policy.masks = map[string]string{"$.ssn": "redact"}
	resp, err := r.client(t, agentID).Do(newReq(t, "GET", r.url("/v1/customers/1"), ""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = fmt.Fprint(&b, "")
	buf := make([]byte, 4096)
	for {
		n, rerr := resp.Body.Read(buf)
		b.Write(buf[:n])
		if rerr != nil {
			err = rerr
			break
		}
	}
	if err == nil || err.Error() == "EOF" || strings.Contains(b.String(), "123-45-6789") {
		t.Fatalf("the body ended normally (%v) or leaked", err)
	}
}

func TestMaskedEventStreamIsNotHeldBack(t *testing.T) {
	release := make(chan struct{})
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"id\":1,\"ssn\":\"123-45-6789\"}\n\n")
		w.(http.Flusher).Flush()
		select { // the second event only once the agent has the first
		case <-release:
		case <-req.Context().Done():
			return
		}
		fmt.Fprint(w, "data: {\"id\":2,\"ssn\":\"987-65-4321\"}\n\n")
	}})
	r.policy.masks = map[string]string{"$.ssn": "redact"}
	resp, err := r.client(t, agentID).Do(newReq(t, "GET", r.url("/v1/customers/1/events"), ""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 512)
	n, err := resp.Body.Read(first)
	if err != nil || !strings.Contains(string(first[:n]), `"id":1`) || strings.Contains(string(first[:n]), "123-45") {
		t.Fatalf("first event: %q, %v", first[:n], err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(rest), `"id":2`) || strings.Contains(string(rest), "987-65") {
		t.Fatalf("second event: %q, %v", rest, err)
	}
}

package proxy

import (
	"net/http"
	"testing"
)

// The upstream acts on the request Cedar decided: no header of the agent's that frameworks read a
// method, path or origin from reaches it, under any spelling, while ordinary headers do.
func TestHeadersThatRestateTheRequestStayBehind(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	req := newReq(t, "GET", r.url("/v1/orders/7"), "")
	restating := map[string]string{
		"X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE",
		"X-Original-URL": "/v1/admin", "X-Rewrite-URL": "/v1/admin", "X-Forwarded-Prefix": "/v1/admin",
		"X-Forwarded-Port": "1", "X-Original-Host": "admin.internal",
	}
	for k, v := range restating {
		req.Header.Set(k, v)
	}
	// Underscored spellings, which CGI-style servers read as the dashed names.
	req.Header["X_HTTP_Method_Override"] = []string{"DELETE"}
	req.Header["X_Original_URL"] = []string{"/v1/admin"}
	req.Header.Set("X-Request-Id", "kept")
	req.Header.Set("X-Tenant-Hint", "kept")
	if status, body, _ := get(t, r.client(t, agentID), req); status != http.StatusOK {
		t.Fatalf("got %d %s", status, body)
	}
	got := r.up.requests()[0]
	if got.Method != "GET" || got.RequestURI != "/v1/orders/7" {
		t.Fatalf("upstream got %s %s", got.Method, got.RequestURI)
	}
	for k := range got.Header {
		if restatesRequest(k) || restating[k] != "" {
			t.Errorf("the agent's %s reached the upstream", k)
		}
	}
	for _, k := range append([]string{"X_http_method_override", "X_original_url"}, keys(restating)...) {
		if len(got.Header.Values(k)) > 0 {
			t.Errorf("the agent's %s reached the upstream", k)
		}
	}
	// Control: ordinary headers are forwarded.
	if got.Header.Get("X-Request-Id") != "kept" || got.Header.Get("X-Tenant-Hint") != "kept" {
		t.Fatalf("control: ordinary headers were not forwarded: %v", got.Header)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

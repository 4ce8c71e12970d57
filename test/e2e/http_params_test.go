package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// TestHTTPPolicyOnAPathParameterHolds: a policy that forbids support one order by its id (added to
// the running broker's policies, which reload) refuses that order however the request spells the
// id: percent-encoded digits are decoded before Cedar sees them, and spellings the API would read
// as the same number (leading zeros, a sign) never reach that order. Other orders pass.
func TestHTTPPolicyOnAPathParameterHolds(t *testing.T) {
	h := httpShared(t)
	policy := filepath.Join(h.b.PolicyDir, "zz-e2e-no-order-21.cedar")
	if err := os.WriteFile(policy, []byte(`@id("e2e-no-order-21")
forbid (principal in Group::"support", action == Action::"http:get", resource == Route::"api/GET /v1/orders/{id}")
when { context.params has id && context.params.id == "21" };
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := h.httpClient(t, stack.PersonaSupport)
	t.Cleanup(func() {
		os.Remove(policy)
		// Wait for the reload, so that the tests after this one see the packs alone.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			resp, err := c.Get(h.base() + "/v1/orders/21")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		t.Error("the policy's removal did not reload")
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := h.do(t, c, "GET", "/v1/orders/21", nil, "")
		if r.status == http.StatusForbidden && strings.Contains(r.body, "e2e-no-order-21") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new policy did not take effect: %s", r)
		}
	}
	for _, p := range []string{"/v1/orders/%32%31", "/v1/orders/021", "/v1/orders/+21", "/v1/orders/%2B21", "/v1/orders/21.0"} {
		r := h.do(t, c, "GET", p, nil, "")
		if r.status < 400 || strings.Contains(r.body, `"id":21`) {
			t.Errorf("GET %s: %s; the forbidden order was served", p, r)
		}
	}
	if r := h.do(t, c, "GET", "/v1/orders/20", nil, ""); r.status != http.StatusOK || !strings.Contains(r.body, `"id":20`) {
		t.Fatalf("control: GET /v1/orders/20: %s", r)
	}
}

// TestHTTPPolicyReloadEndsTheSession: support's connection has a session and an API token; a policy
// that forbids support the api target, loaded while the connection stays open, ends that session:
// its next request is refused, its API token is revoked (gone from the API's table), and the API
// sees no request of support's after the reload.
func TestHTTPPolicyReloadEndsTheSession(t *testing.T) {
	h := httpShared(t)
	up := h.watchUpstream(t)
	tokenRows := h.tokenRows(t)
	c := h.httpClient(t, stack.PersonaSupport)
	mark := up.mark(t)
	if r := h.do(t, c, "GET", "/v1/orders/10", nil, ""); r.status != http.StatusOK {
		t.Fatalf("GET /v1/orders/10: %s", r)
	}
	lookups := up.lookupsSince(t, mark)
	if len(lookups) != 1 || lookups[0] == "?" || tokenRows(lookups[0]) != 1 {
		t.Fatalf("lookups %q: want the one live token of support's session", lookups)
	}
	policy := filepath.Join(h.b.PolicyDir, "zz-e2e-no-support-api.cedar")
	if err := os.WriteFile(policy, []byte(`@id("e2e-no-support-api")
forbid (principal in Group::"support", action, resource in Target::"api");
`), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := h.httpClient(t, stack.PersonaSupport)
	t.Cleanup(func() {
		os.Remove(policy)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			fresh.CloseIdleConnections()
			resp, err := fresh.Get(h.base() + "/v1/orders/10")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		t.Error("the policy's removal did not reload")
	})
	var r httpReply
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if r = h.doErr(t, c, "GET", "/v1/orders/10"); r.status != http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("support's open connection is still served after the reload forbade it")
		}
	}
	if r.status != 0 && r.status != http.StatusForbidden && r.status != http.StatusServiceUnavailable {
		t.Fatalf("support's request after the reload: %s, want it refused", r)
	}
	for deadline := time.Now().Add(30 * time.Second); tokenRows(lookups[0]) != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the ended session's API token is still valid at the API")
		}
	}
	mark = up.mark(t)
	for range 2 {
		if r := h.doErr(t, c, "GET", "/v1/orders/10"); r.status == http.StatusOK {
			t.Fatalf("support served after the reload: %s", r)
		}
	}
	if n := up.lookupsSince(t, mark); len(n) != 0 {
		t.Fatalf("the API served %d of support's requests after the reload", len(n))
	}
}

// doErr is do for a request whose connection the broker may close: a transport error is status 0.
func (h *httpStack) doErr(t testing.TB, c *http.Client, method, path string) httpReply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.base()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return httpReply{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpReply{resp.StatusCode, resp.Header, string(b)}
}

package e2e

import (
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

package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

func TestBearerSessionEndsWithItsTokenAndANewTokenOpensAnother(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	c := r.client(t, "")
	exp := time.Now().Add(1500 * time.Millisecond)
	short := r.token(t, agentID, func(m map[string]any) { m["exp"] = exp.Unix() })
	req := newReq(t, "GET", r.url("/v1/orders/1"), "")
	req.Header.Set("Authorization", "Bearer "+short)
	if status, body, _ := get(t, c, req); status != 200 {
		t.Fatalf("got %d %s", status, body)
	}
	// Wait until the token has expired (its exp is in whole seconds) and its session ended.
	ended := func() bool {
		for _, rec := range r.sink.all() {
			if rec.Kind == audit.KindSessionEnd && strings.Contains(rec.Detail["reason"], "expired") {
				return true
			}
		}
		return false
	}
	for time.Now().Before(time.Unix(exp.Unix()+1, 0)) {
		time.Sleep(50 * time.Millisecond)
	}
	// The session ends by itself, its credential revoked, before any other request comes.
	for deadline := time.Now().Add(10 * time.Second); !ended(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the expired session did not end: %s", recordsText(t, r.sink))
		}
	}
	revoked := false
	for _, rec := range r.sink.all() {
		revoked = revoked || rec.Kind == audit.KindLease && rec.Detail["event"] == "revoked"
	}
	if !revoked {
		t.Fatalf("the expired session's lease was not revoked: %s", recordsText(t, r.sink))
	}
	req = newReq(t, "GET", r.url("/v1/orders/2"), "")
	req.Header.Set("Authorization", "Bearer "+short)
	if status, body, _ := get(t, c, req); status != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("the expired token: %d %s", status, body)
	}
	req = newReq(t, "GET", r.url("/v1/orders/3"), "")
	req.Header.Set("Authorization", "Bearer "+r.token(t, agentID, nil))
	if status, body, _ := get(t, c, req); status != 200 {
		t.Fatalf("a fresh token: %d %s", status, body)
	}
	if !ended() {
		t.Fatalf("the first session's end was not recorded as an expiry: %s", recordsText(t, r.sink))
	}
	if n := len(r.up.requests()); n != 2 || r.leased() != 2 {
		t.Fatalf("%d forwarded, %d sessions; want 2 and 2", n, r.leased())
	}
}

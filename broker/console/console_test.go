package console

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

func heldDDL(id string) approval.Request {
	return approval.Request{ID: id, Session: "s1", SPIFFEID: "spiffe://example.org/agent/migrator", Target: "shop",
		Statement: "ALTER TABLE orders ADD COLUMN note text", Policies: []string{"ddl-needs-approval"}, Decision: "d3"}
}

func sessionCookieOf(t *testing.T, r response) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

func TestLoginSetsASecureHttpOnlySameSiteCookie(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	r := b.get(b.signIn(b.startLogin(), approverEmail))
	c := sessionCookieOf(t, r)
	if c == nil {
		t.Fatalf("the callback set no session cookie: %d %s", r.status, r.body)
	}
	raw := strings.Join(r.header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(raw, want) {
			t.Errorf("session cookie lacks %s: %s", want, raw)
		}
	}
	if strings.Contains(raw, "Domain=") {
		t.Errorf("a __Host- cookie has no Domain: %s", raw)
	}
	// The session ends with the 5-minute ID token, not at the hour-long default TTL.
	if c.MaxAge <= 0 || c.MaxAge > int((5*time.Minute+2*time.Second)/time.Second) {
		t.Errorf("Max-Age %d, want the ID token's remaining life (at most 300s)", c.MaxAge)
	}
	page := b.get(h.URL + "/approvals")
	if page.status != http.StatusOK || !strings.Contains(page.body, approverEmail) {
		t.Fatalf("approvals after login: %d\n%s", page.status, page.body)
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q", csp)
	}
}

func TestPagesNeedALogin(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	for _, p := range []string{"/approvals", "/sessions", "/sessions/s1", "/can", "/why?session=s1&seq=1"} {
		if r := b.get(h.URL + p); r.status != http.StatusSeeOther || r.location != h.URL+"/login" {
			t.Errorf("GET %s without a session: %d to %q, want a redirect to /login", p, r.status, r.location)
		}
	}
	done := h.hold(heldDDL("r1"))
	r := b.post(h.URL+"/approvals/r1", url.Values{"decision": {"approve"}, "scope": {"once"}, "csrf": {"x"}}, h.URL)
	if r.status != http.StatusUnauthorized || len(h.queue.Pending()) != 1 {
		t.Fatalf("POST without a session: %d, pending %d", r.status, len(h.queue.Pending()))
	}
	select {
	case err := <-done:
		t.Fatalf("the held request ended: %v", err)
	default:
	}
}

func TestDecisionNeedsTheSessionsCSRFTokenAndOrigin(t *testing.T) {
	h := newHarness(t)
	done := h.hold(heldDDL("r1"))
	b := h.browser()
	page := b.logIn(approverEmail)
	action, fields := formOf(t, page.body, "/approvals/r1")
	fields.Set("decision", "approve")
	fields.Set("reason", "migration reviewed in CHG-1")
	if fields.Get("csrf") == "" {
		t.Fatal("the decision form carries no CSRF token")
	}
	fields.Set("scope", "once") // the form's select, as the page preselects it
	other := h.browser()
	other.logIn(approverEmail)
	refused := []struct {
		name   string
		csrf   string
		origin string
	}{
		{"no token", "", h.URL},
		{"a wrong token", "AAAA", h.URL},
		{"another origin", fields.Get("csrf"), "https://evil.example"},
		{"an opaque origin", fields.Get("csrf"), "null"},
	}
	for _, tc := range refused {
		f := url.Values{}
		for k, v := range fields {
			f[k] = v
		}
		f.Set("csrf", tc.csrf)
		if r := b.post(h.URL+action, f, tc.origin); r.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, r.status)
		}
	}
	// Another session's token is refused in this one.
	otherPage := other.get(h.URL + "/approvals")
	_, of := formOf(t, otherPage.body, "/approvals/r1")
	f := url.Values{"decision": {"approve"}, "scope": {"once"}, "csrf": {of.Get("csrf")}}
	if r := b.post(h.URL+action, f, h.URL); r.status != http.StatusForbidden {
		t.Errorf("another session's token: %d, want 403", r.status)
	}
	if n := len(h.queue.Pending()); n != 1 {
		t.Fatalf("a refused POST resolved the request: %d pending", n)
	}
	// The form as the page gave it is accepted, and the held operation goes on.
	r := b.post(h.URL+action, fields, h.URL)
	if r.status != http.StatusSeeOther || r.location != h.URL+"/approvals?done=approved" {
		t.Fatalf("the page's own form: %d %q %s", r.status, r.location, r.body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLogoutEndsTheSession(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	page := b.logIn(approverEmail)
	u, _ := url.Parse(h.URL)
	old := b.client.Jar.Cookies(u)
	action, fields := formOf(t, page.body, "/logout")
	r := b.post(h.URL+action, fields, h.URL)
	if r.status != http.StatusOK || !strings.Contains(r.body, "logged out") {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if c := sessionCookieOf(t, r); c == nil || c.MaxAge >= 0 {
		t.Errorf("logout did not expire the cookie: %+v", c)
	}
	// The old cookie, replayed, no longer works.
	b.client.Jar.SetCookies(u, old)
	if r := b.get(h.URL + "/approvals"); r.status != http.StatusSeeOther || r.location != h.URL+"/login" {
		t.Fatalf("the logged-out cookie still opens the console: %d %q", r.status, r.location)
	}
	if r := b.post(h.URL+action, fields, h.URL); r.status != http.StatusUnauthorized {
		t.Fatalf("a POST with the logged-out session: %d", r.status)
	}
}

func TestAnExpiredIDTokenIsRefused(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	callback := b.signIn(b.startLogin(), approverEmail)
	h.clock.Advance(6 * time.Minute) // past the provider's 5-minute ID tokens
	r := b.get(callback)
	if r.status != http.StatusUnauthorized || sessionCookieOf(t, r) != nil || !strings.Contains(r.body, "expired") {
		t.Fatalf("an expired ID token: %d %s", r.status, r.body)
	}
}

func TestTheSessionEndsWithTheIDToken(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	b.logIn(approverEmail)
	h.clock.Advance(4 * time.Minute)
	if r := b.get(h.URL + "/approvals"); r.status != http.StatusOK {
		t.Fatalf("within the token's life: %d", r.status)
	}
	h.clock.Advance(2 * time.Minute)
	if r := b.get(h.URL + "/approvals"); r.status != http.StatusSeeOther || r.location != h.URL+"/login" {
		t.Fatalf("past the token's expiry: %d %q", r.status, r.location)
	}
}

func TestACallbackIsUsedOnce(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	callback := b.signIn(b.startLogin(), approverEmail)
	if r := b.get(callback); r.status != http.StatusSeeOther {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	// Replayed, even by a browser holding the login cookie again, it logs nobody in.
	c := h.browser()
	r := c.get(callback)
	if r.status != http.StatusBadRequest || sessionCookieOf(t, r) != nil {
		t.Fatalf("a callback from a browser that started no login: %d", r.status)
	}
}

// A code the provider issued to another client (another audience), delivered to the console's
// callback with the console's own state, is refused: the provider will not redeem it for the console.
func TestACodeForAnotherClientIsRefused(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	r := b.get(h.URL + "/login")
	auth, _ := url.Parse(r.location)
	q := auth.Query()
	q.Set("client_id", otherClientID)
	auth.RawQuery = q.Encode()
	callback := b.signIn(b.follow(auth.String()), approverEmail)
	if r := b.get(callback); r.status != http.StatusUnauthorized || sessionCookieOf(t, r) != nil {
		t.Fatalf("a code issued to %s: %d %s", otherClientID, r.status, r.body)
	}
}

// A code from another provider (another issuer) that registered the same client and callback is
// refused.
func TestACodeFromAnotherIssuerIsRefused(t *testing.T) {
	h := newHarness(t)
	cfg := &oidcprovider.Config{Users: []oidcprovider.User{{Username: approverEmail, Password: h.passwords[approverEmail],
		Email: approverEmail, EmailVerified: true, Groups: []string{"dba"}}},
		Clients: []oidcprovider.Client{{ID: clientID, Secret: "s3cret-of-the-other-provider", Type: "web", RedirectURIs: []string{h.URL + CallbackPath}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	other, err := oidcprovider.StartLocal(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	h.roots.AppendCertsFromPEM(other.CAPEM)
	b := h.browser()
	r := b.get(h.URL + "/login")
	auth, _ := url.Parse(r.location)
	o, _ := url.Parse(other.Issuer())
	auth.Host = o.Host
	callback := b.signIn(b.follow(auth.String()), approverEmail)
	if r := b.get(callback); r.status != http.StatusUnauthorized || sessionCookieOf(t, r) != nil {
		t.Fatalf("a code from %s: %d %s", other.Issuer(), r.status, r.body)
	}
}

func TestWhoSeesWhichSessionsIsCedars(t *testing.T) {
	h := newHarness(t)
	h.recordSession("s1", "shop", true)
	h.recordSession("s2", "billing", false)
	approver, alice := h.browser(), h.browser()
	approver.logIn(approverEmail)
	alice.logIn(aliceEmail)

	r := approver.get(h.URL + "/sessions")
	if !strings.Contains(r.body, `href="/sessions/s1"`) || strings.Contains(r.body, "/sessions/s2") || !strings.Contains(r.body, "1 more session") {
		t.Fatalf("dba sees shop's sessions and not billing's:\n%s", r.body)
	}
	r = alice.get(h.URL + "/sessions")
	if strings.Contains(r.body, "/sessions/s1") || !strings.Contains(r.body, "2 more session") {
		t.Fatalf("an engineer sees no session:\n%s", r.body)
	}
	for _, p := range []string{"/sessions/s1", "/why?session=s1&seq=2"} {
		if r := alice.get(h.URL + p); r.status != http.StatusNotFound || strings.Contains(r.body, "customers") {
			t.Errorf("alice GET %s: %d", p, r.status)
		}
	}
	r = approver.get(h.URL + "/sessions/s1")
	if r.status != http.StatusOK || !strings.Contains(r.body, "Audit chain verified") || !strings.Contains(r.body, "SELECT id, email FROM customers") {
		t.Fatalf("dba replays s1: %d\n%s", r.status, r.body)
	}
	if r := approver.get(h.URL + "/sessions/s2"); r.status != http.StatusNotFound {
		t.Fatalf("dba replays billing's s2: %d", r.status)
	}
}

func TestReplayRefusesAChainThatDoesNotVerify(t *testing.T) {
	h := newHarness(t)
	h.recordSession("s1", "shop", true)
	b := h.browser()
	b.logIn(approverEmail)
	if r := b.get(h.URL + "/sessions/s1"); !strings.Contains(r.body, "Audit chain verified") {
		t.Fatalf("control: the intact chain replays:\n%s", r.body)
	}
	if err := h.log.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(h.auditDir, "c.log")
	files, _ := filepath.Glob(filepath.Join(h.auditDir, "*"))
	for _, f := range files {
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte("DROP TABLE orders")) {
			path = f
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(bytes.Replace(raw, []byte("DROP TABLE orders"), []byte("DROP TABLE ordes"), 1)))
	r := b.get(h.URL + "/sessions/s1")
	if !strings.Contains(r.body, "does not verify") || strings.Contains(r.body, "SELECT id, email") {
		t.Fatalf("a tampered chain is replayed:\n%s", r.body)
	}
}

func TestTheQueueGrantsOnlyOnce(t *testing.T) {
	h := newHarness(t)
	done := h.hold(heldDDL("r1"))
	b := h.browser()
	page := b.logIn(approverEmail)
	action, fields := formOf(t, page.body, "/approvals/r1")
	fields.Set("decision", "approve")
	fields.Set("scope", "session")
	fields.Set("minutes", "30")
	if r := b.post(h.URL+action, fields, h.URL); r.status != http.StatusConflict || !strings.Contains(r.body, `scope &#34;once&#34;`) {
		t.Fatalf("a session scope from the queue: %d %s", r.status, r.body)
	}
	fields.Set("scope", "once")
	if r := b.post(h.URL+action, fields, h.URL); r.status != http.StatusSeeOther {
		t.Fatalf("once: %d %s", r.status, r.body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := b.post(h.URL+action, fields, h.URL); r.status != http.StatusNotFound {
		t.Fatalf("deciding a resolved request again: %d", r.status)
	}
}

// Only people whom console:view lets see a target's sessions see and decide its requests: an engineer
// outside the dba group neither sees the shop's held DDL nor resolves it by posting the form.
func TestRequestsAreShownAndDecidedOnlyWithConsoleView(t *testing.T) {
	h := newHarness(t)
	done := h.hold(heldDDL("r1"))
	alice, approver := h.browser(), h.browser()
	page := alice.logIn(aliceEmail)
	if strings.Contains(page.body, "ALTER TABLE") || !strings.Contains(page.body, "Nothing is waiting") {
		t.Fatalf("alice sees the shop's request:\n%s", page.body)
	}
	_, af := formOf(t, page.body, "/logout")
	r := alice.post(h.URL+"/approvals/r1", url.Values{"csrf": {af.Get("csrf")}, "decision": {"approve"}, "scope": {"once"}}, h.URL)
	if r.status != http.StatusNotFound || len(h.queue.Pending()) != 1 {
		t.Fatalf("alice's approval: %d, %d pending", r.status, len(h.queue.Pending()))
	}
	page = approver.logIn(approverEmail)
	action, f := formOf(t, page.body, "/approvals/r1")
	f.Set("decision", "approve")
	f.Set("scope", "once")
	if r := approver.post(h.URL+action, f, h.URL); r.status != http.StatusSeeOther {
		t.Fatalf("the dba's approval: %d %s", r.status, r.body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Denying with a reason refuses the held operation: its wait ends denied, by the approver.
func TestDenyRefusesTheHeldOperation(t *testing.T) {
	h := newHarness(t)
	outcome := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := h.queue.Wait(ctx, heldDDL("r1"))
		outcome <- fmt.Sprintf("%s by %s (%v)", st.State, st.Approver, err)
	}()
	for deadline := time.Now().Add(10 * time.Second); len(h.queue.Pending()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never pending")
		}
	}
	b := h.browser()
	page := b.logIn(approverEmail)
	action, f := formOf(t, page.body, "/approvals/r1")
	f.Set("decision", "deny")
	f.Set("scope", "once")
	f.Set("reason", "not during the sale")
	r := b.post(h.URL+action, f, h.URL)
	if r.status != http.StatusSeeOther || r.location != h.URL+"/approvals?done=denied" {
		t.Fatalf("deny: %d %q", r.status, r.location)
	}
	if o := <-outcome; o != "denied by "+approverEmail+" (<nil>)" {
		t.Fatalf("the held operation: %s", o)
	}
	if page := b.get(h.URL + r.location[len(h.URL):]); !strings.Contains(page.body, "Denied: the held operation is refused.") {
		t.Fatalf("the page after denying:\n%s", page.body)
	}
}

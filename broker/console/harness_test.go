package console

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

const (
	approverEmail = "approver@example.com"
	aliceEmail    = "alice@example.com"
	clientID      = "svidbroker-console"
	otherClientID = "other-app"
)

// clock is the console's clock, which tests move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// harness is a console on a TLS loopback listener, logging in at a real provider, over a real
// approval queue and a real audit log.
type harness struct {
	t         *testing.T
	provider  *oidcprovider.Local
	passwords map[string]string
	console   *Console
	srv       *httptest.Server
	URL       string
	queue     *approval.Queue
	log       *audit.Log
	read      audit.Reader
	auditDir  string
	verify    func(context.Context) (*audit.Report, error)
	clock     *clock
	roots     *x509.CertPool
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

const viewPolicies = `
permit (principal in Group::"dba", action == Action::"console:view", resource == Target::"shop");
`

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, queue: approval.NewQueue(), clock: &clock{}, passwords: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.URL = "https://" + ln.Addr().String()
	caPEM, cert, err := oidcprovider.LoopbackCert()
	if err != nil {
		t.Fatal(err)
	}
	var handler atomic.Pointer[Console]
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.Load().ServeHTTP(w, r)
	}))
	h.srv.Listener = ln
	h.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	users := []oidcprovider.User{
		{Username: approverEmail, Password: randomHex(), Email: approverEmail, EmailVerified: true, Name: "Ada Approver", Groups: []string{"dba", "security"}},
		{Username: aliceEmail, Password: randomHex(), Email: aliceEmail, EmailVerified: true, Name: "Alice Engineer", Groups: []string{"engineering"}},
	}
	for _, u := range users {
		h.passwords[u.Username] = u.Password
	}
	secret := randomHex()
	pcfg := &oidcprovider.Config{Users: users, IDTokenLifetime: "5m", Clients: []oidcprovider.Client{
		{ID: clientID, Secret: secret, Type: "web", RedirectURIs: []string{h.URL + CallbackPath}},
		{ID: otherClientID, Secret: randomHex(), Type: "web", RedirectURIs: []string{h.URL + CallbackPath}},
	}}
	if err := pcfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h.provider, err = oidcprovider.StartLocal(pcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.provider.Close() })
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	secretFile := filepath.Join(dir, "secret")
	writeFile(t, caFile, string(h.provider.CAPEM))
	writeFile(t, secretFile, secret)

	h.newAuditLog()
	view, err := NewView("view.cedar", []byte(viewPolicies))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(context.Background(), Config{
		PublicURL: h.URL,
		OIDC:      oidc.Config{IssuerURL: h.provider.Issuer(), ClientID: clientID, ClientSecretFile: secretFile, CAFile: caFile},
		Approvals: QueueApprovals{Queue: h.queue},
		Audit:     h.read, Verify: h.verify,
		View: view,
		Now:  h.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.console = c
	handler.Store(c)
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	h.roots = x509.NewCertPool()
	h.roots.AppendCertsFromPEM(caPEM)
	h.roots.AppendCertsFromPEM(h.provider.CAPEM)
	return h
}

// browser is a cookie-keeping client that trusts the console's and the provider's CAs and follows
// no redirect by itself.
type browser struct {
	h      *harness
	client *http.Client
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{h: h, client: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.roots, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type response struct {
	status   int
	body     string
	location string
	header   http.Header
	url      *url.URL
}

func (b *browser) do(req *http.Request) response {
	b.h.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := response{status: resp.StatusCode, body: string(body), header: resp.Header, url: req.URL}
	if loc, err := resp.Location(); err == nil {
		r.location = loc.String()
	}
	return r
}

func (b *browser) get(u string) response {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

// follow GETs u and follows redirects, at most 10.
func (b *browser) follow(u string) response {
	r := b.get(u)
	for i := 0; i < 10 && r.location != ""; i++ {
		r = b.get(r.location)
	}
	return r
}

func (b *browser) post(u string, form url.Values, origin string) response {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.do(req)
}

// startLogin opens the console's login and returns the provider's login page.
func (b *browser) startLogin() response {
	b.h.t.Helper()
	r := b.get(b.h.URL + "/login")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, b.h.provider.Issuer()) {
		b.h.t.Fatalf("/login answered %d to %q, not a redirect to the provider", r.status, r.location)
	}
	return b.follow(r.location)
}

// signIn posts the provider's login form and returns the redirect to the console's callback.
func (b *browser) signIn(loginPage response, user string) string {
	b.h.t.Helper()
	action, fields := formOf(b.h.t, loginPage.body, "")
	fields.Set("username", user)
	fields.Set("password", b.h.passwords[user])
	target, _ := loginPage.url.Parse(action)
	r := b.post(target.String(), fields, "")
	for i := 0; i < 10 && r.location != "" && !strings.HasPrefix(r.location, b.h.URL); i++ {
		r = b.get(r.location)
	}
	if !strings.HasPrefix(r.location, b.h.URL+CallbackPath) {
		b.h.t.Fatalf("signing in as %s did not return to the console: %d %q", user, r.status, r.location)
	}
	return r.location
}

// logIn logs user in and returns the approvals page.
func (b *browser) logIn(user string) response {
	b.h.t.Helper()
	r := b.get(b.signIn(b.startLogin(), user))
	if r.status != http.StatusSeeOther || r.location != b.h.URL+"/approvals" {
		b.h.t.Fatalf("the callback answered %d to %q: %s", r.status, r.location, r.body)
	}
	return b.get(r.location)
}

// formOf returns the action and the fields of the first form whose action contains want.
func formOf(t *testing.T, page, want string) (string, url.Values) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var action string
	var fields url.Values
	var walk func(n *html.Node, in bool)
	walk = func(n *html.Node, in bool) {
		if n.Type == html.ElementNode && n.Data == "form" && fields == nil && strings.Contains(attr(n, "action"), want) {
			action, fields, in = attr(n, "action"), url.Values{}, true
			defer func() { in = false }()
		}
		if in && n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") != "" {
			fields.Set(attr(n, "name"), attr(n, "value"))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, in)
		}
	}
	walk(doc, false)
	if fields == nil {
		t.Fatalf("no form with action containing %q in:\n%s", want, page)
	}
	return action, fields
}

func attr(n *html.Node, k string) string {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val
		}
	}
	return ""
}

// hold files a request on the queue as a held operation would, and returns its outcome's channel.
func (h *harness) hold(req approval.Request) <-chan error {
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	go func() {
		defer cancel()
		st, err := h.queue.Wait(ctx, req)
		if err == nil && (st.State != "approved" || st.Approver != approverEmail) {
			err = fmt.Errorf("outcome %+v", st)
		}
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.queue.Pending()) == 0 {
		if time.Now().After(deadline) {
			h.t.Fatal("the request never became pending")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return done
}

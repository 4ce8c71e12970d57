package oidcprovider

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const redirect = "https://console.broker.test/callback"

func testConfig() *Config {
	return &Config{
		Users:   []User{{Username: "approver@example.com", Password: "pw", Email: "approver@example.com", EmailVerified: true, Groups: []string{"dba"}}},
		Clients: []Client{{ID: "console", Secret: "s", Type: "web", RedirectURIs: []string{redirect}}, {ID: "cli", Type: "native"}},
	}
}

func start(t *testing.T) *Local {
	t.Helper()
	l, err := StartLocal(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// authURL is an authorization request of client "console" with the given extra parameters.
func authURL(l *Local, extra url.Values) string {
	q := url.Values{"client_id": {"console"}, "response_type": {"code"}, "scope": {"openid email groups"},
		"redirect_uri": {redirect}, "state": {"st"}, "nonce": {"n"}}
	for k, v := range extra {
		q[k] = v
	}
	return l.Issuer() + "/authorize?" + q.Encode()
}

// A challenge for verifier "x" is irrelevant here: the request must carry one, with S256.
const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

func TestAuthorizationRequiresS256PKCE(t *testing.T) {
	l := start(t)
	for _, tc := range []struct {
		name  string
		extra url.Values
		want  string // the error redirected to the client, or "" for the login page
	}{
		{"no challenge", nil, "invalid_request"},
		{"plain challenge", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"plain"}}, "invalid_request"},
		{"challenge without a method", url.Values{"code_challenge": {challenge}}, "invalid_request"},
		{"S256", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBrowser(l.Client(), redirect)
			p, err := b.Get(t.Context(), authURL(l, tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if p.Status != http.StatusOK || p.URL.Path != loginPath || !strings.Contains(p.Body, `name="password"`) {
					t.Fatalf("want the login page, got %d at %s", p.Status, p.URL)
				}
				return
			}
			if p.Location == nil || p.Location.Query().Get("error") != tc.want {
				t.Fatalf("want a redirect with error=%s, got %d %v", tc.want, p.Status, p.Location)
			}
		})
	}
}

func TestLoginFormRefusesCrossSitePosts(t *testing.T) {
	l := start(t)
	b := NewBrowser(l.Client(), redirect)
	page, err := b.Get(t.Context(), authURL(l, url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}))
	if err != nil || page.Status != http.StatusOK {
		t.Fatalf("login page: %v %+v", err, page)
	}
	// Another site's form: the right request ID, CSRF field and credentials, but not this browser's
	// cookie.
	other := NewBrowser(l.Client(), redirect)
	p, err := other.Submit(t.Context(), page, url.Values{"username": {"approver@example.com"}, "password": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != http.StatusForbidden || p.Location != nil {
		t.Fatalf("a post without the browser's CSRF cookie: %d %v", p.Status, p.Location)
	}
	// The browser's own token for another request does not fit this one either.
	p, err = b.Submit(t.Context(), page, url.Values{"username": {"approver@example.com"}, "password": {"pw"}, "csrf": {"AAAA"}})
	if err != nil || p.Status != http.StatusForbidden {
		t.Fatalf("a wrong CSRF token: %v %d", err, p.Status)
	}
	// Control: the browser that loaded the page signs in.
	p, err = b.Submit(t.Context(), page, url.Values{"username": {"approver@example.com"}, "password": {"pw"}})
	if err != nil || p.Location == nil || p.Location.Query().Get("code") == "" {
		t.Fatalf("the legitimate post: %v %+v", err, p)
	}
}

func TestLoginPageNeedsALiveRequest(t *testing.T) {
	l := start(t)
	b := NewBrowser(l.Client(), redirect)
	p, err := b.Get(t.Context(), l.Issuer()+loginPath+"?"+authRequestParam+"=made-up")
	if err != nil || p.Status != http.StatusBadRequest {
		t.Fatalf("%v %+v", err, p)
	}
}

func TestDevicePageRefusesUnknownCodesAndWrongPasswords(t *testing.T) {
	l := start(t)
	b := NewBrowser(l.Client(), "")
	p, err := b.ResolveDevice(t.Context(), l.Issuer()+devicePath+"?user_code=BCDF-GHJK", "approver@example.com", "pw", true)
	if err == nil || p.Status != http.StatusUnauthorized || !strings.Contains(p.Body, "unknown, expired or already used") {
		t.Fatalf("an unknown user code: %v %+v", err, p)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		err   string
	}{
		{"valid", func(*Config) {}, ""},
		{"no users", func(c *Config) { c.Users = nil }, "no users"},
		{"user without password", func(c *Config) { c.Users[0].Password = "" }, "users[0]"},
		{"duplicate user", func(c *Config) { c.Users = append(c.Users, c.Users[0]) }, "used twice"},
		{"web client without secret", func(c *Config) { c.Clients[0].Secret = "" }, "needs a secret"},
		{"web client without redirect", func(c *Config) { c.Clients[0].RedirectURIs = nil }, "needs redirect_uris"},
		{"http redirect", func(c *Config) { c.Clients[0].RedirectURIs = []string{"http://x/cb"} }, "must be an absolute https URL"},
		{"native client with secret", func(c *Config) { c.Clients[1].Secret = "s" }, "public"},
		{"unknown type", func(c *Config) { c.Clients[1].Type = "spa" }, `"web" or "native"`},
		{"bad lifetime", func(c *Config) { c.IDTokenLifetime = "soon" }, "id_token_lifetime"},
		{"fractional poll", func(c *Config) { c.DevicePollInterval = "1500ms" }, "whole seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.tweak(c)
			err := c.Validate()
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestLoadConfigRefusesUnknownFields(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(p, []byte(`{"users":[{"username":"a","password":"b","emial":"a@x"}],"clients":[{"id":"cli","type":"native"}]}`), 0o600)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "emial") {
		t.Fatalf("err = %v, want the unknown field named", err)
	}
	os.WriteFile(p, []byte(`{"users":[{"username":"a","password":"b","email":"a@x"}],"clients":[{"id":"cli","type":"native"}]}`), 0o600)
	if c, err := LoadConfig(p); err != nil || c.Users[0].Subject != "a" {
		t.Fatalf("control: %+v, %v", c, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"users":[{"username":"a","password":"b","email":"a@x","groups":["g"]}],"clients":[{"id":"cli","type":"native"}]}`))
	f.Add([]byte(`{"users":[{"username":"a","password":"b"}],"clients":[{"id":"w","type":"web","secret":"s","redirect_uris":["https://x/cb"]}],"id_token_lifetime":"1s"}`))
	f.Add([]byte(`{"users":[],"clients":[]}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		// Whatever is accepted can be served.
		if len(c.Users) == 0 || len(c.Clients) == 0 || c.idTokenLifetime <= 0 || c.pollInterval <= 0 {
			t.Fatalf("accepted an unusable configuration: %+v", c)
		}
		for _, u := range c.Users {
			if u.Subject == "" || u.Password == "" {
				t.Fatalf("accepted user %+v", u)
			}
		}
		for _, cl := range c.Clients {
			if cl.Type == "web" && (cl.Secret == "" || len(cl.RedirectURIs) == 0) {
				t.Fatalf("accepted web client %+v", cl)
			}
		}
	})
}

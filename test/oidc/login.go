package oidcprovider

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
)

const (
	loginPath        = "/login"
	devicePath       = "/device"
	authRequestParam = "authRequestID"
	csrfCookie       = "oidcprovider_csrf"
	// maxFormBytes bounds a posted login form.
	maxFormBytes = 16 << 10
)

// pages serves the login page of the authorization-code flow and the page where a person approves
// a device code. Both are HTML forms protected against cross-site posts by a double-submit token:
// a random HttpOnly, SameSite=Strict cookie, and a form field holding an HMAC of that cookie and of
// what the form is for (the authorization request or the user code), under a key made at start.
type pages struct {
	st       *storage
	key      []byte
	callback func(ctx context.Context, authRequestID string) string
	log      *slog.Logger
}

func newPages(st *storage, callback func(context.Context, string) string, log *slog.Logger) *pages {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &pages{st: st, key: key, callback: callback, log: log}
}

// csrfToken binds a form to the browser's cookie and to the request it is for.
func (p *pages) csrfToken(cookie, purpose string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(cookie))
	m.Write([]byte{0})
	m.Write([]byte(purpose))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfCookieValue returns the browser's CSRF cookie, setting a new one if it has none.
func (p *pages) csrfCookieValue(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		return c.Value
	}
	v := randomID()
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

// checkCSRF verifies a posted form's token against the cookie it came with.
func (p *pages) checkCSRF(r *http.Request, purpose string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	want := p.csrfToken(c.Value, purpose)
	return hmac.Equal([]byte(want), []byte(r.PostFormValue("csrf")))
}

func (p *pages) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read", http.StatusBadRequest)
		return false
	}
	return true
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Frame-Options", "DENY")
	// No form-action: browsers apply it to the redirects after a post too, and the login's redirect
	// chain ends at the relying party's origin.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
}

type loginData struct {
	ID, CSRF, Username, Error string
}

// loginForm (GET /login?authRequestID=…) shows the form.
func (p *pages) loginForm(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get(authRequestParam)
	if _, err := p.st.AuthRequestByID(r.Context(), id); err != nil {
		http.Error(w, "this login request is unknown or expired; start again from the application", http.StatusBadRequest)
		return
	}
	noStore(w)
	p.render(w, "login", loginData{ID: id, CSRF: p.csrfToken(p.csrfCookieValue(w, r), "login:"+id)})
}

// login (POST /login) checks the password and, if right, returns the browser to the OP, which
// issues the code.
func (p *pages) login(w http.ResponseWriter, r *http.Request) {
	if !p.parseForm(w, r) {
		return
	}
	id := r.PostFormValue(authRequestParam)
	if !p.checkCSRF(r, "login:"+id) {
		http.Error(w, "the form's CSRF token does not match this browser: reload the login page", http.StatusForbidden)
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	u, err := p.st.checkPassword(username, r.PostFormValue("password"))
	if err == nil {
		err = p.st.login(id, u)
	}
	if err != nil {
		p.log.InfoContext(r.Context(), "login refused", "username", username, "reason", err)
		noStore(w)
		w.WriteHeader(http.StatusUnauthorized)
		p.render(w, "login", loginData{ID: id, CSRF: r.PostFormValue("csrf"), Username: username, Error: err.Error()})
		return
	}
	p.log.InfoContext(r.Context(), "login", "username", username)
	http.Redirect(w, r, p.callback(r.Context(), id), http.StatusFound)
}

type deviceData struct {
	UserCode, CSRF, Client, Scopes, Username, Error, Done string
}

// deviceForm (GET /device?user_code=…) asks for the code shown on the device (unless the link
// carried it) and the person's login, and shows what the device asks for.
func (p *pages) deviceForm(w http.ResponseWriter, r *http.Request) {
	code := strings.ToUpper(strings.TrimSpace(r.URL.Query().Get("user_code")))
	d := deviceData{UserCode: code, CSRF: p.csrfToken(p.csrfCookieValue(w, r), "device")}
	if code != "" {
		st, err := p.st.pendingDevice(code)
		if err != nil {
			d.Error = err.Error()
		} else {
			d.Client, d.Scopes = st.ClientID, scopesString(st.Scopes)
		}
	}
	noStore(w)
	p.render(w, "device", d)
}

// device (POST /device) checks the login and allows or denies the device code.
func (p *pages) device(w http.ResponseWriter, r *http.Request) {
	if !p.parseForm(w, r) {
		return
	}
	if !p.checkCSRF(r, "device") {
		http.Error(w, "the form's CSRF token does not match this browser: reload the page", http.StatusForbidden)
		return
	}
	code := strings.ToUpper(strings.TrimSpace(r.PostFormValue("user_code")))
	username := strings.TrimSpace(r.PostFormValue("username"))
	allow := r.PostFormValue("action") == "allow"
	d := deviceData{UserCode: code, CSRF: r.PostFormValue("csrf"), Username: username}
	u, err := p.st.checkPassword(username, r.PostFormValue("password"))
	if err == nil {
		err = p.st.resolveDevice(code, u, allow)
	}
	noStore(w)
	if err != nil {
		p.log.InfoContext(r.Context(), "device login refused", "username", username, "reason", err)
		d.Error = err.Error()
		w.WriteHeader(http.StatusUnauthorized)
		p.render(w, "device", d)
		return
	}
	p.log.InfoContext(r.Context(), "device code resolved", "username", username, "allowed", allow)
	d.Done = "denied"
	if allow {
		d.Done = "allowed"
	}
	p.render(w, "device", d)
}

func (p *pages) render(w http.ResponseWriter, name string, data any) {
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		p.log.Error("render page", "page", name, "error", err)
	}
}

var templates = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in — svidbroker test identity provider</title>
<style>
body{font-family:system-ui,sans-serif;max-width:26rem;margin:2rem auto;padding:0 1rem;line-height:1.4}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem}.error{color:#a00;font-weight:bold}
.note{color:#555;font-size:.85rem}
</style></head><body>
<p class="note">svidbroker's test identity provider: for tests and the local demo only.</p>{{end}}

{{define "login"}}{{template "head"}}
<h1>Sign in</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="authRequestID" value="{{.ID}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" value="{{.Username}}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></body></html>{{end}}

{{define "device"}}{{template "head"}}
<h1>Sign in on a device</h1>
{{if .Done}}<p role="status">Device access {{.Done}}. You can return to the device.</p>
{{else}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Client}}<p><strong>{{.Client}}</strong> asks for: {{.Scopes}}</p>{{end}}
<form method="post" action="/device">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="user_code">Code shown on the device</label><input id="user_code" name="user_code" value="{{.UserCode}}" required autocomplete="off">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" value="{{.Username}}" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>{{end}}</body></html>{{end}}
`))

package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
)

// Cookie names. The __Host- prefix makes the browser refuse them unless Secure, with Path=/ and no
// Domain, so no other host (a sibling subdomain included) can set or overwrite them.
const (
	sessionCookie = "__Host-svidbroker-console"
	loginCookie   = "__Host-svidbroker-login"
)

const (
	// loginTTL bounds how long a login may take at the provider.
	loginTTL = 10 * time.Minute
	// maxSessions bounds the sessions held.
	maxSessions = 10000
)

// session is one logged-in person.
type session struct {
	person  oidc.Person
	csrf    string
	expires time.Time
}

// sessions holds console sessions, keyed by the SHA-256 of their cookie values, so a memory dump
// does not hand out usable cookies.
type sessions struct {
	mu    sync.Mutex
	now   func() time.Time
	byKey map[[32]byte]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, byKey: map[[32]byte]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func key(v string) [32]byte { return sha256.Sum256([]byte(v)) }

// sweep drops the sessions that expired. s.mu is held.
func (s *sessions) sweep() {
	now := s.now()
	for k, x := range s.byKey {
		if !now.Before(x.expires) {
			delete(s.byKey, k)
		}
	}
}

// create starts a session for p that ends at ttl or at the ID token's expiry, whichever is first.
func (s *sessions) create(p oidc.Person, ttl time.Duration) (string, *session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byKey) >= maxSessions {
		s.sweep()
		if len(s.byKey) >= maxSessions {
			return "", nil, errors.New("console: too many sessions; try again later")
		}
	}
	exp := s.now().Add(ttl)
	if !p.Expiry.IsZero() && p.Expiry.Before(exp) {
		exp = p.Expiry
	}
	v := randomToken()
	x := &session{person: p, csrf: randomToken(), expires: exp}
	s.byKey[key(v)] = x
	return v, x, nil
}

// get returns the live session named by the request's cookie.
func (s *sessions) get(r *http.Request) (*session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(c.Value)
	x, ok := s.byKey[k]
	if ok && !s.now().Before(x.expires) {
		delete(s.byKey, k)
		return nil, false
	}
	return x, ok
}

// end forgets the request's session.
func (s *sessions) end(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.byKey, key(c.Value))
		s.mu.Unlock()
	}
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// checkPost refuses a POST without the session's CSRF token, or from another origin.
func (c *Console) checkPost(r *http.Request, x *session) bool {
	if o := r.Header.Get("Origin"); o != "" && o != c.origin {
		return false
	}
	if sf := r.Header.Get("Sec-Fetch-Site"); sf != "" && sf != "same-origin" && sf != "none" {
		return false
	}
	t := r.PostFormValue("csrf")
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(x.csrf)) == 1
}

// origin is the scheme://host of a URL.
func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

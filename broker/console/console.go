package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// DefaultSessionTTL is how long a console session lasts at most; the ID token's expiry may end it
// sooner.
const DefaultSessionTTL = time.Hour

// maxFormBytes bounds a posted form.
const maxFormBytes = 16 << 10

// CallbackPath is the console's OIDC redirect path, below its public URL.
const CallbackPath = "/oidc/callback"

// Config configures a console.
type Config struct {
	// PublicURL is the console's https URL as browsers reach it; the OIDC callback is
	// PublicURL + CallbackPath, and POSTs must come from its origin.
	PublicURL string
	// OIDC configures the login; its RedirectURL is set from PublicURL.
	OIDC oidc.Config
	// SessionTTL bounds a console session. Default DefaultSessionTTL.
	SessionTTL time.Duration
	// Approvals is the approval store. Nil: the approvals page says approvals are not configured.
	Approvals Approvals
	// Audit reads the audit chain, and Verify verifies it; replay needs both. Nil: no sessions.
	Audit  audit.Reader
	Verify func(context.Context) (*audit.Report, error)
	// Authorizer answers "what may this agent do" and shows the policies behind a decision. Nil: those
	// pages say policy is not configured.
	Authorizer *authz.Authorizer
	// View decides who sees which sessions. Nil: nobody sees any.
	View *View
	// Logger receives logins, logouts and decisions. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate fills in defaults and rejects what cannot work.
func (c *Config) Validate() error {
	u, err := url.Parse(c.PublicURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return fmt.Errorf("console: public_url %q must be the console's https URL (scheme and host, no path, query or fragment)", c.PublicURL)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	c.OIDC.RedirectURL = c.PublicURL + CallbackPath
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.OIDC.Now == nil {
		c.OIDC.Now = c.Now
	}
	if (c.Audit == nil) != (c.Verify == nil) {
		return errors.New("console: the audit reader and verifier go together")
	}
	return nil
}

// Console is the web console's handler.
type Console struct {
	cfg      Config
	origin   string
	base     string // the public URL's path, "" at the root
	verifier *oidc.Verifier
	sessions *sessions
	logins   *loginSealer
	mux      *http.ServeMux
}

// New validates cfg and reads the provider's discovery document.
func New(ctx context.Context, cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v, err := oidc.New(ctx, cfg.OIDC)
	if err != nil {
		return nil, err
	}
	logins, err := newLoginSealer()
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	u, _ := url.Parse(cfg.PublicURL)
	c := &Console{logins: logins, cfg: cfg, origin: origin(u), base: strings.TrimRight(u.Path, "/"), verifier: v,
		sessions: newSessions(cfg.Now), mux: http.NewServeMux()}
	c.routes()
	return c, nil
}

// ServeHTTP serves the console, with headers that keep its pages out of frames and caches and allow
// no script.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on the console's
	// own form posts, which checkPost refuses.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	c.mux.HandleFunc("GET /login", c.login)
	c.mux.HandleFunc("GET "+CallbackPath, c.callback)
	c.mux.HandleFunc("POST /logout", c.authed(c.logout))
	c.mux.HandleFunc("GET /style.css", c.style)
	c.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, c.base+"/approvals", http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET /approvals", c.authed(c.approvals))
	c.mux.HandleFunc("POST /approvals/{id}", c.authed(c.decide))
	c.mux.HandleFunc("GET /sessions", c.authed(c.sessionsPage))
	c.mux.HandleFunc("GET /sessions/{id}", c.authed(c.replay))
	c.mux.HandleFunc("GET /can", c.authed(c.can))
	c.mux.HandleFunc("GET /why", c.authed(c.why))
}

// authed passes the request's live session to h; without one, a GET goes to the login and anything
// else is refused.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		x, ok := c.sessions.get(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, c.base+"/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "console: not logged in, or the session expired: log in again", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				http.Error(w, "console: the form is unreadable or too large", http.StatusBadRequest)
				return
			}
			if !c.checkPost(r, x) {
				c.cfg.Logger.WarnContext(r.Context(), "console: POST refused: CSRF token or origin wrong", "email", x.person.Email, "path", r.URL.Path)
				http.Error(w, "console: the form's CSRF token or origin does not match this session: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, x)
	}
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	l, err := c.verifier.StartLogin()
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	setCookie(w, loginCookie, c.logins.seal(l, c.cfg.Now().Add(loginTTL)), int(loginTTL/time.Second))
	http.Redirect(w, r, l.URL, http.StatusSeeOther)
}

func (c *Console) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ck, err := r.Cookie(loginCookie)
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, errors.New("console: this browser started no login (or its cookie expired): log in again"))
		return
	}
	setCookie(w, loginCookie, "", -1)
	l, ok := c.logins.open(ck.Value, c.cfg.Now())
	if !ok {
		c.fail(w, r, http.StatusBadRequest, errors.New("console: this login is unknown or expired: log in again"))
		return
	}
	if err := oidc.CallbackError(q); err != nil {
		c.fail(w, r, http.StatusUnauthorized, err)
		return
	}
	p, err := c.verifier.Exchange(r.Context(), l, q.Get("state"), q.Get("code"))
	if err == nil && !p.Expiry.IsZero() && !c.cfg.Now().Before(p.Expiry) {
		err = fmt.Errorf("%w: the ID token expired at %s", oidc.ErrToken, p.Expiry.UTC().Format(time.RFC3339))
	}
	if err != nil {
		c.cfg.Logger.WarnContext(r.Context(), "console: login refused", "reason", err)
		c.fail(w, r, http.StatusUnauthorized, err)
		return
	}
	v, x, err := c.sessions.create(p, c.cfg.SessionTTL)
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	c.cfg.Logger.InfoContext(r.Context(), "console: login", "email", p.Email, "issuer", p.Issuer, "expires", x.expires)
	setCookie(w, sessionCookie, v, int(x.expires.Sub(c.cfg.Now())/time.Second)+1)
	http.Redirect(w, r, c.base+"/approvals", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, x *session) {
	c.sessions.end(r)
	setCookie(w, sessionCookie, "", -1)
	c.cfg.Logger.InfoContext(r.Context(), "console: logout", "email", x.person.Email)
	c.render(w, http.StatusOK, "loggedout", page{Title: "Logged out", Base: c.base})
}

// fail shows an error page. err's text is for the person: the oidc package's errors quote no token.
func (c *Console) fail(w http.ResponseWriter, _ *http.Request, status int, err error) {
	c.render(w, status, "error", page{Title: "Error", Base: c.base, Error: err.Error()})
}

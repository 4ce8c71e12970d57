package forwarder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// tokens hands out the bearer for JWT mode: a JWT-SVID for one audience, fetched from the source and
// kept until half its lifetime has passed, so that a request never leaves with a token about to
// expire, and the Workload API is asked about twice per token lifetime rather than once per request.
type tokens struct {
	src      jwtsvid.Source
	audience string
	timeout  time.Duration
	now      func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

func newTokens(src jwtsvid.Source, audience string, timeout time.Duration) *tokens {
	return &tokens{src: src, audience: audience, timeout: timeout, now: time.Now}
}

// get returns the current token, fetching a new one when the cached one is past half its lifetime.
// Concurrent callers wait for one fetch. Errors never contain the token.
func (t *tokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.token != "" && now.Before(t.renewAt) {
		return t.token, nil
	}
	t.token = ""
	fctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	svid, err := t.src.FetchJWTSVID(fctx, jwtsvid.Params{Audience: t.audience})
	if err != nil {
		if errors.Is(fctx.Err(), context.DeadlineExceeded) {
			return "", fmt.Errorf("no JWT-SVID for audience %q from the Workload API within %s; is the SPIRE agent running?", t.audience, t.timeout)
		}
		return "", fmt.Errorf("no JWT-SVID for audience %q from the Workload API: %w", t.audience, err)
	}
	if err := checkJWTSVID(svid, t.audience, now); err != nil {
		return "", err
	}
	t.token = svid.Marshal()
	t.renewAt = now.Add(svid.Expiry.Sub(now) / 2)
	return t.token, nil
}

// checkJWTSVID refuses a JWT-SVID the broker would refuse anyway, with the reason said here rather
// than as a bare 401: expired, not for exactly our audience, or not a bearer token's characters.
func checkJWTSVID(svid *jwtsvid.SVID, audience string, now time.Time) error {
	if svid == nil {
		return errors.New("the Workload API returned no JWT-SVID")
	}
	if !svid.Expiry.After(now) {
		return fmt.Errorf("the JWT-SVID for %s expired at %s: is the SPIRE agent's clock right?", svid.ID, svid.Expiry.UTC().Format(time.RFC3339))
	}
	if len(svid.Audience) != 1 || !slices.Contains(svid.Audience, audience) {
		return fmt.Errorf("the JWT-SVID for %s has audience %q, want exactly %q", svid.ID, svid.Audience, audience)
	}
	if !isToken68(svid.Marshal()) {
		return fmt.Errorf("the JWT-SVID for %s is not a compact JWT (a bearer header cannot carry it)", svid.ID)
	}
	return nil
}

// isToken68 reports whether s is an RFC 7235 token68, the syntax of a Bearer credential: a compact
// JWT always is, and nothing else may reach the Authorization line.
func isToken68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// Package apitoken checks the bearer tokens of the demo's upstream services (examples/shopapi and
// examples/mcpshop) against their token table in database "shop", api.tokens, which the test Vault's
// API-token engine fills (test/vault/apitoken.go): a token is valid while the SHA-256 of its text is
// in the table and has not expired. Both services check every request, so a token Vault revoked (its
// row deleted) or let expire stops working at once.
package apitoken

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// MaxTokenBytes bounds a bearer token's length.
const MaxTokenBytes = 512

// lookupTimeout bounds one token lookup.
const lookupTimeout = 5 * time.Second

// Outcomes of Check, for errors.Is.
var (
	// ErrMalformed: no usable Authorization: Bearer header.
	ErrMalformed = errors.New("apitoken: malformed")
	// ErrInvalid: the token is unknown, expired or revoked.
	ErrInvalid = errors.New("apitoken: the token is unknown, expired or revoked")
	// ErrUnavailable: the token table could not be read; nothing is granted.
	ErrUnavailable = errors.New("apitoken: the token store is unavailable; try again")
)

// Querier reads one row: a *pgxpool.Pool or a *pgx.Conn.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Bearer returns the token of the request's single Authorization header of scheme Bearer. Its
// errors wrap ErrMalformed and say what to send instead; they never quote the header.
func Bearer(h http.Header) (string, error) {
	vals := h.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", fmt.Errorf("%w: no Authorization header: send Authorization: Bearer <token>", ErrMalformed)
	case len(vals) > 1:
		return "", fmt.Errorf("%w: more than one Authorization header: send exactly one", ErrMalformed)
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization header's scheme is not Bearer: send Authorization: Bearer <token>", ErrMalformed)
	}
	if tok == "" || len(tok) > MaxTokenBytes || strings.ContainsAny(tok, " \t") {
		return "", fmt.Errorf("%w: the bearer token is empty, longer than %d bytes or holds whitespace", ErrMalformed, MaxTokenBytes)
	}
	return tok, nil
}

// Check reads the request's bearer token and returns its role from api.tokens. Its errors wrap
// ErrMalformed, ErrInvalid or ErrUnavailable (the last also wraps the database's error, for the
// service's log; it never holds the token).
func Check(ctx context.Context, db Querier, h http.Header) (role string, err error) {
	tok, err := Bearer(h)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(tok))
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	var live bool
	err = db.QueryRow(ctx, `SELECT role, expires_at > now() FROM api.tokens WHERE token_sha256 = $1`, sum[:]).Scan(&role, &live)
	switch {
	case errors.Is(err, pgx.ErrNoRows), err == nil && !live:
		return "", ErrInvalid
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return role, nil
}

// Message is what a client is told about err from Check: the reason without the wrapped database
// error, which goes to the service's log only.
func Message(err error) string {
	switch {
	case errors.Is(err, ErrUnavailable):
		return strings.TrimPrefix(ErrUnavailable.Error(), "apitoken: ")
	case errors.Is(err, ErrInvalid):
		return strings.TrimPrefix(ErrInvalid.Error(), "apitoken: ")
	}
	return strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": ")
}

// Challenge sets a 401's WWW-Authenticate header for err from Check (RFC 6750's error codes).
func Challenge(h http.Header, realm string, err error) {
	code := "invalid_request"
	if errors.Is(err, ErrInvalid) {
		code = "invalid_token"
	}
	h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error=%q`, realm, code))
}

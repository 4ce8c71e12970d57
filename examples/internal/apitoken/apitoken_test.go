package apitoken

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    string // "" means refused
		errText string
	}{
		{"bearer", []string{"Bearer abc.DEF-123"}, "abc.DEF-123", ""},
		{"scheme case-insensitive", []string{"bearer tok"}, "tok", ""},
		{"none", nil, "", "no Authorization header"},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", "more than one"},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", "not Bearer"},
		{"empty token", []string{"Bearer "}, "", "empty"},
		{"space in token", []string{"Bearer a b"}, "", "whitespace"},
		{"too long", []string{"Bearer " + strings.Repeat("x", MaxTokenBytes+1)}, "", "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.headers {
				h.Add("Authorization", v)
			}
			got, err := Bearer(h)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("Bearer = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("Bearer = %q, %v; want ErrMalformed mentioning %q", got, err, tc.errText)
			}
		})
	}
}

// tokenTable answers the lookup Check makes as api.tokens would: by the token's SHA-256.
type tokenTable struct {
	rows map[[32]byte]struct {
		role string
		live bool
	}
	err error // the database is down
}

type row struct {
	vals []any
	err  error
}

func (r row) Scan(dst ...any) error {
	if r.err != nil {
		return r.err
	}
	*dst[0].(*string), *dst[1].(*bool) = r.vals[0].(string), r.vals[1].(bool)
	return nil
}

func (tt *tokenTable) QueryRow(_ context.Context, _ string, args ...any) pgx.Row {
	if tt.err != nil {
		return row{err: tt.err}
	}
	r, ok := tt.rows[[32]byte(args[0].([]byte))]
	if !ok {
		return row{err: pgx.ErrNoRows}
	}
	return row{vals: []any{r.role, r.live}}
}

func TestCheck(t *testing.T) {
	tt := &tokenTable{rows: map[[32]byte]struct {
		role string
		live bool
	}{
		sha256.Sum256([]byte("good")):    {"api-read", true},
		sha256.Sum256([]byte("expired")): {"api-write", false},
	}}
	hdr := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	if role, err := Check(t.Context(), tt, hdr("good")); err != nil || role != "api-read" {
		t.Fatalf("Check(good) = %q, %v; want api-read", role, err)
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		want error
		msg  string
	}{
		{"unknown", hdr("nope"), ErrInvalid, "the token is unknown, expired or revoked"},
		{"expired", hdr("expired"), ErrInvalid, "the token is unknown, expired or revoked"},
		{"no header", http.Header{}, ErrMalformed, "no Authorization header: send Authorization: Bearer <token>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			role, err := Check(t.Context(), tt, tc.h)
			if role != "" || !errors.Is(err, tc.want) || Message(err) != tc.msg {
				t.Fatalf("Check = %q, %v (message %q); want %v, %q", role, err, Message(err), tc.want, tc.msg)
			}
			w := http.Header{}
			Challenge(w, "shop", err)
			code := map[error]string{ErrInvalid: "invalid_token", ErrMalformed: "invalid_request"}[tc.want]
			if want := `Bearer realm="shop", error="` + code + `"`; w.Get("WWW-Authenticate") != want {
				t.Errorf("challenge %q, want %q", w.Get("WWW-Authenticate"), want)
			}
		})
	}
	t.Run("store down fails closed", func(t *testing.T) {
		down := &tokenTable{err: errors.New("connection refused")}
		role, err := Check(t.Context(), down, hdr("good"))
		if role != "" || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Check = %q, %v; want ErrUnavailable", role, err)
		}
		if m := Message(err); strings.Contains(m, "connection refused") || !strings.Contains(m, "unavailable") {
			t.Errorf("Message = %q: want the reason without the database's error", m)
		}
	})
}

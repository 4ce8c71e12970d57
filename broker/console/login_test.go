package console

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
)

func TestLoginCookieOpensOnlyAsSealedHereAndInTime(t *testing.T) {
	s, err := newLoginSealer()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newLoginSealer()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l := oidc.Login{State: "st", Nonce: "no", CodeVerifier: "ve"}
	v := s.seal(l, now.Add(time.Minute))
	if got, ok := s.open(v, now); !ok || got != l {
		t.Fatalf("control: the sealed login opens: %+v %v", got, ok)
	}
	flipped := []byte(v)
	flipped[len(flipped)/2] ^= 1
	for name, c := range map[string]struct {
		v  string
		s  *loginSealer
		at time.Time
	}{
		"expired":              {v, s, now.Add(time.Minute)},
		"another broker's key": {v, other, now},
		"a flipped byte":       {string(flipped), s, now},
		"truncated":            {v[:len(v)-4], s, now},
		"empty":                {"", s, now},
		"oversized":            {strings.Repeat("A", maxLoginCookie+1), s, now},
	} {
		if got, ok := c.s.open(c.v, c.at); ok {
			t.Errorf("%s: opened %+v", name, got)
		}
	}
}

// FuzzLoginCookie: no value but one this sealer made opens, and what it made opens to what it sealed.
func FuzzLoginCookie(f *testing.F) {
	s, err := newLoginSealer()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	f.Add("", "state", "nonce", "verifier")
	f.Add("AAAA", "", "", "")
	f.Add(s.seal(oidc.Login{State: "a"}, now.Add(time.Hour)), "a", "b", "c")
	f.Fuzz(func(t *testing.T, v, state, nonce, verifier string) {
		if got, ok := s.open(v, now); ok && got.State != "a" {
			t.Fatalf("a value not sealed here opened: %+v", got)
		}
		if !utf8.ValidString(state) || !utf8.ValidString(nonce) || !utf8.ValidString(verifier) {
			return // real logins are base64url; JSON would replace invalid bytes
		}
		l := oidc.Login{State: state, Nonce: nonce, CodeVerifier: verifier}
		sealed := s.seal(l, now.Add(time.Minute))
		if len(sealed) > maxLoginCookie {
			return // longer than any real login's; open refuses it
		}
		if got, ok := s.open(sealed, now); !ok || got != l {
			t.Fatalf("round trip: %+v %v", got, ok)
		}
	})
}

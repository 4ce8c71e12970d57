package forwarder

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestJWTSVIDIsKeptForHalfItsLifetime(t *testing.T) {
	ca := newTestCA(t, "example.org")
	src := newFakeJWTSource(t, ca.td) // tokens live an hour
	toks := newTokens(src, jwtAudience, 10*time.Second)
	start := time.Now()
	clock := start
	toks.now = func() time.Time { return clock }
	first, err := toks.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		at    time.Duration
		fresh bool
	}{{time.Minute, false}, {29 * time.Minute, false}, {31 * time.Minute, true}} {
		clock = start.Add(step.at)
		before := src.fetches.Load()
		tok, err := toks.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fetched := src.fetches.Load() > before
		if fetched != step.fresh || (tok == first) == step.fresh {
			t.Fatalf("at +%s: fetched %v, same token %v; want a new token only past half the lifetime", step.at, fetched, tok == first)
		}
	}
}

func TestJWTSVIDRefusedUnlessForExactlyTheAudience(t *testing.T) {
	ca := newTestCA(t, "example.org")
	src := newFakeJWTSource(t, ca.td)
	src.audience = "other"
	if _, err := newTokens(src, jwtAudience, 10*time.Second).get(context.Background()); err == nil || !strings.Contains(err.Error(), `want exactly "`+jwtAudience+`"`) {
		t.Fatalf("a token for another audience: %v", err)
	}
	// An expired one (the clock of the forwarder past the token's exp).
	src.audience = ""
	toks := newTokens(src, jwtAudience, 10*time.Second)
	toks.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := toks.get(context.Background()); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("an expired token: %v", err)
	}
	// The control: the same source, for the right audience and in time, is used.
	if tok, err := newTokens(src, jwtAudience, 10*time.Second).get(context.Background()); err != nil || !isToken68(tok) {
		t.Fatalf("a good token: %v", err)
	}
}

func TestToken68(t *testing.T) {
	for s, want := range map[string]bool{
		"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln": true, "abc==": true, "a+/~-._": true,
		"": false, "=abc": false, "ab=c": false, "a b": false, "a\r\nX-Injected: 1": false, "a,b": false,
	} {
		if got := isToken68(s); got != want {
			t.Errorf("isToken68(%q) = %v, want %v", s, got, want)
		}
	}
}

package identity

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAuthorizeExactNeverMatchesByPrefix(t *testing.T) {
	authorize := AuthorizeExact([]spiffeid.ID{
		spiffeid.RequireFromString("spiffe://example.org/agent/a"),
	})
	cases := []struct {
		id   string
		want bool
	}{
		{"spiffe://example.org/agent/a", true},
		{"spiffe://example.org/agent/a-evil", false},
		{"spiffe://example.org/agent/a/x", false},
		{"spiffe://example.org/agent", false},
		{"spiffe://example.org/agent/A", false},
		{"spiffe://example.org.evil/agent/a", false},
		{"spiffe://evil.org/agent/a", false},
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			err := authorize(spiffeid.RequireFromString(tc.id))
			if got := err == nil; got != tc.want {
				t.Fatalf("authorized = %v, want %v (err %v)", got, tc.want, err)
			}
			if err != nil && !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("error %v is not ErrNotAllowed", err)
			}
		})
	}
}

func TestAuthorizeExactEmptyDeniesAll(t *testing.T) {
	if err := AuthorizeExact(nil)(spiffeid.RequireFromString("spiffe://example.org/anything")); err == nil {
		t.Fatal("an empty allow list allowed a workload")
	}
}

func TestPeerSegments(t *testing.T) {
	cases := map[string][]string{
		"spiffe://example.org":             nil,
		"spiffe://example.org/agent":       {"agent"},
		"spiffe://example.org/agent/a/b.c": {"agent", "a", "b.c"},
	}
	for id, want := range cases {
		got := Peer{ID: spiffeid.RequireFromString(id)}.Segments()
		if len(got) != len(want) {
			t.Fatalf("%s: segments %q, want %q", id, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: segments %q, want %q", id, got, want)
			}
		}
	}
}

func TestPeerFromIncompleteHandshake(t *testing.T) {
	if _, err := PeerFromTLS(tls.ConnectionState{}); err == nil {
		t.Fatal("peer from an incomplete handshake")
	}
}

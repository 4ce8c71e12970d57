package e2e

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestRealJWTSVIDs verifies JWT-SVIDs issued by the real SPIRE to a persona, with the JWT bundle the
// Workload API serves.
func TestRealJWTSVIDs(t *testing.T) {
	s, _ := shared(t)
	got, err := s.FetchSVIDs(t.Context(), stack.PersonaAnalyst, "svidbroker")
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := jwtbundle.Parse(stack.TrustDomain, got.JWTBundle)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.FetchSVIDs(t.Context(), stack.PersonaAnalyst, "another-service")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, audience, issuer, token, wantErr string
	}{
		{"valid, issuer checked", "svidbroker", "https://oidc-discovery.example.org", got.JWT, ""},
		{"valid, issuer not configured", "svidbroker", "", got.JWT, ""},
		{"token for another audience", "svidbroker", "", other.JWT, "want exactly"},
		{"issuer mismatch", "svidbroker", "https://other-issuer.example.org", got.JWT, "issuer"},
		{"tampered signature", "svidbroker", "", got.JWT[:len(got.JWT)-4] + "AAAA", "unable to get claims"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := identity.NewJWTVerifier(identity.JWTConfig{Bundles: bundle, Audience: tc.audience, Issuer: tc.issuer})
			if err != nil {
				t.Fatal(err)
			}
			peer, err := v.Verify(t.Context(), tc.token)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if peer.ID.String() != "spiffe://example.org/agent/analyst" {
					t.Fatalf("peer %s", peer.ID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

package authz

import (
	"fmt"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

const permitTeam3 = `@id("team3-connects")
permit (principal in Group::"team3", action == Action::"connect", resource == Target::"shop");
`

// TestKeptWorkloadFollowsTheAttestation: the caller's entity is kept per peer, and a peer whose
// attestation was looked up again (new selectors) is decided with its new groups: attested into the
// permitted group it connects, attested out of it it does not, under the same policy set; a peer
// without an attestation is its own entity.
func TestKeptWorkloadFollowsTheAttestation(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"p.cedar": permitTeam3})
	cat := NewCatalog([]CatalogTarget{{Name: "shop", Kind: "postgres"}}, []GroupRule{{Name: "team3", Selectors: []string{"team:3"}}})
	a := NewAuthorizer(e, cat)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	in := identity.Peer{ID: id, Attestation: &identity.Attestation{Selectors: []string{"team:3"}}}
	out := identity.Peer{ID: id, Attestation: &identity.Attestation{Selectors: []string{"team:4"}}}
	bare := identity.Peer{ID: id}
	for _, tc := range []struct {
		name  string
		peer  identity.Peer
		allow bool
	}{
		{"attested in", in, true}, {"attested in, kept", in, true},
		{"attested again, out", out, false}, {"attested in again", in, true},
		{"no attestation", bare, false}, {"attested out, kept", out, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ents := a.Entities(tc.peer); !entitiesEqual(ents.Workload, cat.Workload(tc.peer)) {
				t.Fatalf("kept entity %v, built %v", ents.Workload, cat.Workload(tc.peer))
			}
			if d, _ := a.Connect(Connect{Peer: tc.peer, Target: "shop"}); d.Allow != tc.allow {
				t.Fatalf("connect allowed %v, want %v", d.Allow, tc.allow)
			}
		})
	}
}

// TestKeptWorkloadsAreBounded: past maxWorkloads callers the kept entities are let go, and those
// asked for again are built again, the same.
func TestKeptWorkloadsAreBounded(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"p.cedar": permitTeam3})
	cat := NewCatalog(nil, []GroupRule{{Name: "team3", Selectors: []string{"team:3"}}})
	a := NewAuthorizer(e, cat)
	first := identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/0"), Attestation: &identity.Attestation{Selectors: []string{"team:3"}}}
	for i := range maxWorkloads + 10 {
		p := identity.Peer{ID: spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/agent/%d", i)), Attestation: first.Attestation}
		a.Entities(p)
		if n := len(a.workloads.m); n > maxWorkloads {
			t.Fatalf("%d entities kept, at most %d", n, maxWorkloads)
		}
	}
	if ents := a.Entities(first); !entitiesEqual(ents.Workload, cat.Workload(first)) {
		t.Fatalf("entity built again %v, want %v", ents.Workload, cat.Workload(first))
	}
}

func entitiesEqual(a, b types.Entity) bool {
	return a.UID == b.UID && a.Parents.Equal(b.Parents) && a.Attributes.Equal(b.Attributes)
}

// BenchmarkEntities measures the caller's entity for a decision, kept and built.
func BenchmarkEntities(b *testing.B) {
	cat := benchCatalog()
	a := &Authorizer{Catalog: cat}
	p := identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/a"),
		Attestation: &identity.Attestation{Selectors: []string{"team:3", "k8s:ns:prod"}, NodeSelectors: []string{"k8s_psat:cluster:c1"}}}
	b.Run("kept", func(b *testing.B) {
		for b.Loop() {
			a.Entities(p)
		}
	})
	b.Run("built", func(b *testing.B) {
		for b.Loop() {
			cat.Workload(p)
		}
	})
}

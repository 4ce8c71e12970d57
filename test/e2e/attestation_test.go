package e2e

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/test/stack"
)

func TestAttestationFromSPIREServer(t *testing.T) {
	s, _ := shared(t)
	atts, err := identity.NewAttestations(identity.AttestationConfig{Address: "unix://" + s.SPIRE.ServerSocket, TTL: time.Nanosecond}, stack.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	defer atts.Close()
	analyst, _ := s.Persona(stack.PersonaAnalyst)
	att, err := atts.Lookup(t.Context(), analyst.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"agent:manifest-sha256:" + analyst.Manifest.SHA256(), "agent:name:analyst", "unix:uid:30001"}
	if !slices.Equal(att.Selectors, want) || att.ParentID != s.SPIRE.AgentID || att.NodeAttestationType != "join_token" {
		t.Fatalf("attestation %+v; want selectors %q, parent %s, node attestation join_token", att, want, s.SPIRE.AgentID)
	}
	// join_token attestation yields no node selectors (k8s_psat, aws_iid and others do).
	_, err = atts.Lookup(t.Context(), spiffeid.RequireFromString("spiffe://example.org/agent/nobody"))
	if !errors.Is(err, identity.ErrNotRegistered) {
		t.Fatalf("unregistered ID: err = %v, want ErrNotRegistered", err)
	}

	dead, err := identity.NewAttestations(identity.AttestationConfig{Address: "unix://" + t.TempDir() + "/none.sock", Timeout: 2 * time.Second}, stack.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	if _, err := dead.Lookup(t.Context(), analyst.ID); err == nil || !strings.Contains(err.Error(), "SPIRE server unreachable") {
		t.Fatalf("unreachable SPIRE server: err = %v", err)
	}
}

// TestBrokerStopsTrustingWhenSPIREDoes deletes a workload's registration entry while its SVID is still
// valid. The broker, which checks entries through the server's API (with its own admin SVID), refuses
// the workload's next connection.
func TestBrokerStopsTrustingWhenSPIREDoes(t *testing.T) {
	s, _ := shared(t)
	temp := stack.Persona{Name: "temp", ID: spiffeid.RequireFromString("spiffe://example.org/agent/temp"), UID: 30050}
	entryIDs, err := s.AddPersona(t.Context(), temp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-temp", Binary: brokerBin, Allow: []string{"temp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	f := clientFiles(t, s, "temp")
	if out, err := psql(t, b, f, nil, "SELECT 1"); err != nil || out != "1" {
		t.Fatalf("registered workload refused: %q %v", out, err)
	}
	if err := s.SPIRE.Unregister(t.Context(), entryIDs...); err != nil {
		t.Fatal(err)
	}
	var out string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if out, err = psql(t, b, f, nil, "SELECT 1"); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("workload still admitted 30 s after its entry was deleted (cache_ttl is 2 s)")
	}
	if !strings.Contains(out, "SPIRE did not confirm spiffe://example.org/agent/temp") || !strings.Contains(out, "no registration entry") {
		t.Fatalf("refusal does not say why:\n%s", out)
	}
}

package identity

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestCheckFailsWhenSPIREIsUnreachable: with no SPIRE server at the configured address, Check fails
// by its deadline, and its error gives the gRPC status, not the address.
func TestCheckFailsWhenSPIREIsUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-spire.sock")
	a, err := NewAttestations(AttestationConfig{Address: "unix://" + sock}, spiffeid.RequireTrustDomainFromString("example.org"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	err = a.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "SPIRE server unreachable") || strings.Contains(err.Error(), sock) {
		t.Fatalf("Check = %v; want SPIRE unreachable, without the socket's path", err)
	}
}

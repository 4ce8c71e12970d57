package identity

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// noSVID stands in for the Workload API where the test only inspects the configuration's settings.
type noSVID struct{}

func (noSVID) GetX509SVID() (*x509svid.SVID, error) { return nil, os.ErrNotExist }

func TestServerConfigRequiresSVIDAndDisablesResumption(t *testing.T) {
	c := ServerConfig(noSVID{}, x509bundle.NewSet(), []spiffeid.TrustDomain{td}, "postgresql")
	if !c.SessionTicketsDisabled {
		t.Error("session tickets enabled: resumed sessions skip SVID verification")
	}
	if c.ClientAuth != tls.RequireAnyClientCert || c.VerifyPeerCertificate == nil {
		t.Errorf("client SVIDs not required and verified: ClientAuth=%v", c.ClientAuth)
	}
	if c.MinVersion < tls.VersionTLS12 {
		t.Errorf("MinVersion %x", c.MinVersion)
	}
	if len(c.NextProtos) != 1 || c.NextProtos[0] != "postgresql" {
		t.Errorf("NextProtos %q", c.NextProtos)
	}
}

func TestBackendConfigRefusesBadCA(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.pem")} {
		if _, err := BackendConfig(path, "db", nil); err == nil {
			t.Errorf("BackendConfig(%s) accepted it", path)
		}
	}
}

func TestAuthorizeTrustDomains(t *testing.T) {
	auth := AuthorizeTrustDomains([]spiffeid.TrustDomain{td, partner})
	for id, ok := range map[string]bool{
		"spiffe://example.org/a":          true,
		"spiffe://partner.example/b":      true,
		"spiffe://evil.org/a":             false,
		"spiffe://example.org.evil.org/a": false,
		"spiffe://partner.example.com/b":  false,
	} {
		if err := auth(spiffeid.RequireFromString(id), nil); (err == nil) != ok {
			t.Errorf("%s: err = %v, want ok=%v", id, err, ok)
		}
	}
}

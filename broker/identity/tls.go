package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ServerConfig returns the TLS configuration a protocol plugin terminates clients with. The broker
// presents its current SVID; the client must present an X.509-SVID that chains to its trust domain's
// bundle, and that trust domain must be one of trusted (the broker's own, plus federated ones). Which
// workload may do what is decided after the handshake. nextProtos are the ALPN names the plugin accepts
// (for example "postgresql").
func ServerConfig(svid x509svid.Source, bundles x509bundle.Source, trusted []spiffeid.TrustDomain, nextProtos ...string) *tls.Config {
	c := tlsconfig.MTLSServerConfig(svid, bundles, AuthorizeTrustDomains(trusted))
	c.MinVersion = tls.VersionTLS12
	c.SessionTicketsDisabled = true
	c.NextProtos = nextProtos
	return c
}

// AuthorizeTrustDomains accepts a verified peer whose SPIFFE ID is a member of one of tds.
func AuthorizeTrustDomains(tds []spiffeid.TrustDomain) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		for _, td := range tds {
			if id.MemberOf(td) {
				return nil
			}
		}
		return fmt.Errorf("identity: trust domain %q is not trusted", id.TrustDomain())
	}
}

// BackendConfig returns a TLS client configuration for connecting to a backend: the server's
// certificate is verified against the PEM bundle in caFile and serverName; when svid is not nil, the
// broker's current X.509-SVID is the client certificate, read at each handshake so that rotation is
// seamless.
func BackendConfig(caFile, serverName string, svid x509svid.Source) (*tls.Config, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("identity: backend CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("identity: backend CA %s holds no PEM certificate", caFile)
	}
	c := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if svid != nil {
		c.GetClientCertificate = tlsconfig.GetClientCertificate(svid)
	}
	return c, nil
}

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
// presents its current SVID; the client must present an X.509-SVID that chains to the bundle of td and
// whose SPIFFE ID is a member of td. Which member may do what is decided after the handshake.
// nextProtos are the ALPN names the plugin accepts (for example "postgresql").
func ServerConfig(svid x509svid.Source, bundles x509bundle.Source, td spiffeid.TrustDomain, nextProtos ...string) *tls.Config {
	c := tlsconfig.MTLSServerConfig(svid, bundles, tlsconfig.AuthorizeMemberOf(td))
	c.MinVersion = tls.VersionTLS12
	c.SessionTicketsDisabled = true
	c.NextProtos = nextProtos
	return c
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

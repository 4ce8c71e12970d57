package stack

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

// ConsoleViewPolicy is the console's view policy the stack writes: the approver's groups (dba,
// security) see every target's sessions; nobody else sees any.
const ConsoleViewPolicy = `// Who sees which sessions in the console (and decides which targets' held requests there).
permit (principal in Group::"dba", action == Action::"console:view", resource);
permit (principal in Group::"security", action == Action::"console:view", resource);
`

// Console is a console block for a broker, with what it needs on disk.
type Console struct {
	// URL is the console's public URL, https://127.0.0.1:port; Addr its host:port.
	URL, Addr string
	// HCL is the console block to add to a broker's configuration (BrokerOptions.Extra).
	HCL string
}

// ConsolePort picks a free loopback port for a console, whose callback the provider must know
// before it starts: pass ConsoleCallback(addr) in OIDCOptions.RedirectURIs.
func ConsolePort() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

// ConsoleCallback is the OIDC callback of a console listening on addr.
func ConsoleCallback(addr string) string { return "https://" + addr + "/oidc/callback" }

// ConsoleFor writes a console's certificate (from a CA made for it, for 127.0.0.1 and localhost),
// its copy of the provider's client secret and CA, and ConsoleViewPolicy into a directory the
// broker's uid owns, and returns the console block for addr that logs in at o.
func (s *Stack) ConsoleFor(name, addr string, o *OIDC) (*Console, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("stack: console address %q: %w", addr, err)
	}
	dir := filepath.Join(s.Dir, name+"-console")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	_, cert, err := oidcprovider.LoopbackCert()
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	secret, err := os.ReadFile(o.ConsoleSecretFile)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	ca, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	files := map[string][]byte{
		"console.crt":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"console.key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"client-secret":   secret,
		"provider-ca.pem": ca,
		"view.cedar":      []byte(ConsoleViewPolicy),
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	if os.Geteuid() == 0 {
		broker, err := s.Persona(PersonaBroker)
		if err != nil {
			return nil, err
		}
		if err := ChownTree(dir, int(broker.UID), int(broker.UID)); err != nil {
			return nil, err
		}
	}
	at := func(f string) string { return filepath.Join(dir, f) }
	return &Console{URL: "https://" + addr, Addr: addr, HCL: fmt.Sprintf(`# The web console: approvers log in at the stack's OpenID provider.
console {
  listen           = %q
  cert_file        = %q
  key_file         = %q
  view_policy_file = %q
  oidc {
    issuer             = %q
    client_id          = %q
    client_secret_file = %q
    ca_file            = %q
  }
}
`, addr, at("console.crt"), at("console.key"), at("view.cedar"), o.Issuer, OIDCConsoleClient, at("client-secret"), at("provider-ca.pem"))}, nil
}

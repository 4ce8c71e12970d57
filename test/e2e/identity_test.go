package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/test/stack"
)

// mint makes a client certificate for uris, signed by parent (self-signed when parent is nil).
func mint(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, mod func(*x509.Certificate), uris ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{Organization: []string{"test"}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if mod != nil {
		mod(tmpl)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// connectWith runs the PostgreSQL TLS upgrade with certs as the client certificate and sends a
// StartupMessage. It returns nil when the broker answered AuthenticationOk, and otherwise the error.
func connectWith(t *testing.T, b *stack.Broker, roots *x509.CertPool, certs []tls.Certificate) error {
	t.Helper()
	raw, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := raw.Write(ssl); err != nil {
		t.Fatal(err)
	}
	var s [1]byte
	if _, err := io.ReadFull(raw, s[:]); err != nil || s[0] != 'S' {
		t.Fatalf("SSLRequest: %q %v", s, err)
	}
	conn := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: certs})
	if err := conn.Handshake(); err != nil {
		return err
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "x", "database": "shop"}})
	if err := fe.Flush(); err != nil {
		return err
	}
	msg, err := fe.Receive() // with TLS 1.3 a refused client certificate surfaces here, as an alert
	if err != nil {
		return err
	}
	if _, ok := msg.(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("broker answered %T %+v after the handshake", msg, msg)
	}
	return nil
}

func TestBadClientCertificatesAreRefusedAtTheHandshake(t *testing.T) {
	s, b := shared(t)
	roots := x509.NewCertPool()
	pemBytes, err := os.ReadFile(s.SPIRE.BundlePath)
	if err != nil || !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("bundle", err)
	}
	up, upKey := s.SPIRE.UpstreamCA, s.SPIRE.UpstreamKey
	analyst := "spiffe://example.org/agent/analyst"

	// The control: a well-formed SVID for an allowed workload, minted by the same root, is accepted,
	// so each refusal below is due to the one thing wrong with it.
	if err := connectWith(t, b, roots, []tls.Certificate{mint(t, up, upKey, nil, analyst)}); err != nil {
		t.Fatalf("well-formed SVID refused: %v", err)
	}
	cases := []struct {
		name  string
		certs []tls.Certificate
	}{
		{"foreign trust domain with its own CA", []tls.Certificate{mint(t, nil, nil, nil, "spiffe://evil.org/agent/analyst")}},
		{"foreign trust domain under the trusted root", []tls.Certificate{mint(t, up, upKey, nil, "spiffe://evil.org/agent/analyst")}},
		{"expired", []tls.Certificate{mint(t, up, upKey, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}, analyst)}},
		{"CA certificate as the leaf", []tls.Certificate{mint(t, up, upKey, func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage |= x509.KeyUsageCertSign
		}, analyst)}},
		{"two URI SANs", []tls.Certificate{mint(t, up, upKey, nil, analyst, "spiffe://example.org/agent/support")}},
		{"no URI SAN", []tls.Certificate{mint(t, up, upKey, nil)}},
		{"no client certificate", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := connectWith(t, b, roots, tc.certs)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "tls:") && !strings.Contains(err.Error(), "remote error") {
				t.Fatalf("refused, but not by the TLS handshake: %v", err)
			}
		})
	}
}

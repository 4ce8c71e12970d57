package oidcprovider

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"time"
)

// Local is a provider serving HTTPS on a free loopback port inside the calling process, with a
// certificate from a CA made for it: what a package's tests start when they need a real provider
// and no separate process.
type Local struct {
	*Provider
	// CAPEM is the PEM CA that signed the server's certificate (for 127.0.0.1 and localhost).
	CAPEM []byte

	srv  *http.Server
	done chan error
}

// StartLocal starts a provider for cfg on 127.0.0.1. Close stops it.
func StartLocal(cfg *Config, log *slog.Logger) (*Local, error) {
	caPEM, cert, err := LoopbackCert()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: %w", err)
	}
	p, err := New(cfg, "https://"+ln.Addr().String(), log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	l := &Local{Provider: p, CAPEM: caPEM, srv: p.HTTPServer(), done: make(chan error, 1)}
	l.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	go func() { l.done <- l.srv.ServeTLS(ln, "", "") }()
	return l, nil
}

// Client is an HTTPS client that trusts the provider's CA only, with a 10s timeout.
func (l *Local) Client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(l.CAPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// Close stops the server, waiting up to 5s for requests in flight.
func (l *Local) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := l.srv.Shutdown(ctx)
	if serr := <-l.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// LoopbackCert makes a throwaway CA and a server certificate signed by it for 127.0.0.1 and
// localhost, both valid for a day. It returns the CA as PEM and the server's key pair.
func LoopbackCert() ([]byte, tls.Certificate, error) {
	fail := func(err error) ([]byte, tls.Certificate, error) {
		return nil, tls.Certificate{}, fmt.Errorf("oidcprovider: certificate: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "svidbroker test OIDC CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fail(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fail(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return fail(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}, nil
}

package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestConnectJWTModeCarriesTheWorkloadsJWTSVID: `svidbroker connect --protocol http --jwt-audience`
// running as the analyst gets a JWT-SVID from the real SPIRE agent by attestation and sends it as
// each request's bearer, replacing the client's own Authorization, over TLS without a client
// certificate. The far end is an HTTPS server with the broker's real X.509-SVID that verifies each
// bearer with the broker's JWT verifier against SPIRE's JWT bundle (it stands in for the broker's
// HTTP listener, which this test does not need); the token appears in none of the forwarder's logs.
func TestConnectJWTModeCarriesTheWorkloadsJWTSVID(t *testing.T) {
	s, _ := shared(t)
	brokerSVIDs, err := s.FetchSVIDs(t.Context(), stack.PersonaBroker, "svidbroker")
	if err != nil {
		t.Fatal(err)
	}
	if brokerSVIDs.ID != brokerIDName {
		t.Fatalf("the broker persona is %s, want %s", brokerSVIDs.ID, brokerIDName)
	}
	cert, err := tls.X509KeyPair(brokerSVIDs.CertPEM, brokerSVIDs.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := jwtbundle.Parse(stack.TrustDomain, brokerSVIDs.JWTBundle)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := identity.NewJWTVerifier(identity.JWTConfig{Bundles: bundle, Audience: "svidbroker"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var tokens []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Values("Authorization")
		if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
			http.Error(w, fmt.Sprintf("want one bearer, got %d Authorization fields", len(auth)), http.StatusUnauthorized)
			return
		}
		tok := strings.TrimPrefix(auth[0], "Bearer ")
		mu.Lock()
		tokens = append(tokens, tok)
		mu.Unlock()
		peer, err := verifier.Verify(r.Context(), tok)
		if err != nil {
			http.Error(w, "bearer refused: "+err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "%s client-certificates=%d", peer.ID, len(r.TLS.PeerCertificates))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, NextProtos: []string{"http/1.1"}}
	srv.StartTLS()
	defer srv.Close()

	p := startConnectArgs(t, s, stack.PersonaAnalyst, "--protocol", "http", "--jwt-audience", "svidbroker",
		"--listen", "127.0.0.1:0", "--broker", srv.Listener.Addr().String(), "--broker-id", brokerIDName, "-v")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for i := range 2 {
		req, _ := http.NewRequest("GET", "http://"+p.addr+"/v1/customers/1", nil)
		req.Header.Set("Authorization", "Bearer forged-by-the-client")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "spiffe://example.org/agent/analyst client-certificates=0"; resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: got %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, tok := range tokens {
		for part := range strings.SplitSeq(tok, ".") {
			if strings.Contains(p.log(), part) {
				t.Fatalf("the forwarder's log holds part of its token:\n%s", p.log())
			}
		}
	}
	if !strings.Contains(p.log(), `jwt_audience=svidbroker`) {
		t.Fatalf("the forwarder did not log its JWT mode at start:\n%s", p.log())
	}
}

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/test/stack"
)

// shortTTL is the X.509-SVID lifetime of the rotation stacks: SPIRE rotates at half-life, so every
// 30 seconds.
const shortTTL = time.Minute

func shortTTLStack(t *testing.T, extra string) (*stack.Stack, *stack.Broker) {
	t.Helper()
	s := stack.New(t, stack.Config{SPIRE: stack.SPIREConfig{X509SVIDTTL: shortTTL}}) // stopped at cleanup
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Binary: brokerBin, Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	return s, b
}

// TestRotation runs a real agent through several rotations of its own and the broker's SVIDs. Every
// request must succeed: rotation needs no restart and drops nothing.
func TestRotation(t *testing.T) {
	t.Parallel()
	s, b := shortTTLStack(t, "")
	t.Run("sessions across rotations", func(t *testing.T) {
		t.Parallel()
		bin, err := s.Install(selfExe(t), "e2e-agent")
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := s.Command(t.Context(), stack.PersonaAnalyst, bin)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := runAgentAs(t.Context(), cmd, b.Addr, 100*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("agent: %d requests ok, %d failed; %d client SVIDs, %d broker SVIDs", rep.OK, rep.Failed, len(rep.ClientSerials), len(rep.BrokerSerials))
		if rep.Failed != 0 {
			t.Fatalf("%d requests failed across rotations: %q", rep.Failed, rep.Errors)
		}
		if rep.OK < 100 {
			t.Fatalf("only %d requests ran", rep.OK)
		}
		// 100 s at a 30 s rotation period: at least three SVIDs each, so at least two rotations.
		if len(rep.ClientSerials) < 3 || len(rep.BrokerSerials) < 3 {
			t.Fatalf("saw %d client and %d broker SVIDs; rotation did not happen as expected", len(rep.ClientSerials), len(rep.BrokerSerials))
		}
	})
	t.Run("session ends when the client SVID expires", func(t *testing.T) {
		t.Parallel()
		f := clientFiles(t, s, stack.PersonaSupport)
		certPEM, err := os.ReadFile(f.Cert)
		if err != nil {
			t.Fatal(err)
		}
		leaf := parseLeaf(t, certPEM)
		cfg := pgxConfig(t, b, f)
		conn, err := pgx.ConnectConfig(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		// The default grace is 30 s. Poll until the broker ends the session; bound the wait generously.
		deadline := leaf.NotAfter.Add(30*time.Second + time.Minute)
		var qerr error
		for time.Now().Before(deadline) {
			var n int
			if qerr = conn.QueryRow(t.Context(), "SELECT 1").Scan(&n); qerr != nil {
				break
			}
			time.Sleep(time.Second)
		}
		ended := time.Now()
		if qerr == nil {
			t.Fatalf("session still open at %s, long after the SVID expired at %s", ended, leaf.NotAfter)
		}
		if ended.Before(leaf.NotAfter.Add(30 * time.Second)) {
			t.Fatalf("session ended at %s, before the SVID's expiry %s plus grace (%v)", ended, leaf.NotAfter, qerr)
		}
		if !strings.Contains(qerr.Error(), "SVID expired") {
			t.Fatalf("session ended with %v, not with the SVID-expiry error", qerr)
		}
	})
}

// TestAgentDown kills the SPIRE agent under a running broker. The broker keeps serving on its cached
// SVID until that expires, then refuses new connections saying why, and recovers by itself once the
// agent is back.
func TestAgentDown(t *testing.T) {
	t.Parallel()
	s, b := shortTTLStack(t, "")
	f := clientFiles(t, s, stack.PersonaAnalyst)
	brokerExpiry := brokerSVIDExpiry(t, b, f)

	s.SPIRE.KillAgent()
	if out, err := psql(t, b, f, nil, "SELECT 1"); err != nil || out != "1" {
		t.Fatalf("broker stopped serving as soon as the agent died: %q %v", out, err)
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		t.Fatal(err)
	}
	clientExpiry := parseLeaf(t, certPEM).NotAfter
	var out string
	for deadline := brokerExpiry.Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		if out, err = psql(t, b, f, nil, "SELECT 1"); err == nil {
			continue
		}
		if strings.Contains(out, "error response during SSL exchange") {
			break
		}
		if now := time.Now(); now.Before(brokerExpiry) && now.Before(clientExpiry) {
			break // refused while both SVIDs were current: wrong, as the checks below say
		}
		// The client's SVID comes from the same dead agent and expires about when the broker's does:
		// an attempt then fails in the TLS handshake, on the client's certificate, until the broker's own
		// expiry makes it refuse before TLS.
	}
	refusedAt := time.Now()
	if err == nil {
		t.Fatalf("broker still accepted connections a minute after its SVID expired at %s", brokerExpiry)
	}
	if refusedAt.Before(brokerExpiry) {
		t.Fatalf("broker refused at %s, before its SVID expired at %s: %s", refusedAt, brokerExpiry, out)
	}
	// libpq does not print an error sent in answer to SSLRequest (it cannot be authenticated), only that
	// there was one; the reason is on the broker's readiness endpoint and in its log.
	if !strings.Contains(out, "error response during SSL exchange") {
		t.Fatalf("refused, but not by the broker before TLS:\n%s", out)
	}
	if code, body := readyz(t, b); code != http.StatusServiceUnavailable || !strings.Contains(body, "SVID expired") {
		t.Fatalf("/readyz = %d %q, want 503 naming the expired SVID", code, body)
	}

	if err := s.SPIRE.StartAgent(t.Context()); err != nil {
		t.Fatal(err)
	}
	f = clientFiles(t, s, stack.PersonaAnalyst) // the old files expired meanwhile
	defer func() {
		if code, body := readyz(t, b); code != http.StatusOK {
			t.Errorf("/readyz = %d %q after recovery", code, body)
		}
	}()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(2 * time.Second) {
		if out, err = psql(t, b, f, nil, "SELECT 1"); err == nil && out == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not recover after the agent returned: %s", out)
		}
	}
}

func readyz(t *testing.T, b *stack.Broker) (int, string) {
	t.Helper()
	return readyzAt(t, b, "/readyz")
}

// readyzAt gets path (/readyz, with its query) from b's admin listener.
func readyzAt(t *testing.T, b *stack.Broker, path string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + b.AdminAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body)
}

// brokerSVIDExpiry returns when the broker's current serving SVID expires, as a client sees it.
func brokerSVIDExpiry(t *testing.T, b *stack.Broker, f *stack.ClientFiles) time.Time {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	var s [1]byte
	if _, err := raw.Write(ssl); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(raw, s[:]); err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}) // only reads the certificate
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	return conn.ConnectionState().PeerCertificates[0].NotAfter
}

func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func selfExe(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

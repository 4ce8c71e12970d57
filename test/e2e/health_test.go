package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// TestReadyzListsEachDependency: /readyz?verbose lists what the broker needs to start a session, each
// with its state, in the style of Kubernetes' verbose checks; plain /readyz says "ok".
func TestReadyzListsEachDependency(t *testing.T) {
	_, b := shared(t)
	code, body := readyzAt(t, b, "/readyz?verbose")
	want := "[+]svid ok\n[+]audit ok\n[+]policy ok\n[+]spire-server ok\n[+]target/shop/backend ok\nreadyz check passed\n"
	if code != http.StatusOK || body != want {
		t.Fatalf("/readyz?verbose = %d\n%s\nwant 200\n%s", code, body, want)
	}
	if code, body := readyz(t, b); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
}

// TestReadyzFailsWhileSPIREServerIsDown: with enrichment configured (spire_server), a broker whose
// SPIRE server is gone cannot confirm callers, so it cannot start sessions: /readyz says so, naming
// the SPIRE server and not its address.
func TestReadyzFailsWhileSPIREServerIsDown(t *testing.T) {
	t.Parallel()
	s := stack.New(t, stack.Config{}) // its own SPIRE: this one's server is killed
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Binary: brokerBin})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	if code, body := readyzAt(t, b, "/readyz?verbose"); code != http.StatusOK || !strings.Contains(body, "[+]spire-server ok\n") {
		t.Fatalf("/readyz?verbose = %d\n%s", code, body)
	}
	s.SPIRE.KillServer()
	var code int
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if code, body = readyzAt(t, b, "/readyz?verbose"); code == http.StatusServiceUnavailable {
			break
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]spire-server failed: identity: SPIRE server unreachable") ||
		!strings.Contains(body, "[+]svid ok\n") || !strings.HasSuffix(body, "readyz check failed\n") || strings.Contains(body, s.SPIRE.ServerAddr) {
		t.Fatalf("/readyz?verbose with the SPIRE server down = %d\n%s", code, body)
	}
}

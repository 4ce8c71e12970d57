package e2e

import (
	"net/http"
	"strings"
	"testing"
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

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// apiToken is the form of the API tokens Vault's API-token engine issues.
var apiToken = regexp.MustCompile(`sbt_[0-9a-f]{64}`)

// TestHTTPCanaryTokenNeverLeaves: the API token the broker leases for a session reaches the API and
// nothing else. A token leased from the same Vault role shows the form they take; after requests of
// every kind (masked, listed, streamed, refused), no response header or body, no line of the
// broker's debug log and no audit record holds a token of that form. The agent's own Authorization
// (its JWT-SVID), Cookie and Proxy-Authorization do not reach the API: the request succeeds, and the
// one token the API looked up is the broker's leased api-read token, not the agent's bearer.
func TestHTTPCanaryTokenNeverLeaves(t *testing.T) {
	h := httpShared(t)
	sec, err := h.vault.Logical().ReadWithContext(t.Context(), stack.APIVaultMount+"/creds/api-read")
	if err != nil {
		t.Fatal(err)
	}
	own, _ := sec.Data["token"].(string)
	if !apiToken.MatchString(own) || apiToken.FindString(own) != own {
		t.Fatalf("a token of role api-read does not have the form the test looks for: %d bytes", len(own))
	}
	if _, err := h.vault.Logical().WriteWithContext(t.Context(), "sys/leases/revoke", map[string]any{"lease_id": sec.LeaseID}); err != nil {
		t.Fatal(err)
	}
	up := h.watchUpstream(t)

	var seen strings.Builder
	keep := func(r httpReply) {
		for k, vs := range r.header {
			seen.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
		}
		seen.WriteString(r.body + "\n")
	}
	c := h.httpClient(t, stack.PersonaSupport)
	for _, p := range []string{"/v1/customers/1", "/v1/customers?limit=3", "/v1/orders/10", "/v1/admin", "/v1/customers?debug=1"} {
		keep(h.do(t, c, "GET", p, nil, ""))
	}
	keep(h.do(t, c, "DELETE", "/v1/orders/"+strconv.Itoa(h.newOrder(t)), nil, "")) // refused: support may not delete
	resp, err := c.Get(h.base() + "/v1/customers/2/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	keep(httpReply{resp.StatusCode, resp.Header, string(body)})

	// The agent's credentials: its JWT-SVID as bearer, a cookie, a proxy credential.
	jwtTok := h.jwtSVID(t, stack.PersonaAnalyst, stack.JWTAudience)
	mark := up.mark(t)
	r := h.do(t, h.noCertClient(t), "GET", "/v1/orders/11", http.Header{
		"Authorization":       {"Bearer " + jwtTok},
		"Cookie":              {"session=agent-cookie-canary"},
		"Proxy-Authorization": {"Basic YWdlbnQ6Y2FuYXJ5"},
	}, "")
	keep(r)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/orders/11 with the analyst's JWT-SVID: %s", r)
	}
	lookups := up.lookupsSince(t, mark)
	if len(lookups) != 1 {
		t.Fatalf("the API looked up %d tokens for one request, want 1", len(lookups))
	}
	jwtSum := sha256.Sum256([]byte(jwtTok))
	if lookups[0] == hex.EncodeToString(jwtSum[:]) {
		t.Fatal("the agent's bearer reached the API")
	}
	db, err := h.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var role string
	if err := db.QueryRow(t.Context(), "SELECT role FROM api.tokens WHERE token_sha256 = decode($1, 'hex')", lookups[0]).Scan(&role); err != nil || role != "api-read" {
		t.Fatalf("the token the API received is not a leased api-read token: role %q, %v", role, err)
	}

	where := map[string]string{"the responses": seen.String()}
	logb, err := os.ReadFile(h.b.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	where["the broker's log"] = string(logb)
	if !strings.Contains(string(logb), "level=DEBUG") {
		t.Fatal("the broker does not log at debug level: the check would miss what debug logs")
	}
	if err := filepath.WalkDir(h.b.AuditDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		where["audit file "+filepath.Base(p)] = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Nor any customer's clear email or ssn.
	var clear []string
	for id := 1; id <= stack.SeedCustomers; id++ {
		row := h.customer(t, id)
		clear = append(clear, row.Email, row.SSN)
	}
	for name, text := range where {
		for _, v := range clear {
			if strings.Contains(text, v) {
				t.Errorf("%s hold(s) the clear value of a masked field", name)
			}
		}
	}
	sig := jwtTok[strings.LastIndexByte(jwtTok, '.')+1:]
	for name, text := range where {
		if m := apiToken.FindString(text); m != "" {
			t.Errorf("%s hold(s) an API token (%s...)", name, m[:8])
		}
		if name != "the responses" && strings.Contains(text, sig) {
			t.Errorf("%s hold(s) the agent's JWT-SVID", name)
		}
		if strings.Contains(text, "agent-cookie-canary") {
			t.Errorf("%s hold(s) the agent's cookie", name)
		}
	}
}

// TestHTTPSessionTokenRevokedWhenTheConnectionCloses: the API token the broker leased for a
// connection's session is in the API's token table while the connection is open, and gone (revoked
// in Vault, which deletes it) once the client closes the connection.
func TestHTTPSessionTokenRevokedWhenTheConnectionCloses(t *testing.T) {
	h := httpShared(t)
	up := h.watchUpstream(t)
	tokenRows := h.tokenRows(t)
	c := h.httpClient(t, stack.PersonaSupport)
	mark := up.mark(t)
	if r := h.do(t, c, "GET", "/v1/orders/10", nil, ""); r.status != http.StatusOK {
		t.Fatalf("GET /v1/orders/10: %s", r)
	}
	lookups := up.lookupsSince(t, mark)
	if len(lookups) != 1 || lookups[0] == "?" {
		t.Fatalf("lookups %q, want the one token the API received", lookups)
	}
	if n := tokenRows(lookups[0]); n != 1 {
		t.Fatalf("the session's token is not in api.tokens while its connection is open (%d rows)", n)
	}
	c.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); tokenRows(lookups[0]) != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the session's token is still valid at the API after its connection closed")
		}
	}
}

// TestHTTPVaultSealedFailsClosed: with Vault sealed, a new connection's request gets no API token,
// so it is refused 503 saying so, and the API sees nothing; unsealed, the next request on the same
// connection gets its session, as does a new connection.
func TestHTTPVaultSealedFailsClosed(t *testing.T) {
	h := httpShared(t)
	up := h.watchUpstream(t)
	httpEnv.vaultSrv.Seal()
	sealed := true
	t.Cleanup(func() {
		if sealed {
			httpEnv.vaultSrv.Unseal()
		}
	})
	c := h.httpClient(t, stack.PersonaSupport)
	mark := up.mark(t)
	r := h.do(t, c, "GET", "/v1/orders/10", nil, "")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "credential") {
		t.Fatalf("with Vault sealed: %s, want 503 saying no credential could be obtained", r)
	}
	if n := up.lookupsSince(t, mark); len(n) != 0 {
		t.Fatalf("the API served %d request(s) with Vault sealed", len(n))
	}
	httpEnv.vaultSrv.Unseal()
	sealed = false
	if r := h.do(t, c, "GET", "/v1/orders/10", nil, ""); r.status != http.StatusOK {
		t.Fatalf("after unsealing, the same connection: %s", r)
	}
	if r := h.do(t, h.httpClient(t, stack.PersonaSupport), "GET", "/v1/orders/10", nil, ""); r.status != http.StatusOK {
		t.Fatalf("after unsealing, a new connection: %s", r)
	}
}

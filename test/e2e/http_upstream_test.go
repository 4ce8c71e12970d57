package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// upstreamLog watches what the shop API asks PostgreSQL: with log_statement = 'all' for the API's
// own login, every request the API serves looks its bearer token up in api.tokens, and PostgreSQL
// writes that statement and its parameter (the SHA-256 of the token the API received) to its log
// before the API answers. So a request that reached the API shows as a lookup in the log before its
// reply reaches the broker; none means the API saw nothing.
type upstreamLog struct {
	h    *httpStack
	path string
}

// tokenLookup is the API's token query (examples/shopapi authenticate).
const tokenLookup = "FROM api.tokens WHERE token_sha256 = $1"

// watchUpstream turns statement logging on for the API's login and makes the API reconnect, so that
// every connection of its pool logs; it returns when a control request shows in the log.
func (h *httpStack) watchUpstream(t *testing.T) *upstreamLog {
	t.Helper()
	db, err := h.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(t.Context(), "ALTER ROLE "+stack.ShopAPIDBRole+" SET log_statement = 'all'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db, err := h.s.Postgres.Connect(context.Background(), "shop")
		if err == nil {
			_, _ = db.Exec(context.Background(), "ALTER ROLE "+stack.ShopAPIDBRole+" RESET log_statement")
			db.Close(context.Background())
		}
	})
	// Connections opened before the setting do not log: end them; the API's pool opens new ones.
	if _, err := db.Exec(t.Context(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", stack.ShopAPIDBRole); err != nil {
		t.Fatal(err)
	}
	u := &upstreamLog{h: h, path: filepath.Join(h.s.LogDir, "postgres.log")}
	c := h.httpClient(t, stack.PersonaSupport)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		mark := u.mark(t)
		r := h.do(t, c, "GET", "/v1/orders/10", nil, "")
		if r.status == 200 && len(u.lookupsSince(t, mark)) > 0 {
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API's token lookups do not show in %s (last reply %s)", u.path, r)
		}
	}
}

// mark is the log's current end.
func (u *upstreamLog) mark(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(u.path)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

var lookupParam = regexp.MustCompile(`parameters: \$1 = '\\x([0-9a-f]{64})'`)

// lookupsSince returns the token digests (hex) the API looked up since mark, one per request it
// served; a lookup whose parameter the log does not show counts as "?".
func (u *upstreamLog) lookupsSince(t testing.TB, mark int) []string {
	t.Helper()
	b, err := os.ReadFile(u.path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	lines := strings.Split(string(b[mark:]), "\n")
	for i, l := range lines {
		if !strings.Contains(l, tokenLookup) {
			continue
		}
		d := "?"
		for _, next := range lines[i+1 : min(i+3, len(lines))] {
			if m := lookupParam.FindStringSubmatch(next); m != nil {
				d = m[1]
				break
			}
		}
		out = append(out, d)
	}
	return out
}

// tokenRows returns how many rows of the API's token table hold the token whose SHA-256 is digest
// (hex): 1 while its lease lives, 0 once Vault revoked it.
func (h *httpStack) tokenRows(t *testing.T) func(digest string) int {
	db, err := h.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return func(digest string) int {
		var n int
		if err := db.QueryRow(t.Context(), "SELECT count(*) FROM api.tokens WHERE token_sha256 = decode($1, 'hex')", digest).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

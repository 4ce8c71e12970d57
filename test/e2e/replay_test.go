package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// brokerCLI runs an svidbroker command against broker b's configuration and returns its output.
func brokerCLI(t *testing.T, b *stack.Broker, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, brokerBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("svidbroker %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// sessionWith waits for the session whose statements mention marker to end in b's chain, and returns
// its ID.
func sessionWith(t *testing.T, b *stack.Broker, marker string) string {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var session string
		ended := map[string]bool{}
		err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			if st := e.Record.Statement; st != nil && strings.Contains(st.Text, marker) {
				session = e.Record.Session
			}
			if e.Record.Kind == audit.KindSessionEnd {
				ended[e.Record.Session] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if session != "" && ended[session] {
			return session
		}
	}
	t.Fatalf("no ended session with %q in the chain", marker)
	return ""
}

// lineMeaning is what one replayed line must say.
type lineMeaning struct {
	kind string   // the record's kind
	has  []string // what the line says
	not  []string // what it must not say
}

// checkReplay finds, in order, a line of each meaning in the replay.
func checkReplay(t *testing.T, replay string, want []lineMeaning) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(replay), "\n")
	at := 0
next:
	for _, w := range want {
		for ; at < len(lines); at++ {
			line := lines[at]
			fields := strings.Fields(line)
			if len(fields) < 3 || fields[2] != w.kind {
				continue
			}
			ok := true
			for _, s := range w.has {
				ok = ok && strings.Contains(line, s)
			}
			if !ok {
				continue
			}
			for _, s := range w.not {
				if strings.Contains(line, s) {
					t.Errorf("%q says %q", line, s)
				}
			}
			at++
			continue next
		}
		t.Errorf("no %s line saying %q (in order) in the replay:\n%s", w.kind, w.has, replay)
		return
	}
}

// TestReplayAndExportSayWhatHappened scripts an analyst's session (allowed statements with and
// without masked columns, a default deny, a policy's forbid) and a migrator's (DDL held and approved,
// held and denied, held until its approval expired), then reads `svidbroker replay`, `audit export`
// and `audit sessions` for each line's meaning. No refused statement reads as allowed; no internal
// error of the broker's refusal mechanism is recorded as the session's.
func TestReplayAndExportSayWhatHappened(t *testing.T) {
	s, b := shared(t)
	ctx := t.Context()
	marker := fmt.Sprintf("replay_%d", time.Now().UnixNano())
	refused := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "42501"
	}

	analyst := connect(t, s, b, stack.PersonaAnalyst)
	var email string
	if _, err := analyst.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := analyst.QueryRow(ctx, "SELECT email FROM customers WHERE id = 1 AND '"+marker+"' <> ''").Scan(&email); err != nil {
		t.Fatal(err)
	}
	if _, err := analyst.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if _, err := analyst.Exec(ctx, "DELETE FROM orders WHERE total < 0 AND '"+marker+"' <> ''"); !refused(err) {
		t.Fatalf("the analyst's DELETE: %v", err)
	}
	if _, err := analyst.Exec(ctx, "DO $$ BEGIN PERFORM '"+marker+"'; END $$"); !refused(err) {
		t.Fatalf("the analyst's DO block: %v", err)
	}
	analyst.Close(ctx)

	migrator := connect(t, s, b, stack.PersonaMigrator)
	requests := map[string]string{}
	for _, verb := range []string{"approve", "deny", "expire"} {
		table := "held_" + verb + "_" + marker
		done := make(chan error, 1)
		go func() {
			_, err := migrator.Exec(context.Background(), "CREATE TEMP TABLE "+table+" (a int)")
			done <- err
		}()
		req := waitPending(t, b, table)
		requests[verb] = req.ID
		if verb != "expire" {
			httpReq, _ := http.NewRequest("POST", "http://"+b.AdminAddr+"/approvals/"+req.ID+"/"+verb, nil)
			httpReq.Header.Set("X-Approver", "dba@example.com")
			resp, err := http.DefaultClient.Do(httpReq)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %v %v", verb, resp, err)
			}
			resp.Body.Close()
		}
		if err := <-done; (verb == "approve") != (err == nil) || err != nil && !refused(err) {
			t.Fatalf("%s: %v", verb, err)
		}
	}
	migrator.Close(ctx)

	config := "--config=" + b.ConfigPath
	analystSession, migratorSession := sessionWith(t, b, marker+"' <> ''"), sessionWith(t, b, "held_approve_"+marker)
	noAllow := []string{"allow"}
	checkReplay(t, brokerCLI(t, b, "replay", config, analystSession), []lineMeaning{
		{kind: audit.KindSessionStart, has: []string{"analyst → shop", "connect allowed by analyst-connect"}},
		{kind: audit.KindStatement, has: []string{"] BEGIN", "allowed by analyst-session-statements"}, not: []string{"masked"}},
		{kind: audit.KindStatement, has: []string{"SELECT email FROM customers", "masked public.customers.email=hash", "allowed by analyst-select"}},
		{kind: audit.KindStatement, has: []string{"COMMIT", "allowed by analyst-session-statements"}, not: []string{"masked"}},
		{kind: audit.KindDenied, has: []string{"DELETE FROM orders", "refused (SQLSTATE 42501): no policy permitted it: denied by default"}, not: noAllow},
		{kind: audit.KindDenied, has: []string{"DO $$", "refused (SQLSTATE 42501): forbidden by baseline-no-admin-sql"}, not: noAllow},
		{kind: audit.KindSessionEnd, has: []string{"client ended the session"}},
	})
	checkReplay(t, brokerCLI(t, b, "replay", config, migratorSession), []lineMeaning{
		{kind: audit.KindApproval, has: []string{"request " + requests["approve"] + " held for approval by migrator-ddl-hold"}},
		{kind: audit.KindApproval, has: []string{"request " + requests["approve"] + " approved by dba@example.com"}},
		{kind: audit.KindStatement, has: []string{"held_approve_", "allowed by migrator-ddl-approved"}},
		{kind: audit.KindApproval, has: []string{"request " + requests["deny"] + " held for approval by migrator-ddl-hold"}},
		{kind: audit.KindApproval, has: []string{"request " + requests["deny"] + " denied by dba@example.com"}},
		{kind: audit.KindDenied, has: []string{"held_deny_", "approval denied, request " + requests["deny"] + ", held by migrator-ddl-hold"}, not: noAllow},
		{kind: audit.KindApproval, has: []string{"request " + requests["expire"] + " held for approval by migrator-ddl-hold"}},
		{kind: audit.KindApproval, has: []string{"request " + requests["expire"] + " expired"}, not: []string{" by "}},
		{kind: audit.KindDenied, has: []string{"held_expire_", "approval expired, request " + requests["expire"] + ", held by migrator-ddl-hold"}, not: noAllow},
	})

	for _, session := range []string{analystSession, migratorSession} {
		sc := bufio.NewScanner(strings.NewReader(brokerCLI(t, b, "audit", "export", config, "--session="+session)))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e audit.Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			r := e.Record
			switch {
			case r.Kind == audit.KindDenied && (r.Decision != nil && r.Decision.Allow || r.Detail["refused"] == ""):
				t.Errorf("exported refusal %s", sc.Text())
			case r.Kind == audit.KindError:
				t.Errorf("exported error %s: the session had none of its own", sc.Text())
			case r.Kind == audit.KindStatement && len(r.Statement.Masked) > 0 && !strings.Contains(r.Statement.Text, "customers"):
				t.Errorf("masked columns listed on %q", r.Statement.Text)
			}
		}
	}
	denied := brokerCLI(t, b, "audit", "sessions", config, "--decision=deny", "--spiffe-id="+mustPersonaID(t, s, stack.PersonaAnalyst))
	if !strings.Contains(denied, analystSession) {
		t.Errorf("audit sessions --decision deny does not list the session with refused statements:\n%s", denied)
	}
}

// checkLeaseEvents waits for a session of spiffeID in b's chain whose lease was acquired and then
// revoked, and checks that its replay says so, in order, as lease events.
func checkLeaseEvents(t *testing.T, b *stack.Broker, spiffeID string) {
	t.Helper()
	var session string
	for deadline := time.Now().Add(15 * time.Second); session == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			if r := e.Record; r.Kind == audit.KindLease && r.SPIFFEID == spiffeID && r.Detail["event"] == "revoked" {
				session = r.Session
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if session == "" {
		t.Fatalf("no revoked lease of %s in the chain", spiffeID)
	}
	checkReplay(t, brokerCLI(t, b, "replay", "--config="+b.ConfigPath, session), []lineMeaning{
		{kind: audit.KindSessionStart, has: []string{spiffeID}},
		{kind: audit.KindLease, has: []string{" acquired"}},
		{kind: audit.KindStatement, has: []string{"SELECT"}},
		{kind: audit.KindLease, has: []string{" revoked"}},
		{kind: audit.KindSessionEnd, has: []string{"client ended the session"}},
	})
}

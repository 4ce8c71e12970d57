package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestApprovalHold: the migrator's DDL waits for a person. The client is told the request's ID in a
// NoticeResponse; approving lets the statement run, denying fails it with 42501, and either way the
// session goes on.
func TestApprovalHold(t *testing.T) {
	s, b := shared(t)
	var mu sync.Mutex
	var notices []string
	conn := connect(t, s, b, stack.PersonaMigrator, func(cfg *pgx.ConnConfig) {
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			notices = append(notices, n.Message)
			mu.Unlock()
		}
	})

	for _, tc := range []struct {
		verb    string
		wantErr bool
	}{{"approve", false}, {"deny", true}} {
		table := "held_" + tc.verb
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(context.Background(), "CREATE TEMP TABLE "+table+" (a int)")
			done <- err
		}()
		req := waitPending(t, b, table)
		// The request is pending before its notice reaches the client, which reads it when it arrives.
		told := false
		for deadline := time.Now().Add(15 * time.Second); !told && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			mu.Lock()
			told = len(notices) > 0 && strings.Contains(notices[len(notices)-1], req.ID)
			mu.Unlock()
		}
		if !told {
			t.Fatalf("the client was not told request %s: %q", req.ID, notices)
		}
		if req.SPIFFEID != mustPersonaID(t, s, stack.PersonaMigrator) || len(req.Policies) == 0 || req.Policies[0] != "migrator-ddl-hold" {
			t.Fatalf("request %+v", req)
		}
		select {
		case err := <-done:
			t.Fatalf("the statement finished before anyone decided: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		httpReq, _ := http.NewRequest("POST", "http://"+b.AdminAddr+"/approvals/"+req.ID+"/"+tc.verb, nil)
		httpReq.Header.Set("X-Approver", "dba@example.com")
		resp, err := http.DefaultClient.Do(httpReq)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", tc.verb, resp, err)
		}
		resp.Body.Close()
		err = <-done
		var pe *pgconn.PgError
		switch {
		case tc.wantErr && (!errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "was denied")):
			t.Fatalf("denied approval: %v", err)
		case !tc.wantErr && err != nil:
			t.Fatalf("approved statement: %v", err)
		}
		var exists bool
		if err := conn.QueryRow(t.Context(), "SELECT to_regclass('pg_temp."+table+"') IS NOT NULL").Scan(&exists); err != nil || exists == tc.wantErr {
			t.Fatalf("after %s: table exists = %v (%v)", tc.verb, exists, err)
		}
	}
}

// waitPending polls the admin API until a request whose statement mentions what appears.
func waitPending(t *testing.T, b *stack.Broker, what string) approval.Request {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + b.AdminAddr + "/approvals")
		if err == nil {
			var reqs []approval.Request
			err = json.NewDecoder(resp.Body).Decode(&reqs)
			resp.Body.Close()
			for _, r := range reqs {
				if strings.Contains(r.Statement, what) {
					return r
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no pending approval for %q", what)
	return approval.Request{}
}

func mustPersonaID(t *testing.T, s *stack.Stack, persona string) string {
	p, err := s.Persona(persona)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID.String()
}

// withdrawSchema is a schema the broker's database role may create tables in, so that whether a held
// DDL statement ran shows in PostgreSQL after its session ended.
const withdrawSchema = "approval_withdraw"

// withdrawTables makes withdrawSchema and returns a superuser connection to shop that checks it.
func withdrawTables(t *testing.T, s *stack.Stack) *pgx.Conn {
	t.Helper()
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	if _, err := admin.Exec(t.Context(), "CREATE SCHEMA IF NOT EXISTS "+withdrawSchema+"; GRANT USAGE, CREATE ON SCHEMA "+withdrawSchema+" TO "+stack.BrokerDBRole); err != nil {
		t.Fatal(err)
	}
	return admin
}

// tableExists says whether PostgreSQL has withdrawSchema.name.
func tableExists(t *testing.T, admin *pgx.Conn, name string) bool {
	t.Helper()
	var exists bool
	if err := admin.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", withdrawSchema+"."+name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

// resolve approves or denies request id through the admin API and returns the status and body.
func resolve(t *testing.T, b *stack.Broker, id, verb string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+b.AdminAddr+"/approvals/"+id+"/"+verb, nil)
	req.Header.Set("X-Approver", "dba@example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitGone polls the admin API until request id is no longer pending.
func waitGone(t *testing.T, b *stack.Broker, id string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + b.AdminAddr + "/approvals")
		if err != nil {
			continue
		}
		var reqs []approval.Request
		err = json.NewDecoder(resp.Body).Decode(&reqs)
		resp.Body.Close()
		if err == nil && !slices.ContainsFunc(reqs, func(r approval.Request) bool { return r.ID == id }) {
			return
		}
	}
	t.Fatalf("request %s is still pending", id)
}

// waitWithdrawalRecorded waits for b's audit log to record request id as withdrawn for why, and the
// refusal of its statement (which mentions what), and returns the statement's session.
func waitWithdrawalRecorded(t *testing.T, b *stack.Broker, id, what, why string) string {
	t.Helper()
	var withdrawn, refused bool
	var session string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		withdrawn, refused = false, false
		err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			r := e.Record
			switch {
			case r.Kind == audit.KindApproval && r.Detail["request"] == id && r.Detail["state"] == "withdrawn":
				withdrawn = r.Detail["reason"] == why
			case r.Kind == audit.KindDenied && r.Detail["request"] == id:
				refused = r.Statement != nil && strings.Contains(r.Statement.Text, what) && r.Detail["refused"] == "approval withdrawn: "+why
				session = r.Session
			case r.Kind == audit.KindStatement && r.Statement != nil && strings.Contains(r.Statement.Text, what):
				t.Errorf("the withdrawn statement is recorded as run: %+v", r)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if withdrawn && refused {
			return session
		}
	}
	t.Fatalf("the audit log does not record request %s withdrawn (%v) and its statement refused (%v) because %s", id, withdrawn, refused, why)
	return ""
}

// TestApprovalWithdrawnWhenTheClientIsKilled: psql, killed (SIGKILL) while its DDL waits for approval,
// withdraws the request: it leaves the pending list, approving it afterwards answers 410 saying why,
// the table does not exist in PostgreSQL, and the audit log records the withdrawal and the refusal.
func TestApprovalWithdrawnWhenTheClientIsKilled(t *testing.T) {
	s, b := shared(t)
	admin := withdrawTables(t, s)
	table := fmt.Sprintf("killed_%d", time.Now().UnixNano())
	cmd := startPsql(t, b, clientFiles(t, s, stack.PersonaMigrator), "CREATE TABLE "+withdrawSchema+"."+table+" (a int)")
	req := waitPending(t, b, table)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, b, req.ID)
	if code, body := resolve(t, b, req.ID, "approve"); code != http.StatusGone || !strings.Contains(body, "withdrawn") || !strings.Contains(body, "the client disconnected") {
		t.Fatalf("approving after the client was killed: %d %q; want 410 saying the client disconnected", code, body)
	}
	waitWithdrawalRecorded(t, b, req.ID, table, "the client disconnected")
	if tableExists(t, admin, table) {
		t.Fatal("the DDL of a killed client ran")
	}
}

// TestApprovalWithdrawnOnCancelRequest: a client that cancels its held statement (pgx sending a
// CancelRequest when its context ends; psql on SIGINT, as on Ctrl-C) gets 57014 noting the withdrawal;
// approving afterwards answers 410 and runs nothing; pgx's session goes on.
func TestApprovalWithdrawnOnCancelRequest(t *testing.T) {
	s, b := shared(t)
	admin := withdrawTables(t, s)
	t.Run("pgx", func(t *testing.T) {
		conn := connect(t, s, b, stack.PersonaMigrator, func(cfg *pgx.ConnConfig) {
			cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
				return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: time.Minute}
			}
		})
		table := fmt.Sprintf("cancelled_%d", time.Now().UnixNano())
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(ctx, "CREATE TABLE "+withdrawSchema+"."+table+" (a int)")
			done <- err
		}()
		req := waitPending(t, b, table)
		cancel()
		err := <-done
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" || !strings.Contains(pe.Detail, "approval request "+req.ID+" was withdrawn") {
			t.Fatalf("cancelled statement: %v (%+v); want 57014 noting the withdrawal", err, pe)
		}
		if code, body := resolve(t, b, req.ID, "approve"); code != http.StatusGone || !strings.Contains(body, "the client sent a cancel request") {
			t.Fatalf("approving a cancelled request: %d %q; want 410 saying the client cancelled it", code, body)
		}
		var one int
		if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("the session after the cancel: %v", err)
		}
		waitWithdrawalRecorded(t, b, req.ID, table, "the client sent a cancel request")
		if tableExists(t, admin, table) {
			t.Fatal("a cancelled DDL ran")
		}
	})
	t.Run("psql", func(t *testing.T) {
		table := fmt.Sprintf("interrupted_%d", time.Now().UnixNano())
		cmd := startPsql(t, b, clientFiles(t, s, stack.PersonaMigrator), "CREATE TABLE "+withdrawSchema+"."+table+" (a int)")
		req := waitPending(t, b, table)
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		got := cmd.out.String()
		if err == nil || !strings.Contains(got, "canceling statement due to user request") || !strings.Contains(got, "approval request "+req.ID+" was withdrawn") {
			t.Fatalf("psql after SIGINT: %v\n%s", err, got)
		}
		if code, _ := resolve(t, b, req.ID, "approve"); code != http.StatusGone {
			t.Fatalf("approving an interrupted request: %d, want 410", code)
		}
		waitWithdrawalRecorded(t, b, req.ID, table, "the client sent a cancel request")
		if tableExists(t, admin, table) {
			t.Fatal("an interrupted DDL ran")
		}
	})
}

// TestApprovalWhileConnectedRunsTheDDL is the control: approved while its client waits, the DDL runs
// and its table exists in PostgreSQL.
func TestApprovalWhileConnectedRunsTheDDL(t *testing.T) {
	s, b := shared(t)
	admin := withdrawTables(t, s)
	conn := connect(t, s, b, stack.PersonaMigrator)
	table := fmt.Sprintf("approved_%d", time.Now().UnixNano())
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "CREATE TABLE "+withdrawSchema+"."+table+" (a int)")
		done <- err
	}()
	req := waitPending(t, b, table)
	if code, body := resolve(t, b, req.ID, "approve"); code != http.StatusOK {
		t.Fatalf("approve: %d %q", code, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("approved DDL: %v", err)
	}
	if !tableExists(t, admin, table) {
		t.Fatal("the approved DDL did not run")
	}
	if _, err := admin.Exec(t.Context(), "DROP TABLE "+withdrawSchema+"."+table); err != nil {
		t.Fatal(err)
	}
}

// psqlProc is a psql running one statement, with its output.
type psqlProc struct {
	*exec.Cmd
	out bytes.Buffer // stdout and stderr; read once it has exited
}

// startPsql starts psql running sql through broker b as the persona whose SVID files are f.
func startPsql(t *testing.T, b *stack.Broker, f *stack.ClientFiles, sql string) *psqlProc {
	t.Helper()
	_, port, _ := net.SplitHostPort(b.Addr)
	p := &psqlProc{Cmd: exec.Command("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)}
	p.Env = append(os.Environ(), "PGHOST=localhost", "PGPORT="+port, "PGDATABASE=shop", "PGSSLMODE=verify-full",
		"PGCONNECT_TIMEOUT=10", "PGUSER=agent", "PGSSLCERT="+f.Cert, "PGSSLKEY="+f.Key, "PGSSLROOTCERT="+f.RootCert)
	p.Stdout, p.Stderr = &p.out, &p.out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.ProcessState == nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	})
	return p
}

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/approval"
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
		mu.Lock()
		told := len(notices) > 0 && strings.Contains(notices[len(notices)-1], req.ID)
		mu.Unlock()
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

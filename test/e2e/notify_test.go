package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/notify"
	"github.com/svidbroker/svidbroker/test/stack"
)

// hookReceiver is a real HTTP receiver of the broker's notifications: it keeps each request's
// path, headers and body.
type hookReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []hookRequest
}

type hookRequest struct {
	path   string
	header http.Header
	body   []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		r.got = append(r.got, hookRequest{path: req.URL.Path, header: req.Header.Clone(), body: body})
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// await waits until a request for which match holds has arrived, and returns it.
func (r *hookReceiver) await(t *testing.T, what string, match func(hookRequest) bool) hookRequest {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		for _, got := range r.got {
			if match(got) {
				r.mu.Unlock()
				return got
			}
		}
		r.mu.Unlock()
	}
	t.Fatalf("no %s arrived", what)
	return hookRequest{}
}

func (r *hookReceiver) all() []hookRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookRequest(nil), r.got...)
}

// TestHeldStatementIsNotified: a broker with a notify block tells a webhook, signed, and a Slack
// incoming webhook of the migrator's held DDL and of its approval, with the agent, the target, the
// statement and a console link. The session had read a redacted column first: its value, the
// webhook's secret and the Slack URL's token are in no notification and not in the broker's log.
func TestHeldStatementIsNotified(t *testing.T) {
	s, _ := shared(t)
	hook, slack := newHookReceiver(t), newHookReceiver(t)
	secret := fmt.Sprintf("canary-webhook-secret-%d-0123456789abcdef", time.Now().UnixNano())
	token := fmt.Sprintf("canary-slack-token-%d", time.Now().UnixNano())
	broker, err := s.Persona(stack.PersonaBroker)
	if err != nil {
		t.Fatal(err)
	}
	secretFile, slackFile := filepath.Join(s.Dir, "notify-webhook.secret"), filepath.Join(s.Dir, "notify-slack.url")
	for path, content := range map[string]string{secretFile: secret + "\n", slackFile: slack.URL + "/services/T0/B0/" + token + "\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, int(broker.UID), int(broker.UID)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-notify", Binary: brokerBin, Extra: fmt.Sprintf(`
notify {
  console_url = "https://approvals.example.com"
  webhook {
    url         = %q
    secret_file = %q
  }
  slack {
    url_file = %q
  }
}
`, hook.URL+"/svidbroker", secretFile, slackFile)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()

	// A personal value, which the migrator's policies redact.
	canary := fmt.Sprintf("canary-ssn-%d", time.Now().UnixNano())
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(t.Context(), "INSERT INTO customers (id, name, email, ssn) VALUES (9001, 'Notify', 'notify@example.com', $1) ON CONFLICT (id) DO UPDATE SET ssn = EXCLUDED.ssn", canary); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(context.Background(), "DELETE FROM customers WHERE id = 9001")

	conn := connect(t, s, b, stack.PersonaMigrator)
	var ssn string
	if err := conn.QueryRow(t.Context(), "SELECT ssn FROM customers WHERE id = 9001").Scan(&ssn); err != nil || ssn == canary {
		t.Fatalf("the migrator read ssn %q (%v): it should be redacted", ssn, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "CREATE TEMP TABLE notify_held (a int)")
		done <- err
	}()
	req := waitPending(t, b, "notify_held")

	payloadOf := func(r hookRequest) notify.Payload {
		var p notify.Payload
		_ = json.Unmarshal(r.body, &p)
		return p
	}
	raised := hook.await(t, "webhook of the raised request", func(r hookRequest) bool {
		p := payloadOf(r)
		return p.Event == "raised" && p.Request.ID == req.ID
	})
	if err := notify.Verify([]byte(secret), raised.header.Get(notify.SignatureHeader), raised.body, time.Now(), 0); err != nil {
		t.Fatalf("the webhook's signature does not verify: %v", err)
	}
	if err := notify.Verify([]byte(secret+"x"), raised.header.Get(notify.SignatureHeader), raised.body, time.Now(), 0); err == nil {
		t.Fatal("the signature verifies under another secret")
	}
	p := payloadOf(raised)
	migrator := mustPersonaID(t, s, stack.PersonaMigrator)
	if raised.path != "/svidbroker" || p.Request.SPIFFEID != migrator || p.Request.Target != "shop" ||
		p.Request.Operation != "CREATE TEMP TABLE notify_held (a int)" || len(p.Request.Policies) == 0 || p.Request.Policies[0] != "migrator-ddl-hold" ||
		p.ConsoleURL != "https://approvals.example.com/approvals/"+req.ID || raised.header.Get(notify.EventHeader) != "raised" {
		t.Fatalf("raised: %s %s", raised.path, raised.body)
	}
	slackRaised := slack.await(t, "Slack message of the raised request", func(r hookRequest) bool {
		return strings.Contains(string(r.body), req.ID) && strings.Contains(string(r.body), "Approval requested")
	})
	for _, want := range []string{migrator, "notify_held", "https://approvals.example.com/approvals/" + req.ID} {
		if !strings.Contains(string(slackRaised.body), want) {
			t.Fatalf("the Slack message lacks %q: %s", want, slackRaised.body)
		}
	}
	if slackRaised.path != "/services/T0/B0/"+token {
		t.Fatalf("Slack message posted to %q", slackRaised.path)
	}

	httpReq, _ := http.NewRequest("POST", "http://"+b.AdminAddr+"/approvals/"+req.ID+"/approve", nil)
	httpReq.Header.Set("X-Approver", "dba@example.com")
	resp, err := http.DefaultClient.Do(httpReq)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatalf("the approved statement: %v", err)
	}
	approved := hook.await(t, "webhook of the approval", func(r hookRequest) bool {
		p := payloadOf(r)
		return p.Event == "approved" && p.Request.ID == req.ID
	})
	if err := notify.Verify([]byte(secret), approved.header.Get(notify.SignatureHeader), approved.body, time.Now(), 0); err != nil {
		t.Fatalf("approved: %v", err)
	}
	if p := payloadOf(approved); p.By != "dba@example.com" || p.Delivery == payloadOf(raised).Delivery {
		t.Fatalf("approved: %s", approved.body)
	}
	slack.await(t, "Slack message of the approval", func(r hookRequest) bool {
		return strings.Contains(string(r.body), "Approved by dba@example.com")
	})

	// The counters, on the admin listener.
	resp, err = http.Get("http://" + b.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`svidbroker_notifications_total{outcome="sent",sink="webhook"} 2`, `svidbroker_notifications_total{outcome="sent",sink="slack"} 2`} {
		if !strings.Contains(string(exposition), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}

	var sent strings.Builder
	for _, r := range append(hook.all(), slack.all()...) {
		sent.Write(r.body)
		for k, v := range r.header {
			sent.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	log, err := os.ReadFile(b.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"notifications": sent.String(), "the broker's log": string(log)} {
		for _, leak := range []string{canary, secret, token} {
			if strings.Contains(text, leak) {
				t.Fatalf("%s hold %q", what, leak)
			}
		}
	}
}

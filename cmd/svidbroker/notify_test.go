package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/approval/notify"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/metrics/metricstest"
)

// TestNotifierTellsTheWebhookOfTheQueuesRequests: serve's wiring gives the queue a notifier that
// sends its requests' events, signed, and counts them; stop delivers what is queued.
func TestNotifierTellsTheWebhookOfTheQueuesRequests(t *testing.T) {
	secret := strings.Repeat("s", 40)
	var mu sync.Mutex
	var events []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify([]byte(secret), r.Header.Get(notify.SignatureHeader), body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		events = append(events, r.Header.Get(notify.EventHeader))
		mu.Unlock()
	}))
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Notify: &config.Notify{Webhook: &config.NotifyWebhook{URL: srv.URL, SecretFile: secretFile}}}
	mtr, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	q := approval.NewQueue()
	var recs notifiedSink
	stop, err := startNotifier(t.Context(), cfg, approvers{queue: q}, &recs, mtr, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	if _, err := q.Wait(ctx, approval.Request{ID: "r1", Target: "shop", Statement: "DROP TABLE t"}); err == nil {
		t.Fatal("the wait did not expire")
	}
	// Both events are queued now; stop delivers them before it returns.
	stop()
	mu.Lock()
	got := strings.Join(events, ",")
	mu.Unlock()
	if got != "raised,expired" {
		t.Fatalf("events %q", got)
	}
	if n := counter(t, mtr, "svidbroker_notifications_total", `outcome="sent"`); n != 2 {
		t.Fatalf("sent %v", n)
	}
	// Each delivery is in the audit log: the event, the destination, that it arrived; no URL.
	recs.mu.Lock()
	var told []string
	for _, r := range recs.recs {
		if r.Kind != audit.KindApproval || r.Detail["state"] != "notified" || r.Detail["request"] != "r1" || r.Target != "shop" {
			t.Errorf("record %+v", r)
		}
		if strings.Contains(fmt.Sprint(r), srv.URL) || strings.Contains(fmt.Sprint(r), secret) {
			t.Errorf("the record quotes the webhook's URL or secret: %+v", r)
		}
		told = append(told, r.Detail["event"]+":"+r.Detail["destination"]+":"+r.Detail["outcome"])
	}
	recs.mu.Unlock()
	if got := strings.Join(told, ","); got != "raised:webhook:sent,expired:webhook:sent" {
		t.Fatalf("notified records %q", got)
	}
	if !strings.Contains(logs.String(), "approval notifications on") {
		t.Fatalf("log: %s", logs.String())
	}

	// Without an approver there is no queue: the broker says the block has nothing to notify.
	logs.Reset()
	stop, err = startNotifier(t.Context(), cfg, approvers{}, nil, mtr, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if !strings.Contains(logs.String(), "nothing to notify") {
		t.Fatalf("log: %s", logs.String())
	}
}

// counter is the value of the series of name whose labels include label.
func counter(t *testing.T, m *metrics.Metrics, name, label string) float64 {
	t.Helper()
	for _, s := range metricstest.Family(t, m.Registry(), name) {
		var labels []string
		for _, l := range s.GetLabel() {
			labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
		}
		if strings.Contains(strings.Join(labels, ","), label) {
			return s.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// notifiedSink keeps the records written to it.
type notifiedSink struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (s *notifiedSink) Write(rec audit.Record, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, rec)
	return nil
}

func (s *notifiedSink) Flush() error { return nil }

func (s *notifiedSink) AppendAsync(rec audit.Record) { _ = s.Write(rec, false) }

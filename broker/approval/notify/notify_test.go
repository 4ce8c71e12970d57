package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
)

// receiver is a real HTTP server that answers each POST with the next of its scripted statuses (200
// once they run out) and keeps what it got.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	headers  []http.Header // a Retry-After for the answer of the same index, ...
	got      []received
	arrived  chan received // each request as it arrives, if set
	hold     chan struct{} // if set, each answer waits until it is closed or the request ends
}

type received struct {
	header http.Header
	body   []byte
	path   string
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	got := received{header: req.Header.Clone(), body: body, path: req.URL.Path}
	r.mu.Lock()
	i := len(r.got)
	r.got = append(r.got, got)
	status := http.StatusOK
	if i < len(r.statuses) {
		status = r.statuses[i]
	}
	if i < len(r.headers) {
		for k, v := range r.headers[i] {
			w.Header()[k] = v
		}
	}
	arrived, hold := r.arrived, r.hold
	r.mu.Unlock()
	if arrived != nil {
		arrived <- got
	}
	if hold != nil {
		select {
		case <-hold:
		case <-req.Context().Done():
			return
		}
	}
	if status >= 300 && status < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(status)
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// counts is a Metrics that keeps its counts.
type counts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counts) Notified(sink, outcome string) { c.add(sink + "/" + outcome) }
func (c *counts) Retried(sink string)           { c.add(sink + "/retried") }
func (c *counts) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
}
func (c *counts) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

// syncBuffer is a log destination safe for the workers and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// outcome is what Delivered was told.
type outcome struct {
	ev   approval.Event
	sink string
	err  error
}

// harness runs a Notifier whose waits between attempts are recorded and skipped.
type harness struct {
	n        *Notifier
	metrics  *counts
	log      *syncBuffer
	outcomes chan outcome
	mu       sync.Mutex
	waits    []time.Duration
	stop     func()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{metrics: &counts{}, log: &syncBuffer{}, outcomes: make(chan outcome, 100)}
	cfg.Metrics = h.metrics
	cfg.Log = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Delivered = func(ev approval.Event, sink string, err error) { h.outcomes <- outcome{ev, sink, err} }
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.wait = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.waits = append(h.waits, d)
		h.mu.Unlock()
		return ctx.Err()
	}
	n.jitter = func(n int64) int64 { return n / 2 } // the middle of the jittered range
	h.n = n
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	h.stop = func() { cancel(); <-done }
	t.Cleanup(h.stop)
	return h
}

func (h *harness) next(t *testing.T) outcome {
	t.Helper()
	select {
	case o := <-h.outcomes:
		return o
	case <-time.After(30 * time.Second): // a hang, not a measurement
		t.Fatal("no delivery outcome")
		return outcome{}
	}
}

func (h *harness) recordedWaits() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.waits...)
}

func webhookConfig(t *testing.T, url string) Config {
	return Config{Webhook: &Webhook{URL: url, SecretFile: writeFile(t, "secret", string(testSecret)+"\n")}}
}

func event(kind string) approval.Event {
	return approval.Event{Kind: kind, At: time.Now().UTC(), Request: approval.Request{
		ID: "req-" + kind, Session: "sess-1", SPIFFEID: "spiffe://example.org/agent/migrator", Target: "shop",
		Statement: "CREATE TABLE audit_trail (id int)", Policies: []string{"migrator-ddl-hold"}, Decision: "dec-1",
		Created: time.Now().UTC()}}
}

// TestWebhookIsSignedAndSaysWhatHappened: the webhook's body is the documented payload, its headers
// name the event and the delivery, and its signature verifies with the shared secret.
func TestWebhookIsSignedAndSaysWhatHappened(t *testing.T) {
	r := newReceiver(t)
	cfg := webhookConfig(t, r.URL+"/hook")
	cfg.ConsoleURL = "https://console.example.com/"
	h := start(t, cfg)
	ev := event(approval.EventApproved)
	ev.By = "dba@example.com"
	h.n.Notify(ev)
	if o := h.next(t); o.err != nil || o.sink != SinkWebhook {
		t.Fatalf("delivery: %+v", o)
	}
	got := r.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	req := got[0]
	if err := Verify(testSecret, req.header.Get(SignatureHeader), req.body, time.Now(), 0); err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	var p Payload
	if err := json.Unmarshal(req.body, &p); err != nil {
		t.Fatal(err)
	}
	want := Payload{Version: 1, Delivery: req.header.Get(DeliveryHeader), Event: "approved", Time: ev.At, By: "dba@example.com",
		ConsoleURL: "https://console.example.com/approvals/req-approved",
		Request: PayloadRequest{ID: "req-approved", Session: "sess-1", SPIFFEID: "spiffe://example.org/agent/migrator",
			Target: "shop", Operation: "CREATE TABLE audit_trail (id int)", Policies: []string{"migrator-ddl-hold"},
			Decision: "dec-1", Created: ev.Request.Created}}
	if p.Delivery == "" || !p.Time.Equal(want.Time) || !p.Request.Created.Equal(want.Request.Created) {
		t.Fatalf("payload %+v", p)
	}
	p.Time, p.Request.Created = want.Time, want.Request.Created
	if pj, wj := mustJSON(t, p), mustJSON(t, want); pj != wj {
		t.Fatalf("payload\n got %s\nwant %s", pj, wj)
	}
	if req.header.Get(EventHeader) != "approved" || req.header.Get("Content-Type") != "application/json" || req.path != "/hook" {
		t.Fatalf("headers %v, path %s", req.header, req.path)
	}
	// The control: a body altered in transit does not verify.
	if err := Verify(testSecret, req.header.Get(SignatureHeader), bytes.Replace(req.body, []byte("approved"), []byte("denied"), 1), time.Now(), 0); !errors.Is(err, ErrMismatch) {
		t.Fatalf("an altered body verified: %v", err)
	}
	if h.metrics.get("webhook/sent") != 1 {
		t.Fatalf("metrics %v", h.metrics.n)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRetriesServerErrorsAndTooManyRequests: 5xx and 429 answers are retried, with waits that
// double from Backoff (jittered within half of it) and a receiver's Retry-After honoured up to
// MaxBackoff; every retry carries the same delivery ID, signed anew.
func TestRetriesServerErrorsAndTooManyRequests(t *testing.T) {
	for _, tc := range []struct {
		name      string
		statuses  []int
		after     []string
		wantWaits []time.Duration // with the jitter in the middle of its range
	}{
		{"5xx", []int{500, 502, 503, 504}, nil, []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second}},
		{"429", []int{429, 429}, nil, []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond}},
		{"429 with Retry-After", []int{429, 503}, []string{"7", "120"}, []time.Duration{7 * time.Second, 10 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t, tc.statuses...)
			for _, a := range tc.after {
				r.headers = append(r.headers, http.Header{"Retry-After": {a}})
			}
			cfg := webhookConfig(t, r.URL)
			cfg.Attempts, cfg.Backoff, cfg.MaxBackoff = len(tc.statuses)+1, time.Second, 10*time.Second
			h := start(t, cfg)
			h.n.Notify(event(approval.EventRaised))
			if o := h.next(t); o.err != nil {
				t.Fatalf("not delivered: %v", o.err)
			}
			got := r.requests()
			if len(got) != len(tc.statuses)+1 {
				t.Fatalf("%d attempts, want %d", len(got), len(tc.statuses)+1)
			}
			for i, req := range got {
				if err := Verify(testSecret, req.header.Get(SignatureHeader), req.body, time.Now(), 0); err != nil {
					t.Fatalf("attempt %d: %v", i+1, err)
				}
				if req.header.Get(DeliveryHeader) != got[0].header.Get(DeliveryHeader) {
					t.Fatalf("attempt %d has another delivery ID", i+1)
				}
			}
			if waits := h.recordedWaits(); !equalDurations(waits, tc.wantWaits) {
				t.Fatalf("waits %v, want %v", waits, tc.wantWaits)
			}
			if h.metrics.get("webhook/retried") != len(tc.statuses) || h.metrics.get("webhook/sent") != 1 {
				t.Fatalf("metrics %v", h.metrics.n)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBackoffJitterStaysWithinHalf: whatever the jitter draws, a wait is between half and all of the
// doubled backoff, capped.
func TestBackoffJitterStaysWithinHalf(t *testing.T) {
	cfg := webhookConfig(t, "https://hooks.example.com/")
	cfg.Backoff, cfg.MaxBackoff = time.Second, 8*time.Second
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, draw := range []string{"low", "high"} {
		n.jitter = func(k int64) int64 {
			if draw == "low" {
				return 0
			}
			return k - 1
		}
		for attempt, full := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second} {
			d := n.backoff(attempt + 1)
			want := full
			if draw == "low" {
				want = full - full/2
			}
			if d != want {
				t.Fatalf("%s draw, after attempt %d: %s, want %s", draw, attempt+1, d, want)
			}
		}
	}
}

// TestOtherClientErrorsAreNotRetried: a 4xx other than 429, or a redirect, fails the event at once.
func TestOtherClientErrorsAreNotRetried(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 410, 413, 422, 301, 307} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			r := newReceiver(t, status, status)
			h := start(t, webhookConfig(t, r.URL))
			h.n.Notify(event(approval.EventRaised))
			o := h.next(t)
			if o.err == nil || !strings.Contains(o.err.Error(), "not retried") {
				t.Fatalf("outcome %v", o.err)
			}
			if n := len(r.requests()); n != 1 {
				t.Fatalf("%d attempts", n)
			}
			if h.metrics.get("webhook/failed") != 1 || h.metrics.get("webhook/retried") != 0 {
				t.Fatalf("metrics %v", h.metrics.n)
			}
			if !strings.Contains(h.log.String(), "approval notification failed") {
				t.Fatalf("log: %s", h.log)
			}
		})
	}
}

// TestGivesUpAfterTheLastAttempt: a receiver that keeps failing gets Attempts attempts, then the
// event counts as failed and is logged.
func TestGivesUpAfterTheLastAttempt(t *testing.T) {
	r := newReceiver(t, 503, 503, 503, 503, 503, 503)
	cfg := webhookConfig(t, r.URL)
	cfg.Attempts = 3
	h := start(t, cfg)
	h.n.Notify(event(approval.EventRaised))
	o := h.next(t)
	if o.err == nil || !strings.Contains(o.err.Error(), "gave up after 3 attempts") {
		t.Fatalf("outcome %v", o.err)
	}
	if n := len(r.requests()); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if h.metrics.get("webhook/failed") != 1 || h.metrics.get("webhook/retried") != 2 {
		t.Fatalf("metrics %v", h.metrics.n)
	}
}

// TestAnAttemptHasADeadline: a receiver that never answers is given up on after AttemptTimeout, and
// tried again.
func TestAnAttemptHasADeadline(t *testing.T) {
	r := newReceiver(t)
	r.hold = make(chan struct{}) // never closed: every answer waits for its request to end
	cfg := webhookConfig(t, r.URL)
	cfg.Attempts, cfg.AttemptTimeout = 2, 50*time.Millisecond
	h := start(t, cfg)
	h.n.Notify(event(approval.EventRaised))
	o := h.next(t)
	if o.err == nil || !strings.Contains(o.err.Error(), "no answer within 50ms") {
		t.Fatalf("outcome %v", o.err)
	}
	if n := len(r.requests()); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
}

// TestAnEventHasADeadline: retries stop when the next would come after the event's deadline.
func TestAnEventHasADeadline(t *testing.T) {
	r := newReceiver(t, 503, 503, 503)
	r.headers = []http.Header{{"Retry-After": {"3600"}}}
	cfg := webhookConfig(t, r.URL)
	cfg.Deadline, cfg.MaxBackoff = time.Minute, time.Hour
	h := start(t, cfg)
	h.n.Notify(event(approval.EventRaised))
	o := h.next(t)
	if o.err == nil || !strings.Contains(o.err.Error(), "after the deadline") {
		t.Fatalf("outcome %v", o.err)
	}
	if n := len(r.requests()); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

// TestAFullQueueDropsWithoutBlocking: while the receiver is stuck, Notify still returns at once;
// events beyond the queue are dropped, counted and logged, and those queued go out once it answers.
func TestAFullQueueDropsWithoutBlocking(t *testing.T) {
	r := newReceiver(t)
	r.arrived, r.hold = make(chan received, 100), make(chan struct{})
	cfg := webhookConfig(t, r.URL)
	cfg.QueueSize = 2
	h := start(t, cfg)
	h.n.Notify(event("first"))
	<-r.arrived // the worker is now stuck on it
	for i := range 9 {
		ev := event(approval.EventRaised)
		ev.Request.ID = "req-" + string(rune('a'+i))
		h.n.Notify(ev) // returns although nothing moves: a session never waits here
	}
	if got := h.metrics.get("webhook/dropped"); got != 7 {
		t.Fatalf("dropped %d, want 7 (queue of 2, one in flight)", got)
	}
	logged := h.log.String()
	if c := strings.Count(logged, "approval notification dropped"); c != 7 || !strings.Contains(logged, "request=req-i") {
		t.Fatalf("%d drops logged:\n%s", c, logged)
	}
	close(r.hold)
	for range 7 + 3 { // 7 drops, then the in-flight event and the 2 queued
		h.next(t)
	}
	if got := h.metrics.get("webhook/sent"); got != 3 {
		t.Fatalf("sent %d, want 3", got)
	}
}

// TestStopDeliversWhatIsQueued: when Run's context ends, queued events still go out (within
// DrainTimeout); events after that are dropped and counted.
func TestStopDeliversWhatIsQueued(t *testing.T) {
	r := newReceiver(t)
	r.arrived, r.hold = make(chan received, 100), make(chan struct{})
	h := start(t, webhookConfig(t, r.URL))
	h.n.Notify(event("first"))
	<-r.arrived
	h.n.Notify(event(approval.EventApproved))
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	// Wait for Run to see the end of its context (Notify then drops), then let the receiver answer.
	for {
		h.n.mu.RLock()
		s := h.n.stopped
		h.n.mu.RUnlock()
		if s {
			break
		}
		time.Sleep(time.Millisecond)
	}
	h.n.Notify(event(approval.EventDenied))
	close(r.hold)
	<-stopped
	if got := len(r.requests()); got != 2 {
		t.Fatalf("%d delivered, want 2", got)
	}
	if h.metrics.get("webhook/sent") != 2 || h.metrics.get("webhook/dropped") != 1 {
		t.Fatalf("metrics %v", h.metrics.n)
	}
}

// TestQueueEventsReachTheWebhook: the approval Queue's requests raised, approved, denied, expired and
// withdrawn each become a signed webhook.
func TestQueueEventsReachTheWebhook(t *testing.T) {
	r := newReceiver(t)
	h := start(t, webhookConfig(t, r.URL))
	q := approval.NewQueue()
	q.SetNotifier(h.n)
	ctx := t.Context()

	wait := func(ctx context.Context, id string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := q.Wait(ctx, approval.Request{ID: id, SPIFFEID: "spiffe://example.org/agent", Target: "shop", Statement: "DROP TABLE t"})
			done <- err
		}()
		return done
	}
	raised := func() Payload {
		o := h.next(t)
		if o.err != nil || o.ev.Kind != approval.EventRaised {
			t.Fatalf("outcome %+v", o)
		}
		return lastPayload(t, r)
	}
	for _, verb := range []bool{true, false} {
		id := map[bool]string{true: "r-approve", false: "r-deny"}[verb]
		done := wait(ctx, id)
		if p := raised(); p.Request.ID != id || p.Request.Operation != "DROP TABLE t" {
			t.Fatalf("raised %+v", p)
		}
		if err := q.Resolve(id, verb, "dba@example.com"); err != nil {
			t.Fatal(err)
		}
		<-done
		h.next(t)
		p := lastPayload(t, r)
		if want := map[bool]string{true: "approved", false: "denied"}[verb]; p.Event != want || p.By != "dba@example.com" || p.Request.ID != id {
			t.Fatalf("resolved: %+v", p)
		}
	}

	expCtx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	done := wait(expCtx, "r-expire")
	raised()
	<-done
	h.next(t)
	if p := lastPayload(t, r); p.Event != "expired" || p.Reason == "" {
		t.Fatalf("expired: %+v", p)
	}

	wctx, withdraw := context.WithCancelCause(ctx)
	done = wait(wctx, "r-withdraw")
	raised()
	withdraw(errors.New("the client sent a cancel request"))
	<-done
	h.next(t)
	if p := lastPayload(t, r); p.Event != "withdrawn" || p.Reason != "the client sent a cancel request" {
		t.Fatalf("withdrawn: %+v", p)
	}
	for i, req := range r.requests() {
		if err := Verify(testSecret, req.header.Get(SignatureHeader), req.body, time.Now(), 0); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

func lastPayload(t *testing.T, r *receiver) Payload {
	t.Helper()
	got := r.requests()
	var p Payload
	if err := json.Unmarshal(got[len(got)-1].body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

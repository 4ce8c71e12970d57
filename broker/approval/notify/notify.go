package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
)

// Defaults and limits of Config.
const (
	DefaultQueueSize      = 256
	MaxQueueSize          = 10000
	DefaultAttempts       = 5
	MaxAttempts           = 20
	DefaultAttemptTimeout = 10 * time.Second
	DefaultDeadline       = 2 * time.Minute
	DefaultBackoff        = time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultDrainTimeout   = 5 * time.Second
	// MinSecretBytes is the shortest webhook secret accepted.
	MinSecretBytes = 32
	// maxURLFile bounds the Slack URL file.
	maxURLFile = 4 << 10
)

// Config configures a Notifier. At least one of Webhook and Slack is required.
type Config struct {
	// Webhook, if set, receives each event as a signed JSON POST.
	Webhook *Webhook
	// Slack, if set, receives each event as an incoming-webhook message.
	Slack *Slack
	// ConsoleURL is the console's base URL; payloads link to ConsoleURL/approvals/<id>. Empty: no link.
	ConsoleURL string
	// QueueSize bounds the events waiting per destination; one more is dropped. Default
	// DefaultQueueSize, at most MaxQueueSize.
	QueueSize int
	// Attempts is how many times an event is tried, the first included. Default DefaultAttempts.
	Attempts int
	// AttemptTimeout bounds one attempt, the response's head and body included. Default
	// DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// Deadline bounds one event's attempts and the waits between them. Default DefaultDeadline.
	Deadline time.Duration
	// Backoff is the wait before the first retry, doubled for each next one up to MaxBackoff; each
	// wait is jittered down to half of it. Defaults DefaultBackoff and DefaultMaxBackoff.
	Backoff, MaxBackoff time.Duration
	// DrainTimeout bounds, once Run's context ends, the delivery of the events still queued; later
	// ones are counted as failed. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Metrics, if set, counts notifications by destination and outcome.
	Metrics Metrics
	// Delivered, if set, is told the outcome of each event at each destination (nil error: sent).
	// It is called from the delivering worker and should be quick.
	Delivered func(ev approval.Event, sink string, err error)
	// Log receives warnings about events dropped or failed. Default slog.Default().
	Log *slog.Logger
}

// Webhook is a receiver of signed JSON events.
type Webhook struct {
	// URL is where events are POSTed: https, or http to a loopback address.
	URL string
	// SecretFile holds the HMAC-SHA256 key shared with the receiver (at least MinSecretBytes bytes;
	// surrounding white space is ignored).
	SecretFile string
	// CAFile, if set, is a PEM bundle the receiver's certificate is verified against, in place of the
	// system's roots.
	CAFile string
}

// Slack is an incoming webhook of Slack or a Slack-compatible chat.
type Slack struct {
	// URLFile holds the incoming webhook's URL, which is itself a credential: it is never logged.
	URLFile string
}

// Metrics counts notifications; broker/metrics' *Notifications is one.
type Metrics interface {
	// Notified counts an event's outcome at a destination: "sent", "failed" or "dropped".
	Notified(sink, outcome string)
	// Retried counts a retry of an event.
	Retried(sink string)
}

// Destination names, as metrics, logs and Delivered name them.
const (
	SinkWebhook = "webhook"
	SinkSlack   = "slack"
)

// Validate fills in defaults and rejects values a Notifier cannot work with.
func (c *Config) Validate() error {
	if c.Webhook == nil && c.Slack == nil {
		return errors.New("notify: neither a webhook nor slack is configured; add one, or leave notifications out")
	}
	if c.ConsoleURL != "" {
		if err := CheckURL(c.ConsoleURL); err != nil {
			return fmt.Errorf("notify: console_url %q: %v", c.ConsoleURL, err)
		}
	}
	if c.Webhook != nil {
		if err := CheckURL(c.Webhook.URL); err != nil {
			return fmt.Errorf("notify: webhook url %q: %v", redactURL(c.Webhook.URL), err)
		}
		if c.Webhook.SecretFile == "" {
			return errors.New("notify: webhook secret_file is required: receivers verify events with it")
		}
	}
	if c.Slack != nil && c.Slack.URLFile == "" {
		return errors.New("notify: slack url_file is required")
	}
	for _, n := range []struct {
		name     string
		v        *int
		def, max int
	}{{"queue_size", &c.QueueSize, DefaultQueueSize, MaxQueueSize}, {"attempts", &c.Attempts, DefaultAttempts, MaxAttempts}} {
		switch {
		case *n.v == 0:
			*n.v = n.def
		case *n.v < 0 || *n.v > n.max:
			return fmt.Errorf("notify: %s is %d; use 1 to %d", n.name, *n.v, n.max)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"attempt_timeout", &c.AttemptTimeout, DefaultAttemptTimeout}, {"deadline", &c.Deadline, DefaultDeadline},
		{"backoff", &c.Backoff, DefaultBackoff}, {"max_backoff", &c.MaxBackoff, DefaultMaxBackoff},
		{"drain_timeout", &c.DrainTimeout, DefaultDrainTimeout}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return fmt.Errorf("notify: %s is %s; it must be positive", d.name, *d.v)
		}
	}
	if c.MaxBackoff < c.Backoff {
		c.MaxBackoff = c.Backoff
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// CheckURL accepts an absolute https URL, or http to a loopback host (a receiver beside the broker,
// or a test's), without user info.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Host == "":
		return errors.New("not an absolute URL: write it as https://host/path")
	case u.User != nil:
		return errors.New("user info in a URL ends up in logs and proxies; authenticate the receiver with the signature instead")
	case u.Scheme == "https":
	case u.Scheme == "http" && loopback(u.Hostname()):
	case u.Scheme == "http":
		return errors.New("plain http sends approval requests readable to the network; use https (http only to a loopback address)")
	default:
		return fmt.Errorf("scheme %q; use https", u.Scheme)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL is raw without its query, which may carry a token.
func redactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
}

// Notifier queues events and delivers them. Notify is safe for concurrent use.
type Notifier struct {
	cfg   Config
	sinks []*sink
	// stopped is set once Run's context has ended: later events are dropped. Notify holds mu's read
	// lock from its check of stopped to its last send, so none is queued after Run set it.
	mu      sync.RWMutex
	stopped bool
	// wait waits d or until ctx ends; tests replace it to see the backoff without waiting.
	wait func(ctx context.Context, d time.Duration) error
	// jitter returns a number in [0, n); tests replace it.
	jitter func(n int64) int64
}

var _ approval.Notifier = (*Notifier)(nil)

// sink is one destination with its queue.
type sink struct {
	name   string
	url    string // the Slack one is a credential: never logged
	secret []byte // the webhook's HMAC key; nil for Slack
	body   func(ev approval.Event, delivery, console string) ([]byte, error)
	client *http.Client
	queue  chan job
}

type job struct {
	ev       approval.Event
	delivery string
}

// New checks cfg, reads the webhook's secret and the Slack URL from their files, and returns a
// Notifier. Events are delivered once Run runs.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{cfg: cfg, wait: sleep, jitter: randInt63n}
	if w := cfg.Webhook; w != nil {
		secret, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("notify: webhook secret_file: %w", err)
		}
		secret = bytes.TrimSpace(secret)
		if len(secret) < MinSecretBytes {
			return nil, fmt.Errorf("notify: webhook secret_file %s holds %d bytes; use at least %d random bytes (openssl rand -hex 32)",
				w.SecretFile, len(secret), MinSecretBytes)
		}
		client, err := newClient(w.CAFile)
		if err != nil {
			return nil, err
		}
		n.sinks = append(n.sinks, &sink{name: SinkWebhook, url: w.URL, secret: secret, body: webhookBody, client: client})
	}
	if s := cfg.Slack; s != nil {
		raw, err := readBounded(s.URLFile, maxURLFile)
		if err != nil {
			return nil, fmt.Errorf("notify: slack url_file: %w", err)
		}
		u := strings.TrimSpace(string(raw))
		// The URL is the credential: errors say what is wrong with it, never what it is.
		if err := CheckURL(u); err != nil {
			return nil, fmt.Errorf("notify: slack url_file %s does not hold a usable incoming-webhook URL: %v", s.URLFile, err)
		}
		client, err := newClient("")
		if err != nil {
			return nil, err
		}
		n.sinks = append(n.sinks, &sink{name: SinkSlack, url: u, body: slackBody, client: client})
	}
	for _, s := range n.sinks {
		s.queue = make(chan job, cfg.QueueSize)
	}
	for _, f := range []string{secretFile(cfg.Webhook), urlFile(cfg.Slack)} {
		if st, err := os.Stat(f); err == nil && st.Mode().Perm()&0o077 != 0 {
			cfg.Log.Warn("a notification credential file is readable by other users than its owner; chmod 600 it",
				"file", f, "mode", st.Mode().Perm().String())
		}
	}
	return n, nil
}

func secretFile(w *Webhook) string {
	if w == nil {
		return ""
	}
	return w.SecretFile
}

func urlFile(s *Slack) string {
	if s == nil {
		return ""
	}
	return s.URLFile
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(b.Len()) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b.Bytes(), nil
}

// newClient is an HTTP client that follows no redirect (a receiver answers where it was configured)
// and trusts caFile's roots, if given, or the system's.
func newClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	tr.MaxResponseHeaderBytes = 64 << 10
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("notify: webhook ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("notify: webhook ca_file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// Notify queues ev for each destination without waiting: an event that finds a destination's queue
// full (or the Notifier stopped) is dropped there, counted and logged.
func (n *Notifier) Notify(ev approval.Event) {
	j := job{ev: ev, delivery: newDelivery()}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, s := range n.sinks {
		if n.stopped {
			n.drop(s, j, "the notifier has stopped")
			continue
		}
		select {
		case s.queue <- j:
		default:
			n.drop(s, j, fmt.Sprintf("its queue is full (%d events)", cap(s.queue)))
		}
	}
}

func (n *Notifier) drop(s *sink, j job, why string) {
	n.count(s.name, "dropped")
	n.cfg.Log.Warn("approval notification dropped", "sink", s.name, "event", j.ev.Kind, "request", j.ev.Request.ID,
		"delivery", j.delivery, "reason", why)
	if n.cfg.Delivered != nil {
		n.cfg.Delivered(j.ev, s.name, fmt.Errorf("notify: %s notification dropped: %s", s.name, why))
	}
}

func (n *Notifier) count(sink, outcome string) {
	if n.cfg.Metrics != nil {
		n.cfg.Metrics.Notified(sink, outcome)
	}
}

// Run delivers queued events until ctx ends, then for at most DrainTimeout the events still queued,
// and returns once its workers have stopped. Events that come after ctx ended are dropped. Run once.
func (n *Notifier) Run(ctx context.Context) error {
	drain, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range n.sinks {
		wg.Go(func() { n.work(ctx, drain, s) })
	}
	<-ctx.Done()
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	timer := time.AfterFunc(n.cfg.DrainTimeout, cancel)
	defer timer.Stop()
	wg.Wait()
	return nil
}

// work delivers s's events in order. Once ctx ends it delivers what is queued until drain ends, and
// fails the rest.
func (n *Notifier) work(ctx, drain context.Context, s *sink) {
	for {
		select {
		case j := <-s.queue:
			n.deliver(drain, s, j)
		case <-ctx.Done():
			for {
				select {
				case j := <-s.queue:
					if drain.Err() != nil {
						n.fail(s, j, 0, errors.New("the broker stopped before it could be sent"))
						continue
					}
					n.deliver(drain, s, j)
				default:
					return
				}
			}
		}
	}
}

// newDelivery is a fresh delivery ID: 128 random bits, in hex.
func newDelivery() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}

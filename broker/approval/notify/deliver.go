package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// maxResponseBody bounds what is read of a receiver's answer (and then discarded), so that the
// connection can be reused.
const maxResponseBody = 64 << 10

// userAgent names the sender to receivers.
const userAgent = "svidbroker-notify/1"

// Headers of a webhook besides SignatureHeader.
const (
	// EventHeader names the event (raised, approved, ...), as the payload's "event".
	EventHeader = "Svidbroker-Event"
	// DeliveryHeader identifies the notification, the same on every retry, as the payload's "delivery".
	DeliveryHeader = "Svidbroker-Delivery"
)

// deliver sends j to s, retrying as the Config says, within Deadline and ctx.
func (n *Notifier) deliver(ctx context.Context, s *sink, j job) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Deadline)
	defer cancel()
	body, err := s.body(j.ev, j.delivery, n.cfg.ConsoleURL)
	if err != nil {
		n.fail(s, j, 0, fmt.Errorf("notify: encoding the %s payload: %w", s.name, err))
		return
	}
	attempt := 0
	for {
		attempt++
		retry, after, err := n.attempt(ctx, s, j, body)
		if err == nil {
			n.count(s.name, "sent")
			n.cfg.Log.Debug("approval notification sent", "sink", s.name, "event", j.ev.Kind, "request", j.ev.Request.ID,
				"delivery", j.delivery, "attempts", attempt)
			if n.cfg.Delivered != nil {
				n.cfg.Delivered(j.ev, s.name, nil)
			}
			return
		}
		if !retry || attempt >= n.cfg.Attempts {
			if retry {
				err = fmt.Errorf("%w; gave up after %d attempts", err, attempt)
			}
			n.fail(s, j, attempt, err)
			return
		}
		wait := n.backoff(attempt)
		if after > 0 {
			wait = min(after, n.cfg.MaxBackoff)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			n.fail(s, j, attempt, fmt.Errorf("%w; the next attempt would come after the deadline (%s)", err, n.cfg.Deadline))
			return
		}
		if n.cfg.Metrics != nil {
			n.cfg.Metrics.Retried(s.name)
		}
		n.cfg.Log.Debug("approval notification retried", "sink", s.name, "event", j.ev.Kind, "request", j.ev.Request.ID,
			"delivery", j.delivery, "attempt", attempt, "wait", wait, "error", err)
		if werr := n.wait(ctx, wait); werr != nil {
			n.fail(s, j, attempt, fmt.Errorf("%w; stopped waiting to retry: %v", err, werr))
			return
		}
	}
}

// attempt POSTs body to s once. It says whether a failure is worth retrying, and how long the
// receiver asked to wait first (Retry-After; 0 for no answer).
func (n *Notifier) attempt(ctx context.Context, s *sink, j job, body []byte) (retry bool, after time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		// The URL was checked at New; say nothing of it (the Slack one is a credential).
		return false, 0, fmt.Errorf("notify: %s request: %v", s.name, unwrapURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if s.secret != nil {
		req.Header.Set(EventHeader, j.ev.Kind)
		req.Header.Set(DeliveryHeader, j.delivery)
		req.Header.Set(SignatureHeader, Sign(s.secret, body, time.Now()))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return true, 0, fmt.Errorf("notify: %s: no answer within %s", s.name, n.cfg.AttemptTimeout)
		}
		return true, 0, fmt.Errorf("notify: %s: %v", s.name, unwrapURL(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return false, 0, nil
	case code == http.StatusTooManyRequests || code >= 500:
		return true, retryAfter(resp.Header.Get("Retry-After"), time.Now()),
			fmt.Errorf("notify: %s answered %d %s", s.name, code, http.StatusText(code))
	default:
		return false, 0, fmt.Errorf("notify: %s answered %d %s, which a retry would not change (not retried)", s.name, code, http.StatusText(code))
	}
}

// unwrapURL drops the URL an *url.Error quotes: the Slack URL is a credential.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter reads a Retry-After header, delay-seconds or an HTTP date; 0 for none or a bad one.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// backoff is the wait after the attempt-th failed attempt: Backoff doubled attempt-1 times, at most
// MaxBackoff, jittered down to no less than half of it.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.cfg.Backoff
	for i := 1; i < attempt && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.cfg.MaxBackoff)
	half := d / 2
	return d - half + time.Duration(n.jitter(int64(half)+1))
}

// fail counts and logs an event s could not be sent, after attempts attempts.
func (n *Notifier) fail(s *sink, j job, attempts int, err error) {
	n.count(s.name, "failed")
	n.cfg.Log.Warn("approval notification failed", "sink", s.name, "event", j.ev.Kind, "request", j.ev.Request.ID,
		"delivery", j.delivery, "attempts", attempts, "error", err)
	if n.cfg.Delivered != nil {
		n.cfg.Delivered(j.ev, s.name, err)
	}
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func randInt63n(n int64) int64 { return rand.Int64N(n) }

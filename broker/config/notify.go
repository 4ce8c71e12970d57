package config

import (
	"fmt"
	"os"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/notify"
)

// Notify configures notifications of approval requests (raised, approved, denied, expired,
// withdrawn): a signed JSON webhook, a Slack incoming webhook, or both. Without the block there are
// none.
type Notify struct {
	// ConsoleURL is the approvals console's base URL, https; notifications link to the request's page
	// under it. Default: no link.
	ConsoleURL string `hcl:"console_url,optional"`
	// QueueSize bounds the notifications waiting per destination; more are dropped (counted in
	// svidbroker_notifications_total and logged), never waited for. Default 256, at most 10000.
	QueueSize int `hcl:"queue_size,optional"`
	// Attempts is how many times a notification is tried, the first included. Default 5, at most 20.
	Attempts int `hcl:"attempts,optional"`
	// AttemptTimeout bounds one attempt. Default "10s".
	AttemptTimeout string `hcl:"attempt_timeout,optional"`
	// Deadline bounds a notification's attempts and the waits between them. Default "2m".
	Deadline string `hcl:"deadline,optional"`

	Webhook *NotifyWebhook `hcl:"webhook,block"`
	Slack   *NotifySlack   `hcl:"slack,block"`

	AttemptTimeoutD, DeadlineD time.Duration
}

// NotifyWebhook is a receiver of JSON events signed with HMAC-SHA256 (docs/notifications.md).
type NotifyWebhook struct {
	// URL is where events are POSTed: https, or http to a loopback address.
	URL string `hcl:"url"`
	// SecretFile holds the key shared with the receiver: at least 32 bytes (openssl rand -hex 32).
	SecretFile string `hcl:"secret_file"`
	// CAFile, if set, verifies the receiver's certificate in place of the system's roots.
	CAFile string `hcl:"ca_file,optional"`
}

// NotifySlack is a Slack (or Slack-compatible) incoming webhook.
type NotifySlack struct {
	// URLFile holds the incoming webhook's URL, which is a credential: it is kept out of the
	// configuration file and never logged.
	URLFile string `hcl:"url_file"`
}

// NotifyConfig is the notify block as broker/approval/notify takes it (without its Metrics, Log and
// Delivered, which the broker adds).
func (n *Notify) NotifyConfig() notify.Config {
	c := notify.Config{ConsoleURL: n.ConsoleURL, QueueSize: n.QueueSize, Attempts: n.Attempts,
		AttemptTimeout: n.AttemptTimeoutD, Deadline: n.DeadlineD}
	if w := n.Webhook; w != nil {
		c.Webhook = &notify.Webhook{URL: w.URL, SecretFile: w.SecretFile, CAFile: w.CAFile}
	}
	if s := n.Slack; s != nil {
		c.Slack = &notify.Slack{URLFile: s.URLFile}
	}
	return c
}

// notify validates the notify block, filling in defaults.
func (v *validator) notify() {
	n := v.c.Notify
	if n == nil {
		return
	}
	if n.Webhook == nil && n.Slack == nil {
		v.fail("Nothing to notify", "the notify block has neither a webhook nor a slack block: add one, or remove the block.", "notify")
	}
	if n.ConsoleURL != "" {
		if err := notify.CheckURL(n.ConsoleURL); err != nil {
			v.fail("Invalid URL", fmt.Sprintf("notify.console_url %q: %v.", n.ConsoleURL, err), "notify", "console_url")
		}
	}
	readable := func(path, what string, at ...string) {
		if _, err := os.Stat(path); err != nil {
			v.fail("Unreadable file", fmt.Sprintf("%s: %v.", what, err), at...)
		}
	}
	if w := n.Webhook; w != nil {
		if err := notify.CheckURL(w.URL); err != nil {
			v.fail("Invalid URL", fmt.Sprintf("notify.webhook.url: %v.", err), "notify", "webhook", "url")
		}
		readable(w.SecretFile, "notify.webhook.secret_file (the key receivers verify signatures with)", "notify", "webhook", "secret_file")
		if w.CAFile != "" {
			readable(w.CAFile, "notify.webhook.ca_file", "notify", "webhook", "ca_file")
		}
	}
	if s := n.Slack; s != nil {
		readable(s.URLFile, "notify.slack.url_file (the incoming webhook's URL)", "notify", "slack", "url_file")
	}
	bounded := func(p *int, def, max int, name string) {
		switch {
		case *p == 0:
			*p = def
		case *p < 0 || *p > max:
			v.fail("Invalid value", fmt.Sprintf("notify.%s is %d; use 1 to %d.", name, *p, max), "notify", name)
		}
	}
	bounded(&n.QueueSize, notify.DefaultQueueSize, notify.MaxQueueSize, "queue_size")
	bounded(&n.Attempts, notify.DefaultAttempts, notify.MaxAttempts, "attempts")
	n.AttemptTimeoutD = v.duration(n.AttemptTimeout, notify.DefaultAttemptTimeout, "notify", "attempt_timeout")
	n.DeadlineD = v.duration(n.Deadline, notify.DefaultDeadline, "notify", "deadline")
}

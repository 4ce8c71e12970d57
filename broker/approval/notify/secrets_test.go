package notify

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/approval"
)

// Canaries: the webhook's secret, and the token part of the Slack URL (Slack's URLs are credentials).
const (
	canarySecret = "canary-webhook-secret-5b0f7a2c9e41d6b3"
	canaryToken  = "canary-slack-token-XyZ9qR7tW2"
)

// TestNoSecretInPayloadsLogsOrErrors: neither the webhook's secret nor the Slack URL appears in what
// is sent, in the log or in a delivery error, when deliveries work and when they fail.
func TestNoSecretInPayloadsLogsOrErrors(t *testing.T) {
	hook := newReceiver(t)
	slack := newReceiver(t)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connections are refused: the error path

	for _, tc := range []struct {
		name    string
		slack   string
		wantErr bool
	}{{"delivered", slack.URL, false}, {"refused", downURL, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{
				Webhook:    &Webhook{URL: hook.URL + "/hook", SecretFile: writeFile(t, "secret", canarySecret)},
				Slack:      &Slack{URLFile: writeFile(t, "slack-url", tc.slack+"/services/T0/B0/"+canaryToken+"?t="+canaryToken+"\n")},
				ConsoleURL: "https://console.example.com",
				Attempts:   2,
			}
			h := start(t, cfg)
			ev := event(approval.EventRaised)
			h.n.Notify(ev)
			var errs []string
			for range 2 {
				o := h.next(t)
				if o.err != nil {
					errs = append(errs, o.err.Error())
				}
				if (o.err != nil) != (tc.wantErr && o.sink == SinkSlack) {
					t.Fatalf("%s: %v", o.sink, o.err)
				}
			}
			var sent []string
			for _, r := range append(hook.requests(), slack.requests()...) {
				sent = append(sent, string(r.body))
				for k, v := range r.header {
					sent = append(sent, k+": "+strings.Join(v, ","))
				}
			}
			if len(sent) == 0 {
				t.Fatal("nothing was sent")
			}
			for what, text := range map[string]string{"payloads": strings.Join(sent, "\n"), "log": h.log.String(), "errors": strings.Join(errs, "\n")} {
				for _, canary := range []string{canarySecret, canaryToken, "/services/T0"} {
					if strings.Contains(text, canary) {
						t.Fatalf("%s holds %q:\n%s", what, canary, text)
					}
				}
			}
			if tc.wantErr && !strings.Contains(h.log.String(), "approval notification failed") {
				t.Fatalf("the failure was not logged:\n%s", h.log)
			}
			if !tc.wantErr && slack.requests()[0].path != "/services/T0/B0/"+canaryToken {
				t.Fatalf("slack got %q", slack.requests()[0].path)
			}
		})
	}
}

// TestConfigErrorsNameTheProblemNotTheSecret: a bad configuration is refused with a message that
// says what to fix, and never quotes the Slack URL or the secret.
func TestConfigErrorsNameTheProblemNotTheSecret(t *testing.T) {
	secret := writeFile(t, "secret", canarySecret)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing to notify", Config{}, "neither a webhook nor slack"},
		{"plain http to another host", Config{Webhook: &Webhook{URL: "http://hooks.example.com/x", SecretFile: secret}}, "use https"},
		{"user info", Config{Webhook: &Webhook{URL: "https://user:pw@hooks.example.com/x", SecretFile: secret}}, "user info"},
		{"relative URL", Config{Webhook: &Webhook{URL: "/hook", SecretFile: secret}}, "absolute"},
		{"no secret file", Config{Webhook: &Webhook{URL: "https://hooks.example.com/x"}}, "secret_file is required"},
		{"short secret", Config{Webhook: &Webhook{URL: "https://hooks.example.com/x", SecretFile: writeFile(t, "short", "tooshort\n")}}, "at least 32"},
		{"missing secret", Config{Webhook: &Webhook{URL: "https://hooks.example.com/x", SecretFile: "/nonexistent/secret"}}, "no such file"},
		{"bad CA file", Config{Webhook: &Webhook{URL: "https://hooks.example.com/x", SecretFile: secret, CAFile: secret}}, "no PEM certificate"},
		{"slack URL over http", Config{Slack: &Slack{URLFile: writeFile(t, "u", "http://hooks.slack.com/services/T0/B0/"+canaryToken)}}, "use https"},
		{"slack file not a URL", Config{Slack: &Slack{URLFile: writeFile(t, "u", canaryToken)}}, "not an absolute URL"},
		{"slack file too large", Config{Slack: &Slack{URLFile: writeFile(t, "u", "https://hooks.slack.com/"+strings.Repeat(canaryToken, 500))}}, "larger than"},
		{"queue too large", Config{Slack: &Slack{URLFile: writeFile(t, "u", "https://hooks.slack.com/services/T0/B0/"+canaryToken)}, QueueSize: MaxQueueSize + 1}, "queue_size"},
		{"negative deadline", Config{Slack: &Slack{URLFile: writeFile(t, "u", "https://hooks.slack.com/services/T0/B0/"+canaryToken)}, Deadline: -1}, "deadline"},
		{"console URL over http", Config{Slack: &Slack{URLFile: writeFile(t, "u", "https://hooks.slack.com/services/T0/B0/"+canaryToken)}, ConsoleURL: "http://console.example.com"}, "console_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), canaryToken) || strings.Contains(err.Error(), canarySecret) {
				t.Fatalf("the error quotes a secret: %v", err)
			}
		})
	}
	// The control: the same settings, right, are accepted.
	if _, err := New(Config{Webhook: &Webhook{URL: "https://hooks.example.com/x", SecretFile: secret},
		Slack: &Slack{URLFile: writeFile(t, "u", "https://hooks.slack.com/services/T0/B0/"+canaryToken+"\n")}, ConsoleURL: "https://console.example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Webhook: &Webhook{URL: "http://127.0.0.1:9/x", SecretFile: secret}}); err != nil {
		t.Fatalf("http to loopback: %v", err)
	}
}

// TestReadableCredentialFilesAreWarnedOf: a secret file others may read is started with, and the
// log says to chmod it; one only its owner reads is not warned of.
func TestReadableCredentialFilesAreWarnedOf(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o600, false}} {
		path := writeFile(t, "secret", canarySecret)
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		var log syncBuffer
		if _, err := New(Config{Webhook: &Webhook{URL: "https://hooks.example.com/x", SecretFile: path},
			Log: slog.New(slog.NewTextHandler(&log, nil))}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(log.String(), "chmod 600"); got != tc.warn {
			t.Fatalf("mode %s: warned %v, want %v:\n%s", tc.mode, got, tc.warn, log.String())
		}
	}
}

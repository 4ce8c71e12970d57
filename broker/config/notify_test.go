package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/notify"
	"github.com/svidbroker/svidbroker/broker/config"
)

func TestNotifySettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	secret := write(t, "webhook.secret", strings.Repeat("k", 64))
	slackURL := write(t, "slack.url", "https://hooks.slack.com/services/T0/B0/token\n")
	cfg, err := config.Parse("broker.hcl", []byte(valid(ca)), plugins)
	if err != nil || cfg.Notify != nil {
		t.Fatalf("without a notify block there is none: %+v %v", cfg.Notify, err)
	}
	block := `notify {
  console_url = "https://approvals.example.com"
  attempts    = 3
  webhook {
    url         = "https://hooks.example.com/svidbroker"
    secret_file = "` + secret + `"
    ca_file     = "` + ca + `"
  }
  slack {
    url_file = "` + slackURL + `"
  }
}
`
	cfg, err = config.Parse("broker.hcl", []byte(valid(ca)+block), plugins)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Notify.NotifyConfig()
	if got.ConsoleURL != "https://approvals.example.com" || got.Attempts != 3 || got.QueueSize != notify.DefaultQueueSize ||
		got.AttemptTimeout != notify.DefaultAttemptTimeout || got.Deadline != notify.DefaultDeadline ||
		got.Webhook == nil || got.Webhook.URL != "https://hooks.example.com/svidbroker" || got.Webhook.SecretFile != secret || got.Webhook.CAFile != ca ||
		got.Slack == nil || got.Slack.URLFile != slackURL {
		t.Fatalf("settings: %+v", got)
	}
	if _, err := notify.New(got); err != nil {
		t.Fatalf("a block the config accepts is one notify accepts: %v", err)
	}
	hook := "  webhook {\n    url = \"https://hooks.example.com/x\"\n    secret_file = \"" + secret + "\"\n  }\n"
	for name, c := range map[string]struct{ body, says string }{
		"no destination":           {"  attempts = 2\n", "neither a webhook nor a slack block"},
		"plain http":               {"  webhook {\n    url = \"http://hooks.example.com/x\"\n    secret_file = \"" + secret + "\"\n  }\n", "use https"},
		"no secret file":           {"  webhook {\n    url = \"https://hooks.example.com/x\"\n  }\n", "secret_file"},
		"a missing secret file":    {"  webhook {\n    url = \"https://hooks.example.com/x\"\n    secret_file = \"/nonexistent/secret\"\n  }\n", "notify.webhook.secret_file"},
		"a missing slack URL file": {"  slack {\n    url_file = \"/nonexistent/slack.url\"\n  }\n", "notify.slack.url_file"},
		"a slack URL inline":       {"  slack {\n    url = \"https://hooks.slack.com/services/T0/B0/token\"\n  }\n", "url"},
		"a console over http":      {"  console_url = \"http://approvals.example.com\"\n" + hook, "notify.console_url"},
		"too many attempts":        {"  attempts = 50\n" + hook, "use 1 to 20"},
		"a negative queue":         {"  queue_size = -1\n" + hook, "use 1 to 10000"},
		"a bad deadline":           {"  deadline = \"soon\"\n" + hook, "deadline"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse("broker.hcl", []byte(valid(ca)+"notify {\n"+c.body+"}\n"), plugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("want an error at file:line saying %q, got %v", c.says, err)
			}
		})
	}
	cfg, err = config.Parse("broker.hcl", []byte(valid(ca)+"notify {\n  attempt_timeout = \"3s\"\n"+hook+"}\n"), plugins)
	if err != nil || cfg.Notify.NotifyConfig().AttemptTimeout != 3*time.Second {
		t.Fatalf("attempt_timeout: %v", err)
	}
}

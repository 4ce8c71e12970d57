package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/svidbroker/svidbroker/broker/approval"
)

// decoded is a Slack message as a receiver reads it.
type decoded struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type   string `json:"type"`
		Text   *slackText
		Fields []slackText
		// Elements are the actions block's buttons.
		Elements []struct {
			Type string
			Text slackText
			URL  string `json:"url"`
		}
	} `json:"blocks"`
	UnfurlLinks *bool `json:"unfurl_links"`
}

func slackOf(t *testing.T, ev approval.Event, console string) decoded {
	t.Helper()
	b, err := slackBody(ev, "d", console)
	if err != nil {
		t.Fatal(err)
	}
	var m decoded
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSlackMessageShowsTheRequest: the message names what happened, the agent, the target, the
// operation and links to the console.
func TestSlackMessageShowsTheRequest(t *testing.T) {
	ev := event(approval.EventRaised)
	m := slackOf(t, ev, "https://console.example.com")
	if !strings.Contains(m.Text, "Approval requested") || !strings.Contains(m.Text, ev.Request.SPIFFEID) || !strings.Contains(m.Text, "shop") {
		t.Fatalf("text %q", m.Text)
	}
	var all strings.Builder
	var button string
	for _, b := range m.Blocks {
		if b.Text != nil {
			all.WriteString(b.Text.Text + "\n")
			if b.Text.Type == "mrkdwn" && !b.Text.Verbatim {
				t.Fatalf("a mrkdwn text that Slack would link-ify: %+v", b.Text)
			}
		}
		for _, f := range b.Fields {
			all.WriteString(f.Text + "\n")
			if f.Type == "mrkdwn" && !f.Verbatim {
				t.Fatalf("a mrkdwn field that Slack would link-ify: %+v", f)
			}
		}
		for _, e := range b.Elements {
			button = e.URL
		}
	}
	for _, want := range []string{"Approval requested", ev.Request.SPIFFEID, "shop", ev.Request.ID, "migrator-ddl-hold", "```CREATE TABLE audit_trail (id int)```"} {
		if !strings.Contains(all.String(), want) {
			t.Fatalf("the message lacks %q:\n%s", want, all.String())
		}
	}
	if button != "https://console.example.com/approvals/req-raised" {
		t.Fatalf("console button %q", button)
	}
	if m.UnfurlLinks == nil || *m.UnfurlLinks {
		t.Fatal("links would unfurl")
	}
	if m := slackOf(t, ev, ""); len(m.Blocks) != 3 {
		t.Fatalf("without a console URL there is no button: %d blocks", len(m.Blocks))
	}
}

// TestSlackMessageEscapesAgentText: an operation's text cannot post a link, ping a channel or a
// user, or run past Slack's limits.
func TestSlackMessageEscapesAgentText(t *testing.T) {
	ev := event(approval.EventDenied)
	ev.By = "<!here> approver"
	ev.Request.Statement = "SELECT '<!channel>', '<https://evil.example/approve|Approve here>', '<@U012AB3CD>' & 1 " +
		strings.Repeat("é", 3000)
	b, err := slackBody(ev, "d", "")
	if err != nil {
		t.Fatal(err)
	}
	var m decoded
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, blk := range m.Blocks {
		texts := blk.Fields
		if blk.Text != nil {
			texts = append(texts, *blk.Text)
		}
		for _, tx := range texts {
			if tx.Type == "mrkdwn" && (strings.ContainsAny(tx.Text, "<>") || strings.Contains(strings.ReplaceAll(tx.Text, "&amp;", ""), "& ")) {
				t.Fatalf("unescaped markup in %q", tx.Text)
			}
			limit := slackTextMax
			switch {
			case blk.Type == "header":
				limit = slackHeaderMax
			case len(blk.Fields) > 0:
				limit = slackFieldMax
			}
			if len(tx.Text) > limit || !utf8.ValidString(tx.Text) {
				t.Fatalf("%s text of %d bytes (limit %d), valid UTF-8 %v", blk.Type, len(tx.Text), limit, utf8.ValidString(tx.Text))
			}
		}
	}
	op := m.Blocks[2].Text.Text
	if !strings.Contains(op, "&lt;!channel&gt;") || !strings.HasSuffix(op, "…```") {
		t.Fatalf("operation %q", op[:80])
	}
	// The header is plain text: Slack shows it as written.
	if m.Blocks[0].Text.Type != "plain_text" || m.Blocks[0].Text.Text != "Denied by <!here> approver" {
		t.Fatalf("header %+v", m.Blocks[0].Text)
	}
}

func TestEscapeSlack(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"a<b>&c", 100, "a&lt;b&gt;&amp;c"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abc…"},
		{"ab<cd", 7, "ab…"}, // an escape is never cut in two
		{"\xff<", 100, "\uFFFD&lt;"},
	} {
		if got := escapeSlack(tc.in, tc.max); got != tc.want || len(got) > tc.max {
			t.Errorf("escapeSlack(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

package notify

import (
	"encoding/json"
	"strings"

	"github.com/svidbroker/svidbroker/broker/approval"
)

// Slack's limits on a message's parts, in characters; we count bytes, which is stricter.
const (
	slackHeaderMax = 150
	slackFieldMax  = 2000
	slackTextMax   = 3000
	slackButtonMax = 75
	slackURLMax    = 3000
)

// slackMessage is an incoming-webhook message: text for notifications and clients without blocks,
// blocks for the rest.
type slackMessage struct {
	Text        string       `json:"text"`
	Blocks      []slackBlock `json:"blocks"`
	UnfurlLinks bool         `json:"unfurl_links"`
	UnfurlMedia bool         `json:"unfurl_media"`
}

type slackBlock struct {
	Type     string        `json:"type"`
	Text     *slackText    `json:"text,omitempty"`
	Fields   []*slackText  `json:"fields,omitempty"`
	Elements []slackButton `json:"elements,omitempty"`
}

// slackText is a text object. Every mrkdwn one is verbatim (no automatic links or mentions) and its
// agent-supplied parts are escaped, so a statement cannot post a link or ping a channel.
type slackText struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Verbatim bool   `json:"verbatim,omitempty"`
}

type slackButton struct {
	Type string     `json:"type"`
	Text *slackText `json:"text,omitempty"`
	URL  string     `json:"url,omitempty"`
}

func plain(s string, max int) *slackText {
	return &slackText{Type: "plain_text", Text: clipText(s, max)}
}

func mrkdwn(s string) *slackText { return &slackText{Type: "mrkdwn", Text: s, Verbatim: true} }

// slackHeadline says what happened, in a few words.
func slackHeadline(ev approval.Event) string {
	switch ev.Kind {
	case approval.EventRaised:
		return "Approval requested"
	case approval.EventApproved:
		return "Approved by " + ev.By
	case approval.EventDenied:
		return "Denied by " + ev.By
	case approval.EventExpired:
		return "Approval request expired"
	case approval.EventWithdrawn:
		return "Approval request withdrawn"
	case approval.EventUsed:
		return "Approval used"
	}
	return "Approval request " + ev.Kind
}

func slackBody(ev approval.Event, _ string, console string) ([]byte, error) {
	r := ev.Request
	head := slackHeadline(ev)
	field := func(label, value string) *slackText {
		return mrkdwn("*" + label + "*\n" + escapeSlack(value, slackFieldMax-len(label)-8))
	}
	fields := []*slackText{field("Agent", r.SPIFFEID), field("Target", r.Target), field("Request", r.ID)}
	if len(r.Policies) > 0 {
		fields = append(fields, field("Policies", strings.Join(r.Policies, ", ")))
	}
	if ev.Reason != "" {
		fields = append(fields, field("Why", ev.Reason))
	}
	blocks := []slackBlock{
		{Type: "header", Text: plain(head, slackHeaderMax)},
		{Type: "section", Fields: fields},
		{Type: "section", Text: mrkdwn("```" + escapeSlack(r.Statement, slackTextMax-6) + "```")},
	}
	if link := consoleLink(console, r.ID); link != "" && len(link) <= slackURLMax {
		label := "Review in the console"
		if ev.Kind != approval.EventRaised {
			label = "Open in the console"
		}
		blocks = append(blocks, slackBlock{Type: "actions", Elements: []slackButton{{Type: "button", Text: plain(label, slackButtonMax), URL: link}}})
	}
	return json.Marshal(slackMessage{
		Text:   escapeSlack(head+": "+r.SPIFFEID+" on "+r.Target, slackTextMax),
		Blocks: blocks,
	})
}

// slackEscaper escapes the three characters Slack's markup gives meaning to (&, <, >: links,
// mentions).
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeSlack escapes s for Slack's markup and cuts the result to at most max bytes, between escapes
// and characters, marking a cut with "…".
func escapeSlack(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if e := slackEscaper.Replace(s); len(e) <= max {
		return e
	}
	var b strings.Builder
	for _, r := range s {
		esc := slackEscaper.Replace(string(r))
		if b.Len()+len(esc) > max-len("…") {
			break
		}
		b.WriteString(esc)
	}
	return b.String() + "…"
}

// clipText cuts plain text to at most max bytes at a character boundary, marking a cut with "…".
func clipText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	t, _ := truncate(s, max-len("…"))
	return t + "…"
}

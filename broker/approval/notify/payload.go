package notify

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/svidbroker/svidbroker/broker/approval"
)

// PayloadVersion is the version of the webhook's JSON schema; a change that breaks receivers bumps it.
const PayloadVersion = 1

// MaxOperationBytes bounds the operation's text in a webhook; longer text is cut at a character
// boundary and the payload says so (operation_truncated).
const MaxOperationBytes = 8 << 10

// Payload is the webhook's JSON body (docs/notifications.md describes each field).
type Payload struct {
	Version int `json:"version"`
	// Delivery identifies this notification; retries of it carry the same, so receivers can drop
	// duplicates.
	Delivery string `json:"delivery"`
	// Event is what happened: raised, approved, denied, expired, withdrawn or used.
	Event string `json:"event"`
	// Time is when it happened.
	Time    time.Time      `json:"time"`
	Request PayloadRequest `json:"request"`
	// By names who approved or denied the request.
	By string `json:"by,omitempty"`
	// Reason says why a request expired or was withdrawn.
	Reason string `json:"reason,omitempty"`
	// ConsoleURL is the request's page in the console, when the broker knows the console's address.
	ConsoleURL string `json:"console_url,omitempty"`
}

// PayloadRequest is the request an event is about.
type PayloadRequest struct {
	ID       string `json:"id"`
	Session  string `json:"session"`
	SPIFFEID string `json:"spiffe_id"`
	Target   string `json:"target"`
	// Operation is the held operation as the audit log records it: a SQL statement, an HTTP request
	// line, an MCP tool call.
	Operation string `json:"operation"`
	// OperationTruncated says Operation was cut at MaxOperationBytes.
	OperationTruncated bool `json:"operation_truncated,omitempty"`
	// Policies are the @id of the policies that required the approval.
	Policies []string `json:"policies"`
	// Decision is the ID of the decision that held the operation, as the audit log names it.
	Decision string    `json:"decision,omitempty"`
	Created  time.Time `json:"created"`
}

// payload is ev as the webhook sends it.
func payload(ev approval.Event, delivery, console string) Payload {
	r := ev.Request
	op, cut := truncate(r.Statement, MaxOperationBytes)
	policies := r.Policies
	if policies == nil {
		policies = []string{}
	}
	return Payload{
		Version: PayloadVersion, Delivery: delivery, Event: ev.Kind, Time: ev.At.UTC(),
		Request: PayloadRequest{ID: r.ID, Session: r.Session, SPIFFEID: r.SPIFFEID, Target: r.Target,
			Operation: op, OperationTruncated: cut, Policies: policies, Decision: r.Decision, Created: r.Created.UTC()},
		By: ev.By, Reason: ev.Reason, ConsoleURL: consoleLink(console, r.ID),
	}
}

func webhookBody(ev approval.Event, delivery, console string) ([]byte, error) {
	return json.Marshal(payload(ev, delivery, console))
}

// consoleLink is the request's page under the console's base URL; "" without one.
func consoleLink(base, id string) string {
	if base == "" || id == "" {
		return ""
	}
	return strings.TrimSuffix(base, "/") + "/approvals/" + url.PathEscape(id)
}

// truncate cuts s to at most n bytes at a character boundary, and says whether it did.
func truncate(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// Package notify tells people about approval requests: a JSON webhook signed with HMAC-SHA256, and a
// Slack-compatible incoming-webhook message, for each request raised, approved, denied, expired,
// withdrawn or used.
//
// A Notifier never holds up a session. Notify only queues the event, in a bounded queue per
// destination; an event that finds its queue full is dropped, counted and logged. Workers deliver
// what is queued with a deadline per attempt and per event, retrying network errors, 5xx and 429
// answers with exponential backoff and jitter (a 429's or 503's Retry-After is honoured, within the
// backoff's cap), and giving up at once on any other answer outside 2xx: a receiver that refuses an
// event will refuse it again.
//
// What is sent is what an approver sees: the request's ID, session, the agent's SPIFFE ID, the
// target, the operation's text as the audit log records it (cut to a size limit), the deciding
// policies, who resolved it or why it ended, and a link to the console. A request carries no result
// data, so no masked value is in it; the webhook's secret and the Slack URL (itself a credential) are
// never in a payload, a log line or an error.
//
// Receivers check a webhook with Verify; docs/notifications.md has the payload's schema and how to
// verify it without this package.
package notify

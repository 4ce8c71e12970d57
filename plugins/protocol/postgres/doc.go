// Package postgres is svidbroker's PostgreSQL wire-protocol engine.
//
// A client connects with TLS and its X.509-SVID as the client certificate, through either an
// SSLRequest (sslmode=require or stronger) or direct TLS with the ALPN name "postgresql" (PostgreSQL
// 17's sslnegotiation=direct). Plaintext sessions are refused. The client's user name is ignored: who
// the client is comes from its SVID alone, and, on a listener several targets share (Router), the
// startup parameter "database" names the target. Once Cedar (or the target's allow list) lets the
// caller connect, the broker logs in to the backend itself, over verified TLS, with a credential the
// client never sees: its own SVID, or a Vault lease of the role Cedar picks for the session.
//
// Every message is framed and decoded with pgproto3, with a maximum size in both directions; the
// pre-authentication packets are read exactly, byte for byte, so that nothing a client sends in
// plaintext can be buffered and later read as if it came through TLS.
//
// Every statement, in the simple and the extended protocol, is parsed and classified by sqlclass
// and decided before it reaches the backend, through the session core's Decider (broker/session):
// by Cedar per table, function and column, holding it for a person's approval where a policy says so,
// and refusing whatever does not parse. A refused
// statement fails where it stands, as if the server had refused it. Columns a policy masks are
// masked in the rows the client receives (a computed column over one is redacted), are used
// elsewhere in a statement (WHERE, JOIN, ORDER BY, ...) only where column:use-masked permits, and
// COPY that could carry them is refused. Sessions are recorded in the audit log, each statement's
// record written before the statement runs and flushed before anything commits. The session ends
// when its SVID expires (after a grace), its lease is lost, it idles too long in a transaction, or
// the broker shuts down. Cancel requests carry the broker's own keys, never the backend's, and also
// withdraw a statement held for approval.
//
// The configuration's postgres targets are checked by ConfigValidator (backend and timeouts blocks).
package postgres

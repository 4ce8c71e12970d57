// Package postgres is svidbroker's PostgreSQL wire-protocol engine.
//
// A client connects with TLS and its X.509-SVID as the client certificate, through either an
// SSLRequest (sslmode=require or stronger) or direct TLS with the ALPN name "postgresql" (PostgreSQL
// 17's sslnegotiation=direct). Plaintext sessions are refused. The client's user name is ignored: who
// the client is comes from its SVID alone. The broker then logs in to the backend itself, over verified
// TLS, with a credential the client never sees, and relays messages between the two.
//
// Every message is framed and decoded with pgproto3, with a maximum size in both directions; the
// pre-authentication packets are read exactly, byte for byte, so that nothing a client sends in
// plaintext can be buffered and later read as if it came through TLS.
//
// Not yet here: per-statement authorization, masking and recording (they decode the messages this
// engine already frames), and cancel requests, which are refused.
package postgres

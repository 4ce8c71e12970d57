// Package forwarder is the local end of `svidbroker connect`: it lets a client that cannot present an
// X.509-SVID (psql with sslmode=disable, an HTTP or MCP client given http://127.0.0.1:PORT) reach the
// broker under the forwarder's own SPIFFE identity.
//
// The forwarder listens on loopback (or a Unix socket). For each client connection it opens a new
// mutual-TLS connection to the broker, presenting the current X.509-SVID from its source (the SPIRE
// agent's Workload API in `svidbroker connect`) and accepting the broker only by its exact SPIFFE ID.
// It keeps no key or certificate on disk.
//
// It does not parse the protocol beyond what it must to open the TLS connection: for PostgreSQL the
// startup-phase packets (the client's SSLRequest is declined, the broker's is made by the forwarder,
// CancelRequest goes over a new mutual-TLS connection as well); for HTTP nothing. Everything after
// that is relayed as bytes, one broker connection per client connection, and the broker decides on
// what it parses itself. The startup packets are decoded with pgproto3; the few lines that frame them
// are this package's own, with their own fuzz target, because the broker's reader is not exported.
//
// HTTP has a second mode, JWT mode (Config.JWTAudience): each request carries the forwarder's
// JWT-SVID as its bearer, over TLS without a client certificate, so that the token is the request's
// only identity. Adding a header means parsing HTTP, so in that mode the forwarder reads each request
// strictly with net/http (httpreq.go), refuses what two parsers could frame differently, and writes it
// again in one canonical form; responses are parsed with net/http and streamed back (httpresp.go).
// The JWT-SVID is kept for half its lifetime (token.go).
package forwarder

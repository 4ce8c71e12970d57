// Package proxy is the engine of http targets: a reverse proxy that terminates agents' TLS, names
// each request's principal (a JWT-SVID bearer, else the connection's X.509-SVID), decides each
// request with Cedar through the session core (broker/session), forwards what is permitted to the
// upstream HTTPS API with the session's Vault credential in a configured header, and masks the
// response's tagged JSON fields (jsonmask; text/event-stream event by event, sse) before the agent
// sees them.
//
// Each connection is served by net/http over a listener of that one connection, behind guard, a
// strict reader of HTTP/1.1 request heads written for this package: net/http accepts obs-fold and
// Transfer-Encoding beside Content-Length (RFC 9112 lets a server do so), which this engine refuses
// outright, so that what it decides on is the only reading of the request there is. Request bodies
// need Content-Length: a chunked request body is refused.
//
// The route table (route.Table) matches the request target strictly; the path decided on
// (route.Match.Path) is the path forwarded. The agent's Authorization, Cookie, Proxy-* and
// hop-by-hop headers never reach the upstream; the upstream's Set-Cookie and any response header
// carrying the credential never reach the agent.
//
// A session (session.Session) is opened per (connection, principal) and ended when the connection
// closes or the session's context ends (SVID or token expiry, lease loss, policy revocation).
//
// Residual risks: an upstream that echoes its own credential inside a response body passes it to the
// agent (headers are scrubbed, bodies are not searched); the request body is checked against the
// route's declared members, but its values are forwarded as the agent wrote them.
package proxy

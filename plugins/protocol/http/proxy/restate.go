package proxy

import "strings"

// restatesRequest reports whether an agent's header could make the upstream act on another request
// than the one decided: Cedar decides the request line's method and path, but common frameworks take
// the method from an override header (X-HTTP-Method-Override turns a permitted POST into a DELETE),
// the path from a rewrite header (X-Original-URL), and the scheme, host, port or path prefix from
// forwarding headers. None of them is forwarded; the forwarding claims the broker could make, it
// does not make either. A name holding "_" is not forwarded at all: CGI-style servers read it as the
// name with "-" (X_HTTP_Method_Override is X-HTTP-Method-Override), which no list could follow.
func restatesRequest(name string) bool {
	return strings.IndexByte(name, '_') >= 0 || strings.HasPrefix(name, "X-Forwarded-") || requestRestating[name]
}

// requestRestating are the headers, canonical, that frameworks read the method, target or origin of
// a request from, beside X-Forwarded-*.
var requestRestating = map[string]bool{
	"X-Http-Method-Override": true, "X-Http-Method": true, "X-Method-Override": true, "X-Original-Method": true,
	"X-Original-Url": true, "X-Rewrite-Url": true, "X-Original-Uri": true, "X-Original-Host": true, "X-Host": true,
	"X-Url-Scheme": true, "Front-End-Https": true, "X-Real-Ip": true, "Forwarded": true,
}

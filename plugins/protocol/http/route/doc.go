// Package route is an HTTP target's route table: the catalog's `route "METHOD /path/{param}"` blocks,
// parsed strictly, and the matching of a request to at most one of them.
//
// Matching decides on the path the upstream will serve. The request target is not normalized: a
// path that an upstream could read in more than one way (encoded slashes, dot segments in any
// spelling, empty segments, double encoding, control bytes, invalid percent-encoding or UTF-8) is
// refused with ErrBadTarget. The segments are decoded once, matched, and encoded again one way into
// Match.Path, which is what the engine forwards; parsing Match.Path gives the same segments, so the
// route decided on is the route the upstream is asked for.
//
// Patterns of one method never overlap: NewTable refuses two routes that some path would match
// both, so no precedence rule decides which policy applies. Literal segments are compared exactly
// (case-sensitive) with the decoded segment; methods are exact too (a GET route does not match HEAD).
//
// Match takes the request target as it came on the wire and the Host header. Go's net/http server
// replaces r.Host with an absolute-form target's host and drops the Host header, so an engine on
// net/http cannot see the two disagree: it passes r.RequestURI and the host the target is served
// under (not r.Host), which refuses an absolute-form target for any other host.
//
// A route also declares the query parameters it takes and the members of its JSON body, with their
// types (Block.Query, Block.Body): the engine refuses any other, and authz generates the Cedar
// records policies see them in (context.query, context.body) from these declarations.
//
// The config package embeds Block in a target's catalog block:
//
//	Routes []route.Block `hcl:"route,block"`
//
// and builds the target's Table with NewTable, reporting its error under the catalog's file:line.
package route

// Package sse reads and writes text/event-stream bodies event by event, as the WHATWG HTML standard
// defines them (§9.2 Server-sent events), so that the HTTP engine can mask each event's data before
// it reaches the client, without holding the stream.
//
// Reader parses lines ending in CRLF, LF or CR, skips one leading byte-order mark, joins data lines,
// keeps event, id (unless it holds NUL) and retry (only ASCII digits), and ignores other fields, as a
// browser does. A block the stream ends inside is dropped, as a browser drops it. Comments are not
// passed on: their text could carry anything, so an event only records that it had some (Comment),
// which AppendEvent writes as an empty comment line, keeping keep-alives alive.
//
// Each event is bounded by Config.MaxEvent bytes as received; a larger one is an error, and the
// engine ends the stream rather than pass it through.
package sse

// Package pin pins the definitions of an MCP target's tools, so that a server cannot change what a
// tool says it does (its description, schemas or annotations) after an operator reviewed it: the
// "rug pull". A pin is the digest of a tool's definition in a canonical JSON encoding; the engine
// checks every definition it sees against the pins before a call goes through.
//
// Pins come from a pin file an operator writes with `svidbroker mcp pin TARGET --accept` (mode
// "file"), or are taken from the first definition the broker sees and kept in its state directory
// (mode "first-sight"). A tool whose definition no longer matches its pin is refused until an
// operator accepts the new one.
//
// The canonical encoding is written here rather than taken from a library: it has to be exactly the
// one the pin files record, and it refuses inputs (duplicate keys, invalid UTF-8) that a general
// encoder would silently normalise.
package pin

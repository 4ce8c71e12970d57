// Package audit is svidbroker's tamper-evident session log.
//
// Records are appended to one chain per broker: a JSON Lines file in which every entry carries its
// sequence number, the previous entry's MAC, and its own MAC, an HMAC-SHA-256 under a key only the
// broker and auditors hold. A keyed chain detects edited, deleted, inserted and reordered records; a
// plain hash chain would not stop someone who can rewrite the file. To detect a truncated tail, the log
// periodically appends a checkpoint (sequence number and MAC) signed with an ed25519 key, as a signed
// note (golang.org/x/mod/sumdb/note), and a final one at a clean close.
//
// Append returns only once the record is on disk (fsync); concurrent appends share one write and one
// fsync (group commit). The first write or fsync error fails the log for good: every later append
// fails, so the data path refuses new work rather than run it unrecorded. An advisory lock keeps to one
// writer per chain.
package audit

// Package audit is svidbroker's tamper-evident session log.
//
// Records are appended to one chain per broker: a JSON Lines file in which every entry carries its
// sequence number, the previous entry's MAC, and its own MAC, an HMAC-SHA-256 under a key only the
// broker and auditors hold. A keyed chain detects edited, deleted, inserted and reordered records; a
// plain hash chain would not stop someone who can rewrite the file. To detect a truncated tail, the log
// periodically appends a checkpoint (sequence number and MAC) signed with an ed25519 key, as a signed
// note (golang.org/x/mod/sumdb/note), and a final one at a clean close.
//
// Writing and flushing are separate. One goroutine chains records and writes them in batches (one
// write(2) for a file store, one commit without waiting for the WAL flush for PostgreSQL): once Write
// returns, the broker process dying loses nothing. Another makes what was written durable: at once
// when asked (Append, Flush, or an urgent Write), else within the flush interval. Concurrent appenders
// share each write and each flush (group commit), and writing goes on while a flush is under way. A
// protocol engine keeps its durability promise by what it waits for: with durability "commit", a
// statement's record is written before the statement runs, and everything up to a commit point is
// flushed before the backend may commit.
//
// The first write or flush error fails the log for good, saying which records may not be durable:
// every later append fails, so the data path refuses new work rather than run it unrecorded. An
// advisory lock keeps to one writer per chain.
package audit

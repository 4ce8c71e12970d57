// Package audit is svidbroker's tamper-evident session log.
//
// Records are appended to one chain per broker, kept in a JSON Lines file or in a PostgreSQL table
// that a fleet of brokers shares (one chain each). Every entry carries its sequence number, the
// previous entry's MAC, and its own MAC, an HMAC-SHA-256 under a key only the broker and auditors
// hold. A keyed chain detects edited, deleted, inserted and reordered records; a
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
// A write or flush error fails the log, saying which records may not be durable: every append fails
// while it does, so the data path refuses new work rather than run it unrecorded. The log retries
// with backoff; once the store takes writes again, it cuts what the failed writes left (a torn last
// line), records the failure (KindWriteFailed: what it cost and the hash of the bytes cut), and takes
// records again. Opening a chain whose last line a failed write tore does the same. An advisory lock
// keeps to one writer per chain.
//
// A chain starts with a KindChainStart record, signed at once, so a missing or empty log or
// checkpoints file is detected. A log cut together with its checkpoints back to an earlier checkpoint
// looks like a log that ended there; a Witness, which receives every signed checkpoint and which the
// broker can only add to, makes such a cut show (VerifyWitnessed).
package audit

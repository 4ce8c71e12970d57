// Package credential gives each session a backend credential of its own and makes sure it dies with
// the session.
//
// A Provider (the Vault plugin) issues leased credentials from a Source: dynamic ones, or, explicitly
// weaker, a Static kv-v2 secret that has no lease to renew or revoke. The Manager acquires one lease
// per session (or, with reuse, shares one among the sessions of the same caller and target), records
// its ID (never the secret) in a journal before using it, renews it in the background while the
// session lives, and revokes it when the session ends. A renewal that fails transiently (an error the
// provider marks ErrTransient, or a call that runs out of time) is retried with jittered backoff
// while the lease has time left, and the lease is no longer handed to new sessions; if renewal fails
// for good or the lease reaches its maximum lifetime, the session's context is cancelled, so the
// protocol plugin ends the backend session itself: revoking a PostgreSQL role does not end the
// sessions it already has open. A failed
// revocation is retried in the background, a bounded number of times within a bounded time; a lease
// still unrevoked stays in the journal, and leases left there (by a crash, or by retries that gave up)
// are revoked at the next start.
package credential

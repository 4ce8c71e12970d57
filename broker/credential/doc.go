// Package credential gives each session a backend credential of its own and makes sure it dies with
// the session.
//
// A Provider (the Vault plugin) issues leased credentials. The Manager acquires one lease per session,
// records its ID (never the secret) in a journal before using it, renews it in the background while
// the session lives, and revokes it when the session ends. If a renewal fails or the lease reaches its
// maximum lifetime, the session's context is cancelled, so the protocol plugin ends the backend
// session itself: revoking a PostgreSQL role does not end the sessions it already has open. At start,
// leases left in the journal by a crash are revoked.
package credential

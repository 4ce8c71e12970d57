// Package session is the protocol-independent core of a broker session: everything between an
// engine's handshake and its wire handling that every protocol does the same way.
//
// # The contract for engine authors
//
// An engine (plugins/protocol/<name>) owns its protocol: its preamble, its TLS upgrade (Postgres and
// MySQL negotiate TLS inside their own protocol; HTTP starts with it), its framing, its
// classification of what a client asks, and its error messages. The core owns identity, decisions,
// credentials, approvals, recording and the session's life. A new engine writes only wire handling
// and classification:
//
//  1. New: build one Core per target with New(Config): how connections are authorized (Authorize,
//     Policy), SPIRE (Attest), readiness (Ready), credentials (PickRole, Lease), the audit sink and its
//     durability, the SVID grace period, and the approver (Approve, usually QueueApprover).
//
//  2. Handshake: after its own TLS handshake, the engine calls Core.Open with the connection's TLS
//     state and remote address. Open identifies the peer from its X.509-SVID, asks SPIRE what it
//     attested, decides the connect, picks the credential role, records the session's start and
//     leases the backend credential. OpenRequest.Check runs the engine's own checks of what the client
//     asked (after the start record, before the lease). On failure Open returns an *Error whose kind
//     errors.Is matches (ErrNotReady, ErrUnattested, ErrDenied, ErrNoRole, ErrAuditUnavailable,
//     ErrRefused, ErrNoCredential), with the peer and the refusing decision; the engine turns it into
//     its protocol's error (Postgres: a FATAL ErrorResponse with a SQLSTATE; HTTP: a status code) and
//     tells the client Error.Err's text, which holds no secret. What was refused is already recorded.
//
//  3. Backend: the engine connects to its backend with Session.Lease's credential (never shown to
//     the client). If that fails, or the client leaves before the session is established, it calls
//     Session.Abort with a reason that quotes nothing the client sent.
//
//  4. Run: the engine calls Session.Start with the server's context, and ends the session when
//     Session.Context is cancelled; context.Cause is an *Ended whose Why says why (ErrShutdown,
//     ErrSVIDExpired, ErrLeaseLost, ErrRevoked), for the engine to tell its client. ErrRevoked comes
//     when a policy reload no longer permits the session's connect: live sessions are decided again
//     at each new policy set.
//
//  5. Operations: for each thing the client asks, the engine classifies it and calls Session.Decide
//     with an Operation: its action, its text, a comparable key of its classification (so an allowed
//     verdict is reused within one policy epoch), the Cedar request as a function of the approval
//     state (Decide, or Part for each part of an operation of several, such as the statements of one
//     SQL string), the engine's own plan of an allowed verdict (Prepare: which columns or fields to
//     mask, kept with the verdict), and its audit record. Decide holds the operation for a person's
//     approval when a policy requires one (telling the client through Operation.Notify, and letting
//     the engine withdraw it through Operation.Withdrawable when its client cancels or leaves),
//     records it (durably if asked) and returns a Verdict: Allow, Mask, Held or Block, with the
//     deciding decision, the plan and, for Block, the reason (ErrBlocked, ErrApproval, a *Withdrawn,
//     ErrAuditUnavailable, the plan's refusal) and its Cause, for an engine that words refusals
//     itself. Masking values and anything else protocol-shaped (commit points) stays in the engine.
//
//  6. End: once both connections are closed, the engine calls Session.End with why the session
//     ended (nil when the client ended it) and when it started running: the watches stop, the
//     credential is revoked and recorded, then the end.
//
// The core never imports an engine, knows no SQL and no HTTP, and holds no package-level state:
// everything lives in a Core or a Session.
//
// The Postgres engine uses Open, Abort, Watch (the watches behind Start, over its own relay's fields,
// armed with Losses and Revocations), EndRecords (what End records) and the decision and lease
// records; it records the credential's loss itself, when the loss ends the session. It decides
// statements with a Decider of its own (the one behind Session.Decide, with its parts, plan, verdicts
// and holds), since its relay keeps the session's state and records each statement in its own terms:
// a refusal with its SQLSTATE, an allowed statement as its transaction's commit points require.
package session

// Package console is the broker's web console for the people who run it: approvers log in with
// OpenID Connect (authorization code with PKCE, through broker/approval/oidc) and see the pending
// approval requests (and approve or deny them, with a reason and a scope), the sessions of the audit
// log, live and ended, a session's replay (after the chain is verified), what a workload may do
// (authz's Can) and why a recorded decision was made.
//
// Pages are server-rendered HTML with no JavaScript. Console sessions live in memory, named by a
// random Secure, HttpOnly, SameSite=Lax cookie, and end at the earlier of the session TTL and the
// ID token's expiry, or at logout. Every POST carries the session's CSRF token and, when the browser
// sends one, an Origin equal to the console's own. Who may see a session is a Cedar decision:
// action "console:view" on the session's Target, principal the Person (see View).
package console

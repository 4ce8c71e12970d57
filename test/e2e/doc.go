// Package e2e holds svidbroker's end-to-end tests: the real broker binary, attested by the real SPIRE
// agent, in front of a real PostgreSQL, used by real clients (psql and pgx) holding only their SVIDs.
package e2e

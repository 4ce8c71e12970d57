package postgres

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

	sess "github.com/svidbroker/svidbroker/broker/session"
)

// statementFingerprint is what an approval of op binds: its Fingerprint if the engine set one, else
// libpg_query's fingerprint of its text (the statement's structure, its constants left out), prefixed
// "sql:". A text libpg_query cannot fingerprint binds nothing: the approval covers the held statement
// alone.
func statementFingerprint(op sess.Operation) string {
	if op.Fingerprint != "" {
		return op.Fingerprint
	}
	fp, err := pg_query.Fingerprint(op.Text)
	if err != nil || fp == "" {
		return ""
	}
	return "sql:" + fp
}

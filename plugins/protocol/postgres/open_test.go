package postgres

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	sess "github.com/svidbroker/svidbroker/broker/session"
)

// TestOpenRefusalsKeepTheirSQLSTATEs: each way the session core refuses a session reaches the client
// as the FATAL error it always was (SQLSTATE and message), and the handshake's error still matches the
// core's error kind.
func TestOpenRefusalsKeepTheirSQLSTATEs(t *testing.T) {
	peer := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	cases := []struct {
		kind error
		err  error
		code string
		msg  string
	}{
		{sess.ErrNotReady, errors.New("the audit log is unavailable, so new sessions are refused"), "57P03",
			"svidbroker: not accepting connections: the audit log is unavailable, so new sessions are refused"},
		{sess.ErrUnattested, errors.New("no registration entry"), "28000",
			"svidbroker: SPIRE did not confirm spiffe://example.org/agent/a: no registration entry"},
		{sess.ErrDenied, errors.New("connect to target \"shop\" denied"), "28000",
			"svidbroker: spiffe://example.org/agent/a: connect to target \"shop\" denied"},
		{sess.ErrNoRole, errors.New("credential:use denied for every role"), "28000",
			"svidbroker: spiffe://example.org/agent/a: credential:use denied for every role"},
		{sess.ErrAuditUnavailable, errors.New("disk full"), "58030",
			"svidbroker: the audit log is unavailable, so sessions are refused"},
		{sess.ErrRefused, errors.New("startup parameter \"options\" is not forwarded"), "08P01",
			"svidbroker: startup parameter \"options\" is not forwarded"},
		{sess.ErrNoCredential, errors.New("vault: permission denied at 10.0.0.7"), "08006",
			"svidbroker: no credential for target \"shop\" could be obtained"},
	}
	e := &Engine{cfg: Config{Target: "shop"}}
	for _, c := range cases {
		t.Run(c.kind.Error(), func(t *testing.T) {
			var out bytes.Buffer
			err := e.refuseOpen(pgproto3.NewBackend(nil, &out), &sess.Error{Kind: c.kind, Err: c.err, Peer: peer})
			if !errors.Is(err, c.kind) {
				t.Errorf("handshake error %v does not match %v", err, c.kind)
			}
			fe := pgproto3.NewFrontend(&out, io.Discard)
			msg, rerr := fe.Receive()
			resp, ok := msg.(*pgproto3.ErrorResponse)
			if rerr != nil || !ok {
				t.Fatalf("client got %T %v, want an ErrorResponse", msg, rerr)
			}
			if resp.Severity != "FATAL" || resp.Code != c.code || resp.Message != c.msg {
				t.Errorf("client got %s %s %q, want FATAL %s %q", resp.Severity, resp.Code, resp.Message, c.code, c.msg)
			}
			if c.kind == sess.ErrNoCredential && strings.Contains(resp.Message, "10.0.0.7") {
				t.Errorf("the client was told the credential failure's detail: %q", resp.Message)
			}
		})
	}
}

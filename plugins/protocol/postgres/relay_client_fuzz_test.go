package postgres

import (
	"bytes"
	"io"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// clientSeeds are streams of client messages for FuzzClientMessages.
func clientSeeds(tb testing.TB) [][]byte {
	enc := func(msgs ...pgproto3.Message) []byte { return encodeMessages(tb, msgs...) }
	bind := &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", ParameterFormatCodes: []int16{0},
		Parameters: [][]byte{[]byte("42")}, ResultFormatCodes: []int16{1}}
	extended := []pgproto3.Message{
		&pgproto3.Parse{Name: "s", Query: "SELECT email FROM customers WHERE id = $1", ParameterOIDs: []uint32{23}},
		bind,
		&pgproto3.Describe{ObjectType: 'P', Name: "p"},
		&pgproto3.Execute{Portal: "p", MaxRows: 10},
		&pgproto3.Sync{},
	}
	return [][]byte{
		enc(&pgproto3.Query{String: "SELECT 1"}),
		enc(&pgproto3.Query{String: "SELECT 1; SELECT email FROM customers"}, &pgproto3.Terminate{}),
		enc(&pgproto3.Query{String: "DO $$ begin perform 1; end $$"}, &pgproto3.Query{String: "SELECT 2"}),
		enc(&pgproto3.Query{String: "SET ROLE postgres"}),
		enc(&pgproto3.Query{String: "SELEC nonsense"}),
		enc(&pgproto3.Query{String: ""}),
		enc(extended...),
		enc(append(extended, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Close{ObjectType: 'P', Name: "p"},
			&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Flush{}, &pgproto3.Sync{})...),
		// A refused Parse: everything up to Sync is discarded, then the session goes on.
		enc(&pgproto3.Parse{Name: "a", Query: "COPY t FROM PROGRAM 'id'"}, &pgproto3.Bind{PreparedStatement: "a"},
			&pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 3"}),
		// Bind and Execute of what the broker never saw prepared or bound.
		enc(&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Sync{}, &pgproto3.Execute{Portal: "nope"}, &pgproto3.Sync{}),
		enc(&pgproto3.FunctionCall{Function: 1234, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("x")}}),
		enc(&pgproto3.Query{String: "COPY t FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\tx\n")}, &pgproto3.CopyDone{},
			&pgproto3.CopyFail{Message: "no"}),
		enc(&pgproto3.Parse{Query: "SELECT $1::text"}, &pgproto3.Bind{Parameters: [][]byte{nil}}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(&pgproto3.PasswordMessage{Password: "secret"}),
		enc(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{}, &pgproto3.Query{String: "DO $$ $$"}),
		append(enc(&pgproto3.Query{String: "SELECT 1"}), 'Q', 0xff, 0xff, 0xff, 0xf0),
		append(enc(&pgproto3.Sync{}), 'Q', 0x7f, 0xff, 0xff, 0xff),
		append(enc(&pgproto3.Sync{}), 'P', 0, 0, 0, 9, 'x', 0),
		// Names: a re-Parse, a Close of an unknown kind, a portal bound twice, an SQL-level PREPARE.
		enc(&pgproto3.Parse{Name: "s", Query: "SELECT lower(email) FROM customers"}, &pgproto3.Sync{},
			&pgproto3.Parse{Name: "s", Query: "SELECT 1"}, &pgproto3.Sync{},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"}, &pgproto3.Execute{Portal: "p"},
			&pgproto3.Close{ObjectType: 'X', Name: "s"}, &pgproto3.Sync{},
			&pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Close{ObjectType: 'S', Name: "s"},
			&pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}),
		enc(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Name: "a", Query: "SELECT 1"},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "a"}, &pgproto3.Sync{},
			&pgproto3.Query{String: "SAVEPOINT sp"}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "a"}, &pgproto3.Sync{},
			&pgproto3.Query{String: "ROLLBACK TO SAVEPOINT sp"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{}),
		enc(&pgproto3.Query{String: "PREPARE t AS SELECT email FROM customers"}, &pgproto3.Parse{Name: "t", Query: "SELECT 1"},
			&pgproto3.Sync{}, &pgproto3.Bind{PreparedStatement: "t"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
	}
}

// FuzzClientMessages feeds a stream of client messages to the client side of a session without a
// policy, and checks what reaches the backend:
//   - it decodes, message by message;
//   - every Query and Parse parses, and none holds an admin statement (the statement was decided);
//   - no FunctionCall reaches it (admin, and there is no policy);
//   - every Bind names a statement, and every Execute a portal, that an earlier forwarded Parse or Bind
//     created (or it is the broker's denied portal);
//   - the queue of expected answers has exactly one item per forwarded message that the backend
//     answers, of the matching kind, in order: never more than what was forwarded plus denials;
//   - every statement and portal name the broker keeps means, at the backend, the statement the broker
//     decided (serverNames replays the forwarded messages as PostgreSQL would).
func FuzzClientMessages(f *testing.F) {
	for _, seed := range clientSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var toBackend bytes.Buffer
		s := newRelaySession(t, relayIO{fromClient: bytes.NewReader(data), toBackend: &toBackend})
		if err := s.clientToBackend(); err == nil {
			t.Fatal("clientToBackend returned nil at the end of the client's stream")
		}
		// What is still buffered would go out with the next flush: it counts as forwarded.
		if err := s.backend.Flush(); err != nil {
			t.Fatalf("flushing the rest: %v", err)
		}
		checkForwarded(t, toBackend.Bytes(), snapshotQueue(&s.queue))
		checkInStep(t, s, decodeFrontendStream(t, toBackend.Bytes()))
	})
}

// checkForwarded checks the messages written to the backend against the invariants of
// FuzzClientMessages, and the queue against them.
func checkForwarded(t *testing.T, out []byte, queued []itemKind) {
	t.Helper()
	msgs, rest := splitMessages(out)
	if len(rest) != 0 {
		t.Fatalf("the backend got %d bytes that are no whole message: %q", len(rest), rest)
	}
	var want []itemKind
	stmts := map[string]bool{}
	portals := map[string]bool{}
	for i, raw := range msgs {
		msg, err := pgproto3.NewBackend(bytes.NewReader(raw), io.Discard).Receive()
		if err != nil {
			t.Fatalf("forwarded message %d does not decode: %v (%q)", i, err, raw)
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			checkForwardedSQL(t, "Query", m.String)
			want = append(want, itQuery)
		case *pgproto3.Parse:
			checkForwardedSQL(t, "Parse", m.Query)
			stmts[m.Name] = true
			want = append(want, itParse)
		case *pgproto3.Bind:
			if !stmts[m.PreparedStatement] {
				t.Fatalf("Bind of statement %q, which no forwarded Parse prepared", m.PreparedStatement)
			}
			portals[m.DestinationPortal] = true
			want = append(want, itBind)
		case *pgproto3.Execute:
			switch {
			case m.Portal == deniedPortal:
				want = append(want, itDenied)
			case !portals[m.Portal]:
				t.Fatalf("Execute of portal %q, which no forwarded Bind created", m.Portal)
			default:
				want = append(want, itExecute)
			}
		case *pgproto3.Describe:
			if m.ObjectType == 'P' {
				want = append(want, itDescribePortal)
			} else {
				want = append(want, itDescribeStmt)
			}
		case *pgproto3.Close:
			if m.ObjectType == 'P' {
				delete(portals, m.Name)
			} else {
				delete(stmts, m.Name)
			}
			want = append(want, itClose)
		case *pgproto3.Sync:
			want = append(want, itSync)
		case *pgproto3.FunctionCall:
			t.Fatalf("FunctionCall of function %d forwarded without a policy", m.Function)
		case *pgproto3.Flush, *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		case *pgproto3.Terminate:
			if i != len(msgs)-1 {
				t.Fatalf("%d messages forwarded after Terminate", len(msgs)-1-i)
			}
		default:
			t.Fatalf("forwarded %T", msg)
		}
	}
	if len(queued) > len(want) {
		t.Fatalf("queue holds %d items for %d forwarded messages the backend answers", len(queued), len(want))
	}
	if !slices.Equal(queued, want) {
		t.Fatalf("queue %v, want %v (one item per forwarded message the backend answers)", queued, want)
	}
}

// checkForwardedSQL checks that sql, which reached the backend, parses and holds no admin statement.
func checkForwardedSQL(t *testing.T, what, sql string) {
	t.Helper()
	sts, err := sqlclass.Classify(sql)
	if err != nil {
		t.Fatalf("%s %q reached the backend but does not parse: %v", what, sql, err)
	}
	for _, st := range sts {
		if st.Kind == sqlclass.KindAdmin {
			t.Fatalf("%s %q reached the backend with an admin statement (%v) and no policy", what, sql, st.AdminReasons)
		}
	}
}

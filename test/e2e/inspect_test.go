package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/test/stack"
)

// Alice's personal data in the seeded database. No masked result may contain either.
const (
	aliceEmail = "alice@example.com"
	aliceSSN   = "123-45-6789"
)

// outcome checks what a statement gave: its output, or its error.
type outcome func(out string, err error) error

// denied wants SQLSTATE 42501 with a message containing each of parts.
func denied(parts ...string) outcome {
	return func(out string, err error) error {
		if err == nil {
			return fmt.Errorf("ran, giving %q; want a denial", out)
		}
		msg := out + " " + err.Error()
		if !strings.Contains(msg, "42501") && !strings.Contains(msg, "svidbroker: ") {
			return fmt.Errorf("error %q is not the broker's denial", msg)
		}
		for _, p := range parts {
			if !strings.Contains(msg, p) {
				return fmt.Errorf("denial %q does not mention %q", msg, p)
			}
		}
		return nil
	}
}

// fails wants an error that says each of parts, and withholds nothing.
func fails(parts ...string) outcome {
	return func(out string, err error) error {
		if err == nil {
			return fmt.Errorf("ran, giving %q; want an error", out)
		}
		msg := out + " " + err.Error()
		for _, p := range parts {
			if !strings.Contains(msg, p) {
				return fmt.Errorf("error %q does not say %q", msg, p)
			}
		}
		if strings.Contains(msg, "withheld") {
			return fmt.Errorf("error %q withholds its details", msg)
		}
		return nil
	}
}

// withheld wants an error whose details the broker withheld, and neither of Alice's values in it.
func withheld(out string, err error) error {
	if err == nil {
		return fmt.Errorf("ran: %q", out)
	}
	msg := out + " " + err.Error()
	if strings.Contains(msg, aliceEmail) || strings.Contains(msg, aliceSSN) || strings.Contains(msg, "123-45") {
		return fmt.Errorf("LEAK in error: %q", msg)
	}
	if !strings.Contains(msg, "details withheld") {
		return fmt.Errorf("error not withheld: %q", msg)
	}
	return nil
}

// syntaxError wants PostgreSQL's answer to SQL that does not parse: 42601, the parser's message, and
// the position (in characters, from 1), which psql shows as a caret under the statement's line.
func syntaxError(message string, position int) outcome {
	return func(out string, err error) error {
		if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
			if pe.Code != "42601" || pe.Message != message || int(pe.Position) != position {
				return fmt.Errorf("error %s %q at %d; want 42601 %q at %d", pe.Code, pe.Message, pe.Position, message, position)
			}
			return nil
		}
		if err == nil || !strings.Contains(out, "ERROR:  "+message) {
			return fmt.Errorf("psql: %q (%v); want %q", out, err, message)
		}
		lines := strings.Split(out, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "LINE 1: ") && i+1 < len(lines) {
				if caret := strings.Index(lines[i+1], "^"); caret-len("LINE 1: ")+1 != position {
					return fmt.Errorf("psql shows the error at column %d, want %d:\n%s", caret-len("LINE 1: ")+1, position, out)
				}
				return nil
			}
		}
		return fmt.Errorf("psql shows no position: %q", out)
	}
}

// gives wants exactly want.
func gives(want string) outcome {
	return func(out string, err error) error {
		if err != nil {
			return fmt.Errorf("failed: %v (%s)", err, out)
		}
		if out != want {
			return fmt.Errorf("gave %q, want %q", out, want)
		}
		return nil
	}
}

// hidden wants success, with neither of Alice's values in the output, and every line matching ok.
func hidden(ok func(line string) bool) outcome {
	return func(out string, err error) error {
		if err != nil {
			return fmt.Errorf("failed: %v (%s)", err, out)
		}
		if strings.Contains(out, aliceEmail) || strings.Contains(out, aliceSSN) {
			return fmt.Errorf("LEAK: %q", out)
		}
		for _, l := range strings.Split(out, "\n") {
			if !ok(l) {
				return fmt.Errorf("line %q is not masked as expected", l)
			}
		}
		return nil
	}
}

func isHash(l string) bool        { return strings.HasPrefix(l, "h:") && len(l) == 34 }
func isHashOrEmpty(l string) bool { return l == "" || isHash(l) }
func isRedacted(l string) bool    { return l == "***" }
func isRedactedOrEmpty(l string) bool {
	return l == "" || isRedacted(l)
}

// inspectCase is one statement, as a persona, and what it must give.
type inspectCase struct {
	persona, sql string
	want         outcome
}

var inspectCases = []inspectCase{
	// Blocking: each construct class that escapes inspection, and writes the analyst may not make.
	{stack.PersonaAnalyst, "DELETE FROM orders", denied("DELETE on table public.orders", "no policy permits it")},
	{stack.PersonaAnalyst, "UPDATE customers SET name = 'x'", denied("UPDATE")},
	{stack.PersonaAnalyst, "INSERT INTO orders (customer_id, total) VALUES (1, 1)", denied("INSERT")},
	{stack.PersonaAnalyst, "DO $$ BEGIN PERFORM 1; END $$", denied("baseline-no-admin-sql", "DO block")},
	{stack.PersonaAnalyst, "COPY orders TO '/tmp/svidbroker-x'", denied("baseline-no-admin-sql", "server-side file")},
	{stack.PersonaAnalyst, "COPY orders TO PROGRAM 'id'", denied("baseline-no-admin-sql", "PROGRAM")},
	{stack.PersonaAnalyst, "COPY orders FROM PROGRAM 'id'", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "SET ROLE postgres", denied("baseline-no-admin-sql", "SET role")},
	{stack.PersonaAnalyst, "SET SESSION AUTHORIZATION postgres", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "SET search_path = evil, public", denied("baseline-no-admin-sql", "search_path")},
	{stack.PersonaAnalyst, "SET client_encoding = 'SJIS'", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "SET standard_conforming_strings = off", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "SELECT set_config('search_path', 'evil', false)", denied("baseline-no-admin-sql", "set_config")},
	{stack.PersonaAnalyst, "SELECT pg_read_file('/etc/passwd')", denied("baseline-no-admin-sql", "pg_read_file")},
	{stack.PersonaAnalyst, "SELECT lo_import('/etc/passwd')", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "SELECT query_to_xml('select email from customers', true, true, '')", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d", denied("DELETE on table public.orders")},
	{stack.PersonaAnalyst, "SELECT 1; DELETE FROM orders", denied("DELETE")},
	// SQL the broker cannot parse gets the parser's message and position, as from PostgreSQL (psql
	// shows the line and a caret under the position).
	{stack.PersonaAnalyst, "selec 1", syntaxError(`syntax error at or near "selec"`, 1)},
	{stack.PersonaAnalyst, "SELECT id FROM orders WHERE id = = 1", syntaxError(`syntax error at or near "="`, 34)},
	{stack.PersonaAnalyst, "CREATE TABLE analyst_t (a int)", denied("DDL")},
	{stack.PersonaAnalyst, "EXECUTE some_plan", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "CALL some_procedure()", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "GRANT SELECT ON customers TO PUBLIC", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "ALTER SYSTEM SET work_mem = '1GB'", denied("baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "COPY (SELECT email FROM customers) TO STDOUT", denied("COPY TO STDOUT")},
	{stack.PersonaAnalyst, "COPY customers TO STDOUT", denied("COPY TO STDOUT")},
	// Allowed.
	{stack.PersonaAnalyst, "SELECT count(*) FROM orders WHERE customer_id = 1", gives("2")},
	{stack.PersonaAnalyst, "BEGIN; SELECT name FROM customers WHERE id = 1; COMMIT", gives("BEGIN\nAlice\nCOMMIT")},
	{stack.PersonaAnalyst, "SET application_name = 'agent'; SHOW application_name", gives("SET\nagent")},
	{stack.PersonaAnalyst, "COPY (SELECT id, name FROM customers WHERE id = 1) TO STDOUT", gives("1\tAlice")},
	// Masking: plain columns, then every way a value can be derived from a masked column. Computing with
	// a masked column is refused (its result, errors or row count would reveal the value); a value
	// passed through untraced (a set operation, a subquery's value, a view, a function of the database)
	// is redacted, never hashed or partially shown.
	{stack.PersonaAnalyst, "SELECT id, name, email, ssn FROM customers WHERE id = 1", hidden(func(l string) bool {
		f := strings.Split(l, "|")
		return len(f) == 4 && f[0] == "1" && f[1] == "Alice" && isHash(f[2]) && isHash(f[3])
	})},
	{stack.PersonaAnalyst, "SELECT * FROM customers WHERE id = 1", hidden(func(l string) bool {
		f := strings.Split(l, "|")
		return len(f) == 4 && f[1] == "Alice" && isHash(f[2]) && isHash(f[3])
	})},
	{stack.PersonaAnalyst, "SELECT c.email AS contact FROM public.customers AS c WHERE c.id = 1", hidden(isHash)},
	{stack.PersonaAnalyst, "SELECT upper(email) FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT email || '' FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT email::varchar(100) FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT CAST(ssn AS text) FROM customers WHERE id = 1", denied("public.customers.ssn", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT substr(ssn, 1, 11) FROM customers WHERE id = 1", denied("public.customers.ssn", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT string_agg(email, ',') FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT max(ssn) FROM customers WHERE id = 1", denied("public.customers.ssn", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT row_to_json(c) FROM customers c WHERE id = 1", denied("public.customers.", "FUNCTION")},
	{stack.PersonaAnalyst, "SELECT to_jsonb(c.*)::text FROM customers c WHERE id = 1", denied("public.customers.", "FUNCTION")},
	{stack.PersonaAnalyst, "SELECT json_build_object('e', email)::text FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT ROW(id, email)::text FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT c FROM customers c WHERE id = 1", hidden(isRedactedOrEmpty)},
	{stack.PersonaAnalyst, "SELECT x FROM (SELECT email AS x FROM customers WHERE id = 1) s", hidden(isHash)},
	{stack.PersonaAnalyst, "SELECT s FROM (SELECT email FROM customers WHERE id = 1) s", hidden(isRedactedOrEmpty)},
	{stack.PersonaAnalyst, "WITH c AS (SELECT email FROM customers WHERE id = 1) SELECT * FROM c", hidden(isHash)},
	{stack.PersonaAnalyst, "WITH c AS (SELECT upper(email) AS e FROM customers WHERE id = 1) SELECT e FROM c", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT email FROM customers WHERE id = 1 UNION ALL SELECT ssn FROM customers WHERE id = 1", hidden(isRedacted)},
	{stack.PersonaAnalyst, "SELECT (SELECT ssn FROM customers WHERE id = 1)", hidden(isRedacted)},
	{stack.PersonaAnalyst, "SELECT ARRAY(SELECT email FROM customers WHERE id = 1)::text", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT CASE WHEN id = 1 THEN email END FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT x.e FROM customers c, LATERAL (SELECT c.email AS e) x WHERE c.id = 1", hidden(isHash)},
	{stack.PersonaAnalyst, "SELECT e FROM customers c, unnest(ARRAY[c.email]) AS e WHERE c.id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT email FROM customers_contacts LIMIT 1", hidden(isRedacted)},
	{stack.PersonaAnalyst, "SELECT email FROM customers_contacts WHERE id = 1", denied("view public.customers_contacts")},
	{stack.PersonaAnalyst, "SELECT * FROM customers_contacts LIMIT 1", hidden(func(l string) bool {
		f := strings.Split(l, "|")
		return len(f) == 2 && isRedacted(f[0]) && isRedacted(f[1]) // every column of a view over masked data
	})},
	{stack.PersonaAnalyst, "SELECT * FROM customer_contacts() LIMIT 1", hidden(isRedacted)},
	{stack.PersonaAnalyst, "SELECT upper(c) FROM customer_contacts() AS c LIMIT 1", denied("customer_contacts")},
	{stack.PersonaAnalyst, "SELECT query FROM pg_stat_activity", denied("baseline-no-admin-sql")},
	// An error that cannot quote data reaches the client as PostgreSQL sent it, also in a statement
	// over masked columns or a table outside the catalog.
	{stack.PersonaAnalyst, "SELECT emial FROM customers WHERE id = 1", fails(`column "emial" does not exist`)},
	{stack.PersonaAnalyst, "SELECT email FROM customerz", fails(`relation "customerz" does not exist`)},
	// A cast whose error would quote the value is computing with it: refused before it runs.
	{stack.PersonaAnalyst, "SELECT email::regclass FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT ssn::regtype FROM customers WHERE id = 1", denied("public.customers.ssn", "FUNCTION", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT ssn::int FROM customers WHERE id = 1", denied("public.customers.ssn", "FUNCTION", "column:use-masked")},
	// A value that an error message would quote is withheld, also when the error is of a class that
	// usually names only what the statement names (a value cast to regclass), for a statement over a
	// masked table whose masked columns it does not use.
	{stack.PersonaAnalyst, "SELECT email FROM customers WHERE name::regclass IS NULL", withheld},
	// Support sees partial values; the migrator sees redacted ones.
	{stack.PersonaSupport, "SELECT email, ssn FROM customers WHERE id = 1", gives("a***@example.com|***-**-6789")},
	// A partial mask's rules cannot be steered by an expression.
	{stack.PersonaSupport, "SELECT lower(email) FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION", "column:use-masked")},
	{stack.PersonaSupport, "SELECT ssn || '@x.io' FROM customers WHERE id = 1", denied("public.customers.ssn", "FUNCTION", "column:use-masked")},
	{stack.PersonaMigrator, "SELECT name, email FROM customers WHERE id = 1", gives("Alice|***")},
	// The intruder may not even connect.
	{stack.PersonaIntruder, "SELECT 1", func(out string, err error) error {
		if err == nil || !strings.Contains(out, "denied") {
			return fmt.Errorf("intruder: %q %v", out, err)
		}
		return nil
	}},
}

// prepareInspection creates a view over the customers' personal data, as a DBA would.
func prepareInspection(t *testing.T, s *stack.Stack) {
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{
		"CREATE OR REPLACE VIEW customers_contacts AS SELECT email, ssn AS reference, id FROM customers",
		"GRANT SELECT ON customers_contacts TO " + stack.BrokerDBRole,
		// STABLE: readers may call it (a volatile function is a write, which their packs do not permit).
		"CREATE OR REPLACE FUNCTION customer_contacts() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT email FROM customers ORDER BY id'",
	} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStatementsThroughPsql runs every case through psql (the simple protocol), then checks that the
// session is still usable.
func TestStatementsThroughPsql(t *testing.T) {
	s, b := shared(t)
	prepareInspection(t, s)
	files := map[string]*stack.ClientFiles{}
	for _, c := range inspectCases {
		f := files[c.persona]
		if f == nil {
			f = clientFiles(t, s, c.persona)
			files[c.persona] = f
		}
		// The view has id last; the case selects its two personal columns.
		sql := strings.Replace(c.sql, "SELECT * FROM customers_contacts", "SELECT email, reference FROM customers_contacts", 1)
		out, err := psql(t, b, f, nil, sql+";\nSELECT 'still usable'")
		if err == nil {
			out = strings.TrimSuffix(strings.TrimSuffix(out, "still usable"), "\n")
		}
		if e := c.want(out, err); e != nil {
			t.Errorf("%s: %s: %v", c.persona, c.sql, e)
		}
	}
}

// TestStatementsThroughPgx runs the SELECT cases through pgx's extended protocol, in text and binary
// result formats, with the statements prepared once and executed twice.
func TestStatementsThroughPgx(t *testing.T) {
	s, b := shared(t)
	prepareInspection(t, s)
	conns := map[string]*pgx.Conn{}
	for _, c := range inspectCases {
		if c.persona == stack.PersonaIntruder || strings.Contains(c.sql, ";") || strings.HasPrefix(c.sql, "COPY") ||
			strings.HasPrefix(c.sql, "SET") || strings.HasPrefix(c.sql, "BEGIN") {
			continue // one statement per Parse; COPY and session settings are covered by psql
		}
		conn := conns[c.persona]
		if conn == nil {
			var err error
			conn, err = pgx.ConnectConfig(t.Context(), pgxConfig(t, b, clientFiles(t, s, c.persona)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			conns[c.persona] = conn
		}
		sql := strings.Replace(c.sql, "SELECT * FROM customers_contacts", "SELECT email, reference FROM customers_contacts", 1)
		for _, format := range []int16{pgx.TextFormatCode, pgx.BinaryFormatCode} {
			for range 2 {
				out, err := pgxText(t.Context(), conn, sql, format)
				if e := c.want(out, err); e != nil {
					t.Errorf("%s: %s (format %d): %v", c.persona, c.sql, format, e)
				}
			}
		}
		if _, err := pgxText(t.Context(), conn, "SELECT 1", pgx.TextFormatCode); err != nil {
			t.Fatalf("%s: session unusable after %q: %v", c.persona, c.sql, err)
		}
	}
}

// pgxText runs sql with results in format and renders them as psql -A -t would. Binary values of text
// columns are the text itself; other binary values are decoded by pgx.
func pgxText(ctx context.Context, conn *pgx.Conn, sql string, format int16) (string, error) {
	rows, err := conn.Query(ctx, sql, pgx.QueryResultFormats{format})
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return "", err
		}
		var f []string
		for _, v := range vals {
			switch v := v.(type) {
			case nil:
				f = append(f, "")
			case map[string]any, []any:
				f = append(f, fmt.Sprint(v))
			default:
				f = append(f, fmt.Sprint(v))
			}
		}
		lines = append(lines, strings.Join(f, "|"))
	}
	if err := rows.Err(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Message, err
		}
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

// TestExtendedProtocolTracking: what runs is what was decided, across Parse, Bind, Execute and Close.
func TestExtendedProtocolTracking(t *testing.T) {
	s, b := shared(t)
	conn := connect(t, s, b, stack.PersonaAnalyst)
	pc := conn.PgConn()
	ctx := t.Context()
	// An SQL-level prepared statement cannot be bound through the protocol: the broker never decided it.
	if _, err := pc.Exec(ctx, "PREPARE sneaky AS SELECT email FROM customers").ReadAll(); err != nil {
		t.Fatal(err)
	}
	res := pc.ExecPrepared(ctx, "sneaky", nil, nil, nil).Read()
	if res.Err == nil || !strings.Contains(res.Err.Error(), "not prepared through the broker") {
		t.Fatalf("Bind to an SQL-level prepared statement: %v", res.Err)
	}
	// A cursor declared in SQL is a portal the client did not bind through the broker.
	if _, err := pc.Exec(ctx, "BEGIN; DECLARE cur CURSOR FOR SELECT email FROM customers").ReadAll(); err != nil {
		t.Fatal(err)
	}
	out, err := pc.Exec(ctx, "FETCH 1 FROM cur").ReadAll()
	if err != nil || len(out) != 1 || len(out[0].Rows) != 1 || bytes.Contains(out[0].Rows[0][0], []byte("@")) {
		t.Fatalf("FETCH from a cursor over masked data: %v %v", out, err)
	}
	if _, err := pc.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// A denied statement in a pipeline (unnamed statements, one Sync) fails where it stands, the
	// statements after it are skipped, as the server would do, and the next Sync starts afresh.
	cfg := pgxConfig(t, b, clientFiles(t, s, stack.PersonaAnalyst))
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	pipe, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close(context.Background())
	batch := &pgx.Batch{}
	batch.Queue("SELECT 1")
	batch.Queue("DELETE FROM orders")
	batch.Queue("SELECT 2")
	br := pipe.SendBatch(ctx, batch)
	var one int
	if err := br.QueryRow().Scan(&one); err != nil || one != 1 {
		t.Fatalf("first statement of the batch: %d %v", one, err)
	}
	if _, err := br.Exec(); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("denied statement in a batch: %v", err)
	}
	if _, err := br.Exec(); err == nil {
		t.Fatal("the statement after a denial in the same pipeline ran")
	}
	br.Close()
	var n int
	if err := pipe.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 2*stack.SeedCustomers {
		t.Fatalf("after the batch: %d orders, %v", n, err)
	}
	// Policies are applied again at each execution of a prepared statement.
	sd, err := pc.Prepare(ctx, "named", "SELECT email FROM customers WHERE id = $1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r := pc.ExecPrepared(ctx, sd.Name, [][]byte{[]byte("1")}, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) == aliceEmail {
			t.Fatalf("prepared statement: %v", r.Err)
		}
	}
	if err := pc.Deallocate(ctx, sd.Name); err != nil {
		t.Fatal(err)
	}
	r := pc.ExecPrepared(ctx, sd.Name, [][]byte{[]byte("1")}, nil, nil).Read()
	if r.Err == nil {
		t.Fatal("a closed statement ran")
	}
}

// TestCancelReachesTheRightBackend cancels a long statement with the broker's key (pgx sends the
// CancelRequest on a new connection, as libpq does), and checks that a wrong key cancels nothing.
func TestCancelReachesTheRightBackend(t *testing.T) {
	s, b := shared(t)
	cfg := pgxConfig(t, b, clientFiles(t, s, stack.PersonaAnalyst))
	victim, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close(context.Background())
	other, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())

	done := make(chan error, 1)
	go func() {
		_, err := victim.Exec(context.Background(), "SELECT pg_sleep(20)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	// The other session's key cancels the other session, which is idle: the victim keeps sleeping.
	if err := other.PgConn().CancelRequest(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the victim was cancelled with another session's key: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	start := time.Now()
	if err := victim.PgConn().CancelRequest(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("cancelled statement: %v", err)
		}
		t.Logf("cancelled after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the cancel request did not reach the backend")
	}
	var n int
	if err := victim.QueryRow(t.Context(), "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("session after cancel: %v", err)
	}
}

// TestInheritanceChildIsMasked: a partition or inheritance child of a masked table holds the table's
// rows under another name and other column numbers; its columns are masked as the table's.
func TestInheritanceChildIsMasked(t *testing.T) {
	s, b := shared(t)
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{
		"DROP TABLE IF EXISTS customers_archive",
		"CREATE TABLE customers_archive (note text) INHERITS (customers)",
		"INSERT INTO customers_archive (id, name, email, ssn, note) VALUES (9001, 'Zed', 'zed@example.com', '900-00-0001', 'x')",
		"GRANT SELECT ON customers_archive TO " + stack.BrokerDBRole,
	} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	// Dropped before the connection closes (defers run last in, first out): other tests count customers.
	defer func() {
		if _, err := admin.Exec(context.Background(), "DROP TABLE customers_archive"); err != nil {
			t.Errorf("drop the child table: %v", err)
		}
	}()
	out, err := psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT name, email, ssn FROM customers_archive")
	f := strings.Split(out, "|")
	if err != nil || len(f) != 3 || f[0] != "Zed" || !isHash(f[1]) || !isHash(f[2]) {
		t.Fatalf("child table: %q %v", out, err)
	}
	// Its masked columns are masked in predicates too, by its own name.
	out, err = psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT name FROM customers_archive WHERE ssn LIKE '9%'")
	if e := denied("public.customers.ssn", "WHERE")(out, err); e != nil {
		t.Errorf("child table predicate: %v", e)
	}
	out, err = psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT name FROM customers_archive WHERE note = 'x'")
	if err != nil || out != "Zed" {
		t.Errorf("child table predicate on its own column: %q %v", out, err)
	}
}

// TestDatabaseNamesTheTarget: two targets on one listener; the client's database names the target,
// which Cedar then decides (the packs let the analyst connect to "shop" only), and an unknown name is
// refused with the list of targets.
func TestDatabaseNamesTheTarget(t *testing.T) {
	s, _ := shared(t)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-router", Binary: brokerBin, NoAudit: true, SecondTarget: "shop-replica"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	f := clientFiles(t, s, stack.PersonaAnalyst)
	if out, err := psql(t, b, f, []string{"PGDATABASE=shop"}, "SELECT current_database()"); err != nil || out != "shop" {
		t.Fatalf("database shop: %q %v", out, err)
	}
	out, err := psql(t, b, f, []string{"PGDATABASE=shop-replica"}, "SELECT 1")
	if err == nil || !strings.Contains(out, `connect to target "shop-replica" denied`) {
		t.Fatalf("database shop-replica reached another target than its own: %q %v", out, err)
	}
	out, err = psql(t, b, f, []string{"PGDATABASE=nope"}, "SELECT 1")
	if err == nil || !strings.Contains(out, `no target "nope" on this listener; name one of shop, shop-replica`) {
		t.Fatalf("unknown database: %q %v", out, err)
	}
}

// Command svidbroker-mcpshop is the demo's upstream MCP server: the shop of examples/shopapi as MCP
// tools, over Streamable HTTP with TLS, in front of the demo database "shop" with its own PostgreSQL
// login. Agents never hold a credential for it: the broker injects an API token that Vault issued
// (the same api/ engine and api.tokens table as the shop API), and this server checks every
// request's token.
//
//	svidbroker-mcpshop --listen 127.0.0.1:9444 --cert server.crt --key server.key --db-file db.conn
//
// MCP is served at /mcp, for every protocol version go-sdk v1.8.0 speaks: 2026-07-28 without
// sessions, and 2025-11-25, 2025-06-18, 2025-03-26 and 2024-11-05 with Mcp-Session-Id sessions.
// Every request needs Authorization: Bearer <token> of role api-read or api-write.
//
// Tools:
//
//	get_customer {id}                       {id, name, email, ssn}, as JSON text and structuredContent
//	list_orders  {customer_id?, limit?}     {orders: [{id, customer_id, total, created_at}]}
//	query        {table: orders|customers, limit?}  {table, rows}
//	refund       {order_id, amount, reason} recorded in api.refunds (api-write only)
//	send_email   {to, subject, body}        "sent": queued in api.outbox, nothing leaves the machine (api-write only)
//	summarize    {text}                     {summary}; its description changes on demand (below)
//	ask_user     {question}                 elicitation: {action, answer}
//	draft_reply  {customer_id?, message}    sampling: {draft, model}
//
// ask_user and draft_reply ask the client: with a session (versions before 2026-07-28) by a
// server-initiated elicitation/create or sampling/createMessage on the session's stream; with
// 2026-07-28 by an input_required result that the client answers by calling again.
// Resource shop://policies/refunds (text) and prompt refund_request {order_id, reason?}.
//
// With --allow-rotate, POST /admin/rotate-description from a loopback peer (no token) changes
// summarize's description to the request body, or when the body is empty to a built-in poisoned
// description (and back on the next empty rotation); the next tools/list shows it, and sessions are
// sent notifications/tools/list_changed. It exists for tests and demos of pinned tool definitions.
// GET /healthz needs no token.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/svidbroker/svidbroker/examples/internal/shopdb"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("svidbroker-mcpshop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9444", "`host:port` to serve HTTPS on")
	certFile := fs.String("cert", "", "PEM server certificate chain (required)")
	keyFile := fs.String("key", "", "PEM private key of the certificate (required)")
	dbFile := fs.String("db-file", "", "file holding the PostgreSQL connection string of the server's own login, mode 0600 (required)")
	allowRotate := fs.Bool("allow-rotate", false, "serve POST "+RotatePath+" to loopback peers (tests and demos)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *certFile == "" || *keyFile == "" || *dbFile == "" {
		fmt.Fprintln(stderr, "svidbroker-mcpshop: --cert, --key and --db-file are required, and no arguments")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := shopdb.Open(ctx, *dbFile, 8)
	if err != nil {
		log.Error("database", "error", err)
		return 1
	}
	defer pool.Close()
	s := newShop(pgStore{db: pool}, pool, log)
	srv := &http.Server{
		Addr: *listen, Handler: s.handler(*allowRotate),
		// A response may be a stream that waits on the client (elicitation, sampling) or a session's
		// GET stream: bounded, but far above a request's.
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 10 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler().WithAttrs([]slog.Attr{slog.String("from", "net/http")}), slog.LevelWarn),
	}
	return shopdb.ServeTLS(ctx, srv, *certFile, *keyFile, log, "path", MCPPath)
}

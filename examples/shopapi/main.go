// Command svidbroker-shopapi is the demo's upstream HTTPS API: a small shop service in front of the
// demo database "shop", which svidbroker's http target "api" proxies. It is a real service with its
// own login to PostgreSQL; agents never hold a credential for it: the broker injects an API token
// that Vault issued, and this service checks every request's token against its token table.
//
//	svidbroker-shopapi --listen 127.0.0.1:9443 --cert server.crt --key server.key --db-file db.conn
//
// Routes (every one needs Authorization: Bearer <token>):
//
//	GET    /v1/customers/{id}         {"id","name","email","ssn"}
//	GET    /v1/customers?limit=N      {"items":[...]}, N from 1 to 100 (default 10)
//	GET    /v1/customers/{id}/events  text/event-stream: a few "customer" events, each data the customer JSON
//	GET    /v1/orders/{id}            {"id","customer_id","total","created_at"}
//	DELETE /v1/orders/{id}            204; the order is deleted
//	POST   /v1/refunds                {"order_id","amount","reason"} -> 201 {"id",...}; recorded in api.refunds
//
// A token is valid when the SHA-256 of its text is in api.tokens and has not expired; its role
// decides the methods: api-read may GET, api-write may GET, POST and DELETE. An unknown, expired or
// revoked token is 401; a method the role does not allow is 403. GET /healthz needs no token.
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
	fs := flag.NewFlagSet("svidbroker-shopapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9443", "`host:port` to serve HTTPS on")
	certFile := fs.String("cert", "", "PEM server certificate chain (required)")
	keyFile := fs.String("key", "", "PEM private key of the certificate (required)")
	dbFile := fs.String("db-file", "", "file holding the PostgreSQL connection string of the API's own login, mode 0600 (required)")
	sseInterval := fs.Duration("event-interval", 200*time.Millisecond, "pause between the events of /v1/customers/{id}/events")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *certFile == "" || *keyFile == "" || *dbFile == "" {
		fmt.Fprintln(stderr, "svidbroker-shopapi: --cert, --key and --db-file are required, and no arguments")
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
	api := &server{db: pool, log: log, eventInterval: *sseInterval}
	srv := newHTTPServer(*listen, api.handler())
	return shopdb.ServeTLS(ctx, srv, *certFile, *keyFile, log)
}

// newHTTPServer bounds every part of a request: header bytes and time, body time, the response's
// time (an event stream ends well within it), and idle keep-alive connections.
func newHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(slog.NewTextHandler(os.Stderr, nil).WithAttrs([]slog.Attr{slog.String("from", "net/http")}), slog.LevelWarn),
	}
}

// Command pg-agent is a minimal agent that queries PostgreSQL through svidbroker holding nothing but its
// SPIFFE identity. It takes its X.509-SVID and trust bundle from the SPIFFE Workload API, keeps both
// current as SPIRE rotates them, and connects to the broker with mutual TLS, authorizing the broker by
// its exact SPIFFE ID rather than by a DNS name. There is no password, key file or token anywhere in
// its configuration.
//
//	pg-agent -addr localhost:15432 [-db shop] [-query SQL] [-broker-id spiffe://example.org/svidbroker] [-socket unix:///path]
//
// Rows are printed one per line, columns separated by tabs, in PostgreSQL's COPY text format (NULL is
// \N; backslash, tab, newline and carriage return are escaped). A PostgreSQL error (including the
// broker's denials) is printed to stderr with its SQLSTATE, and the exit code is 1. Notices, such as
// the broker's word that a statement waits for approval (with the request's ID), are printed to
// stderr as they arrive.
//
// See README.md for running it against `make demo`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	addr := flag.String("addr", "", "host:port of the broker's PostgreSQL listener (required)")
	db := flag.String("db", "shop", "target database")
	query := flag.String("query", "SELECT id, name, email FROM customers ORDER BY id LIMIT 3", "SQL to run")
	brokerID := flag.String("broker-id", "spiffe://example.org/svidbroker", "SPIFFE ID the broker must present")
	socket := flag.String("socket", "", "Workload API socket, unix:///path or /path (default $SPIFFE_ENDPOINT_SOCKET)")
	timeout := flag.Duration("timeout", 30*time.Second, "limit for the whole run, waiting for the SVID included")
	flag.Parse()
	if *addr == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: pg-agent -addr host:port [-db shop] [-query SQL] [-broker-id ID] [-socket unix:///path]")
		os.Exit(2)
	}
	id, err := spiffeid.FromString(*brokerID)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pg-agent: -broker-id: %v\n", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err = run(ctx, *addr, *db, *query, id, *socket)
	cancel()
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			fmt.Fprintf(os.Stderr, "%s %s: %s\n", pgErr.Severity, pgErr.Code, pgErr.Message)
			if pgErr.Detail != "" {
				fmt.Fprintf(os.Stderr, "DETAIL: %s\n", pgErr.Detail)
			}
			if pgErr.Hint != "" {
				fmt.Fprintf(os.Stderr, "HINT: %s\n", pgErr.Hint)
			}
		} else {
			fmt.Fprintf(os.Stderr, "pg-agent: %v\n", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, db, query string, brokerID spiffeid.ID, socket string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}

	// The source holds the current X.509-SVID and bundles, and a background stream from the SPIRE agent
	// replaces them when they rotate. NewX509Source waits for the first SVID: the agent answers
	// PermissionDenied until it has attested this process and holds an entry for it.
	watchErr := &lastError{}
	clientOpts := []workloadapi.ClientOption{workloadapi.WithLogger(watchErr)}
	if socket != "" {
		if strings.HasPrefix(socket, "/") {
			socket = "unix://" + socket
		}
		clientOpts = append(clientOpts, workloadapi.WithAddr(socket))
	}
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(clientOpts...))
	if err != nil {
		if last := watchErr.get(); last != "" {
			return fmt.Errorf("no X.509-SVID from the Workload API: %w (%s)", err, last)
		}
		return fmt.Errorf("no X.509-SVID from the Workload API: %w", err)
	}
	defer source.Close()

	// tls.Config for mTLS with SPIFFE authentication: each handshake presents the source's current SVID
	// (GetClientCertificate), and accepts the broker only if its certificate chains to the current
	// bundle of its trust domain and carries exactly brokerID. go-spiffe sets InsecureSkipVerify only to
	// turn off the DNS host name check; its VerifyPeerCertificate does the verification instead.
	tlsCfg := tlsconfig.MTLSClientConfig(source, source, tlsconfig.AuthorizeID(brokerID))

	// sslmode=require makes pgx speak TLS and nothing else. Its own TLS settings (which for "require"
	// verify nothing) are replaced below by the SPIFFE configuration. The explicit ssl* settings keep
	// PGSSL* variables and ~/.postgresql out of it: pgx reads no key or CA files (the SVID comes from the
	// Workload API only) and upgrades with PostgreSQL's SSLRequest. The broker ignores the user name; it
	// knows the caller by its SVID.
	connString := fmt.Sprintf("host=%s port=%s dbname=%s user=agent sslmode=require sslnegotiation=postgres sslcert='' sslkey='' sslrootcert=''",
		quote(host), quote(port), quote(db))
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return err
	}
	cfg.TLSConfig = tlsCfg
	cfg.Fallbacks = nil // no second attempt with other TLS settings, or without TLS
	cfg.Password = ""   // nothing from PGPASSWORD or a .pgpass file is ever sent
	// Notices go to stderr as they arrive: a statement the broker holds for a person's approval says
	// so at once, with the request's ID, while the agent waits for the outcome.
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		fmt.Fprintf(os.Stderr, "%s %s: %s\n", n.Severity, n.Code, n.Message)
	}

	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	// Text result format: values print as PostgreSQL formats them, whatever their type.
	rows, err := conn.Query(ctx, query, pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return err
	}
	defer rows.Close()
	out := bufio.NewWriter(os.Stdout)
	for rows.Next() {
		for i, v := range rows.RawValues() {
			if i > 0 {
				out.WriteByte('\t')
			}
			out.WriteString(copyText(v))
		}
		out.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		out.Flush()
		return err
	}
	return out.Flush()
}

// lastError is a go-spiffe logger that keeps the last error it was given: while NewX509Source waits,
// the reason it has no SVID yet (no such socket, or PermissionDenied because no registration entry
// matches this process) is only logged.
type lastError struct {
	mu  sync.Mutex
	msg string
}

func (l *lastError) Debugf(string, ...any) {}
func (l *lastError) Infof(string, ...any)  {}
func (l *lastError) Warnf(string, ...any)  {}
func (l *lastError) Errorf(format string, args ...any) {
	l.mu.Lock()
	l.msg = fmt.Sprintf(format, args...)
	l.mu.Unlock()
}

func (l *lastError) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

// quote quotes a value for a keyword/value connection string.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// copyText writes one text-format value as COPY's text format does: NULL as \N, and the characters
// that would break the line structure escaped.
func copyText(v []byte) string {
	if v == nil {
		return `\N`
	}
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(string(v))
}

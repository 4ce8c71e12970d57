package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/forwarder"
)

// connectCmd runs the local forwarder: clients without an SVID connect to it on loopback, and it
// reaches the broker over mutual TLS with its own X.509-SVID from the Workload API, or (HTTP with
// --jwt-audience) over TLS with its JWT-SVID as each request's bearer.
func connectCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connect")
	protocol := fs.String("protocol", "", "what the local clients speak: `postgres` (psql, libpq, pgx with sslmode=disable or prefer) or http (HTTP/1.1 and MCP clients given http://) (required)")
	listen := fs.String("listen", "", "where clients connect: 127.0.0.1:PORT, [::1]:PORT, localhost:PORT, or unix:/path (a socket only this uid can use); PORT 0 picks a free port (required)")
	broker := fs.String("broker", "", "`host:port` of the broker's listener for that protocol (required)")
	brokerID := fs.String("broker-id", "", "the SPIFFE `ID` the broker must present, e.g. spiffe://example.org/svidbroker (required)")
	socket := fs.String("socket", "", "Workload API `address`, unix:///path or /path (default $SPIFFE_ENDPOINT_SOCKET)")
	jwtAudience := fs.String("jwt-audience", "", "http only: send each request with a JWT-SVID for audience `AUD` (the broker's) from the Workload API in Authorization: Bearer, over TLS without a client certificate, so that the token is the request's only identity")
	allowRemote := fs.Bool("allow-remote", false, "allow a listen address other hosts can reach; anyone who connects acts with this workload's identity")
	svidTimeout := fs.Duration("svid-timeout", 30*time.Second, "how long to wait at start for the first X.509-SVID (and JWT-SVID)")
	tokenTimeout := fs.Duration("token-timeout", 10*time.Second, "with --jwt-audience: limit on fetching a JWT-SVID (one is kept for half its lifetime)")
	maxHeaderBytes := fs.Int("max-header-bytes", 64<<10, "with --jwt-audience: limit on a request's or a response's header block")
	dialTimeout := fs.Duration("dial-timeout", 10*time.Second, "limit on the TCP connect to the broker")
	handshakeTimeout := fs.Duration("handshake-timeout", 10*time.Second, "limit on the broker's SSLRequest answer and the TLS handshake")
	clientTimeout := fs.Duration("client-timeout", 30*time.Second, "limit on a new client's startup packets (postgres) or first byte (http); with --jwt-audience also on a request's header block and on each read of its body")
	idleTimeout := fs.Duration("idle-timeout", 30*time.Minute, "close a connection on which nothing moved for this long; with --jwt-audience also the limit on waiting for a response (a request held for approval included) and between requests")
	drainTimeout := fs.Duration("drain-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long open connections may finish before they are closed")
	maxConns := fs.Int("max-conns", 256, "client connections relayed at once; more are refused")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := parseFlags(fs, "connect", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "connect", "unexpected argument %q", fs.Arg(0))
	}
	for _, req := range []struct{ flag, v string }{{"--protocol", *protocol}, {"--listen", *listen}, {"--broker", *broker}, {"--broker-id", *brokerID}} {
		if req.v == "" {
			return usageError(stderr, "connect", "%s is required", req.flag)
		}
	}
	proto := forwarder.Protocol(*protocol)
	if proto != forwarder.Postgres && proto != forwarder.HTTP {
		return usageError(stderr, "connect", "--protocol %q: want postgres or http", *protocol)
	}
	if *jwtAudience != "" && proto != forwarder.HTTP {
		return usageError(stderr, "connect", "--jwt-audience is for --protocol http only (a PostgreSQL client authenticates with the X.509-SVID)")
	}
	if *jwtAudience != "" && *maxHeaderBytes < 4096 {
		return usageError(stderr, "connect", "--max-header-bytes %d: want at least 4096", *maxHeaderBytes)
	}
	id, err := spiffeid.FromString(*brokerID)
	if err != nil {
		return usageError(stderr, "connect", "--broker-id %q: %v (want spiffe://TRUST-DOMAIN/PATH)", *brokerID, err)
	}
	addr, err := forwarder.ParseListenAddr(*listen)
	if err != nil {
		return usageError(stderr, "connect", "--listen: %v", err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if addr.Remote && *allowRemote {
		fmt.Fprintf(stderr, "svidbroker connect: WARNING: listening on %s, which is not loopback: anyone who can reach it acts as this workload's SPIFFE ID\n", addr.Address)
	}
	ln, err := forwarder.Listen(addr, *allowRemote)
	if err != nil {
		if errors.Is(err, forwarder.ErrRemoteListen) {
			return usageError(stderr, "connect", "%v (--allow-remote)", err)
		}
		return err
	}
	defer ln.Close()

	src, err := connectSource(ctx, *socket, *svidTimeout)
	if err != nil {
		return err
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	cfg := forwarder.Config{
		Protocol: proto, Broker: *broker, BrokerID: id, SVID: src, Bundles: src,
		DialTimeout: *dialTimeout, HandshakeTimeout: *handshakeTimeout, ClientTimeout: *clientTimeout,
		IdleTimeout: *idleTimeout, DrainTimeout: *drainTimeout, MaxConns: *maxConns, Logger: log,
	}
	identity := []any{"spiffe_id", svid.ID.String(), "svid_expires", svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339)}
	if *jwtAudience != "" {
		jwtSrc, first, err := connectJWTSource(ctx, *socket, *jwtAudience, *svidTimeout)
		if err != nil {
			return err
		}
		defer jwtSrc.Close()
		// The X.509 source stays for the bundle the broker's certificate is verified with; the
		// forwarder presents no certificate.
		cfg.SVID, cfg.JWT, cfg.JWTAudience = nil, jwtSrc, *jwtAudience
		cfg.TokenTimeout, cfg.MaxHeaderBytes = *tokenTimeout, *maxHeaderBytes
		identity = []any{"spiffe_id", first.ID.String(), "jwt_audience", *jwtAudience, "jwt_expires", first.Expiry.UTC().Format(time.RFC3339)}
	}
	fwd, err := forwarder.New(cfg)
	if err != nil {
		return err
	}
	where := ln.Addr().String()
	if addr.Network == "unix" {
		where = "unix:" + addr.Address // removed when the listener closes
	}
	log.InfoContext(ctx, "forwarding", append([]any{"listen", where, "protocol", string(proto), "broker", *broker, "broker_id", id.String()}, identity...)...)
	// One line on stdout, once the listener is ready: where clients connect.
	fmt.Fprintln(stdout, where)
	return fwd.Serve(ctx, ln)
}

// connectJWTSource opens a JWT source on the Workload API and fetches one JWT-SVID for audience
// within timeout, so that a workload the agent issues none to is told so at start. The token itself
// is not kept here: the forwarder fetches its own.
func connectJWTSource(ctx context.Context, socket, audience string, timeout time.Duration) (*workloadapi.JWTSource, *jwtsvid.SVID, error) {
	last := &lastWatchError{}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewJWTSource(wctx, workloadapi.WithClientOptions(workloadClientOptions(socket, last)...))
	if err != nil {
		why := ""
		if m := last.get(); m != "" {
			why = " (" + m + ")"
		}
		return nil, nil, fmt.Errorf("connect: no JWT bundle from the Workload API within %s%s: %w", timeout, why, err)
	}
	svid, err := src.FetchJWTSVID(wctx, jwtsvid.Params{Audience: audience})
	if err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("connect: no JWT-SVID for audience %q from the Workload API within %s: %w; does a registration entry match this process?", audience, timeout, err)
	}
	return src, svid, nil
}

// workloadClientOptions are the Workload API client's options: the socket, when given, and a logger
// keeping the last error.
func workloadClientOptions(socket string, last *lastWatchError) []workloadapi.ClientOption {
	opts := []workloadapi.ClientOption{workloadapi.WithLogger(last)}
	if socket != "" {
		if strings.HasPrefix(socket, "/") {
			socket = "unix://" + socket
		}
		opts = append(opts, workloadapi.WithAddr(socket))
	}
	return opts
}

// connectSource waits up to timeout for the first X.509-SVID. When none comes, the error says why the
// Workload API refused (no such socket, or no registration entry for this process), which go-spiffe
// only logs while it retries.
func connectSource(ctx context.Context, socket string, timeout time.Duration) (*workloadapi.X509Source, error) {
	last := &lastWatchError{}
	opts := workloadClientOptions(socket, last)
	if socket == "" && os.Getenv("SPIFFE_ENDPOINT_SOCKET") == "" {
		return nil, errors.New("connect: no Workload API socket: set --socket or SPIFFE_ENDPOINT_SOCKET to the SPIRE agent's socket")
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(wctx, workloadapi.WithClientOptions(opts...))
	if err != nil {
		why := ""
		if m := last.get(); m != "" {
			why = " (" + m + ")"
		}
		return nil, fmt.Errorf("connect: no X.509-SVID from the Workload API within %s%s: %w; is the SPIRE agent running, and does a registration entry match this process (its uid, for the unix attestor)?", timeout, why, err)
	}
	return src, nil
}

// lastWatchError is a go-spiffe logger that keeps the last error it was given.
type lastWatchError struct {
	mu  sync.Mutex
	msg string
}

func (l *lastWatchError) Debugf(string, ...any) {}
func (l *lastWatchError) Infof(string, ...any)  {}
func (l *lastWatchError) Warnf(string, ...any)  {}
func (l *lastWatchError) Errorf(format string, args ...any) {
	l.mu.Lock()
	l.msg = fmt.Sprintf(format, args...)
	l.mu.Unlock()
}

func (l *lastWatchError) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

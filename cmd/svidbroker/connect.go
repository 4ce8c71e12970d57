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
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/forwarder"
)

// connectCmd runs the local forwarder: clients without an SVID connect to it on loopback, and it
// reaches the broker over mutual TLS with its own X.509-SVID from the Workload API.
func connectCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connect")
	protocol := fs.String("protocol", "", "what the local clients speak: `postgres` (psql, libpq, pgx with sslmode=disable or prefer) or http (HTTP/1.1 and MCP clients given http://) (required)")
	listen := fs.String("listen", "", "where clients connect: 127.0.0.1:PORT, [::1]:PORT, localhost:PORT, or unix:/path (a socket only this uid can use); PORT 0 picks a free port (required)")
	broker := fs.String("broker", "", "`host:port` of the broker's listener for that protocol (required)")
	brokerID := fs.String("broker-id", "", "the SPIFFE `ID` the broker must present, e.g. spiffe://example.org/svidbroker (required)")
	socket := fs.String("socket", "", "Workload API `address`, unix:///path or /path (default $SPIFFE_ENDPOINT_SOCKET)")
	allowRemote := fs.Bool("allow-remote", false, "allow a listen address other hosts can reach; anyone who connects acts with this workload's identity")
	svidTimeout := fs.Duration("svid-timeout", 30*time.Second, "how long to wait at start for the first X.509-SVID")
	dialTimeout := fs.Duration("dial-timeout", 10*time.Second, "limit on the TCP connect to the broker")
	handshakeTimeout := fs.Duration("handshake-timeout", 10*time.Second, "limit on the broker's SSLRequest answer and the TLS handshake")
	clientTimeout := fs.Duration("client-timeout", 30*time.Second, "limit on a new client's startup packets (postgres) or first byte (http)")
	idleTimeout := fs.Duration("idle-timeout", 30*time.Minute, "close a connection on which nothing moved for this long")
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
	fwd, err := forwarder.New(forwarder.Config{
		Protocol: proto, Broker: *broker, BrokerID: id, SVID: src, Bundles: src,
		DialTimeout: *dialTimeout, HandshakeTimeout: *handshakeTimeout, ClientTimeout: *clientTimeout,
		IdleTimeout: *idleTimeout, DrainTimeout: *drainTimeout, MaxConns: *maxConns, Logger: log,
	})
	if err != nil {
		return err
	}
	where := ln.Addr().String()
	if addr.Network == "unix" {
		where = "unix:" + addr.Address // removed when the listener closes
	}
	log.InfoContext(ctx, "forwarding", "listen", where, "protocol", string(proto), "broker", *broker, "broker_id", id.String(),
		"spiffe_id", svid.ID.String(), "svid_expires", svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	// One line on stdout, once the listener is ready: where clients connect.
	fmt.Fprintln(stdout, where)
	return fwd.Serve(ctx, ln)
}

// connectSource waits up to timeout for the first X.509-SVID. When none comes, the error says why the
// Workload API refused (no such socket, or no registration entry for this process), which go-spiffe
// only logs while it retries.
func connectSource(ctx context.Context, socket string, timeout time.Duration) (*workloadapi.X509Source, error) {
	last := &lastWatchError{}
	opts := []workloadapi.ClientOption{workloadapi.WithLogger(last)}
	if socket != "" {
		if strings.HasPrefix(socket, "/") {
			socket = "unix://" + socket
		}
		opts = append(opts, workloadapi.WithAddr(socket))
	} else if os.Getenv("SPIFFE_ENDPOINT_SOCKET") == "" {
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

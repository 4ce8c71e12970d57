package server

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Listener binds one address to one engine.
type Listener struct {
	// Name identifies the listener (the target's name) in logs.
	Name string
	// Address is host:port to listen on.
	Address string
	// Engine serves connections accepted here.
	Engine Engine
}

// Config configures a Server. Validate fills in defaults.
type Config struct {
	Listeners []Listener
	// HandshakeTimeout bounds each client's pre-authentication phase.
	HandshakeTimeout time.Duration
	// MaxConcurrentHandshakes caps unauthenticated clients per listener; at the cap, the oldest pending
	// handshake is closed to admit the new client.
	MaxConcurrentHandshakes int
	// MaxConnections caps sessions per listener; further clients are closed at once.
	MaxConnections int
	// ShutdownGrace is how long sessions may continue after shutdown begins.
	ShutdownGrace time.Duration
	// AdminAddress serves /healthz and /readyz; empty disables it.
	AdminAddress string
	// AdminHandlers are served on the admin listener too, by pattern.
	AdminHandlers map[string]http.Handler
	// Checks are what the broker needs to start a new session (its SVID, its audit log, a policy set,
	// SPIRE, each target's backend and Vault): /readyz fails while one fails, and /readyz?verbose lists
	// them all. None means always ready.
	Checks []Check
	// CheckTimeout bounds each check. Default DefaultCheckTimeout.
	CheckTimeout time.Duration
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
}

// Server is a set of bound listeners.
type Server struct {
	cfg       Config
	listeners []net.Listener
	admin     net.Listener
}

// New validates cfg and binds every listener, so that a port in use is reported before anything runs.
func New(cfg Config) (*Server, error) {
	if len(cfg.Listeners) == 0 {
		return nil, errors.New("server: no listeners")
	}
	if cfg.HandshakeTimeout <= 0 || cfg.MaxConcurrentHandshakes <= 0 || cfg.MaxConnections <= 0 || cfg.ShutdownGrace < 0 {
		return nil, errors.New("server: HandshakeTimeout, MaxConcurrentHandshakes and MaxConnections must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	s := &Server{cfg: cfg}
	for _, l := range cfg.Listeners {
		if l.Engine == nil {
			s.close()
			return nil, fmt.Errorf("server: listener %q has no engine", l.Name)
		}
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("server: listener %q: %w", l.Name, err)
		}
		s.listeners = append(s.listeners, ln)
	}
	if cfg.AdminAddress != "" {
		ln, err := net.Listen("tcp", cfg.AdminAddress)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("server: admin listener: %w", err)
		}
		s.admin = ln
	}
	return s, nil
}

// Addr returns the bound address of the listener named name (useful with port 0).
func (s *Server) Addr(name string) net.Addr {
	for i, l := range s.cfg.Listeners {
		if l.Name == name {
			return s.listeners[i].Addr()
		}
	}
	return nil
}

// AdminAddr returns the admin listener's address, or nil if it is disabled.
func (s *Server) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.Addr()
}

func (s *Server) close() {
	for _, ln := range s.listeners {
		ln.Close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
}

// Run serves until ctx is cancelled or a listener fails, then shuts down: it stops accepting, gives
// sessions ShutdownGrace to finish, ends the rest, and returns once every session has ended.
func (s *Server) Run(ctx context.Context) error {
	// Sessions outlive ctx by the grace period; handshakes do not.
	sessCtx, endSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer endSessions()
	g, gctx := errgroup.WithContext(ctx)
	var sessions sync.WaitGroup
	for i, l := range s.cfg.Listeners {
		ln := s.listeners[i]
		g.Go(func() error { return s.serve(gctx, sessCtx, &sessions, l, ln) })
	}
	if s.admin != nil {
		g.Go(func() error { return s.serveAdmin(gctx) })
	}
	s.cfg.Logger.InfoContext(ctx, "broker serving", "listeners", len(s.listeners))
	err := g.Wait()

	drained := make(chan struct{})
	go func() { sessions.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(s.cfg.ShutdownGrace):
		s.cfg.Logger.Warn("shutdown grace period over; ending remaining sessions", "grace", s.cfg.ShutdownGrace)
		endSessions()
		<-drained
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// serve accepts on ln until ctx ends.
func (s *Server) serve(ctx, sessCtx context.Context, sessions *sync.WaitGroup, l Listener, ln net.Listener) error {
	log := s.cfg.Logger.With("listener", l.Name)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	handshakes := newPending(s.cfg.MaxConcurrentHandshakes)
	conns := make(chan struct{}, s.cfg.MaxConnections)
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				log.Warn("accept failed; retrying", "error", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("server: listener %q: %w", l.Name, err)
		}
		backoff = 0
		select {
		case conns <- struct{}{}:
		default:
			log.Warn("connection refused: session limit reached", "remote", conn.RemoteAddr().String(), "max_connections", s.cfg.MaxConnections)
			conn.Close()
			continue
		}
		// Admission happens here, in accept order, so "oldest" means first accepted rather than first
		// scheduled.
		slot, evicted := handshakes.admit(conn)
		if evicted != nil {
			log.Info("pending handshake closed to admit a new client", "evicted", evicted.RemoteAddr().String(),
				"max_concurrent_handshakes", s.cfg.MaxConcurrentHandshakes)
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			defer func() { <-conns }()
			s.handle(ctx, sessCtx, log, l.Engine, conn, handshakes, slot)
		}()
	}
}

// handle runs one connection: handshake under the deadline and the handshake cap, then the session.
func (s *Server) handle(ctx, sessCtx context.Context, log *slog.Logger, e Engine, conn net.Conn, handshakes *pending, slot *list.Element) {
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	// The deadline also bounds blocking reads and writes inside the engine.
	_ = conn.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sess, err := e.Handshake(hctx, conn)
	handshakes.release(slot)
	if err != nil {
		log.Info("handshake failed", "remote", conn.RemoteAddr().String(), "error", err)
		conn.Close()
		return
	}
	if err := sess.Run(sessCtx); err != nil && !errors.Is(err, context.Canceled) {
		log.Info("session closed with error", "error", err)
	}
}

func (s *Server) serveAdmin(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", readyz(s.cfg.Checks, s.cfg.CheckTimeout))
	for pattern, h := range s.cfg.AdminHandlers {
		mux.Handle(pattern, h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(s.admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: admin: %w", err)
	}
	return ctx.Err()
}

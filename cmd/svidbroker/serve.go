package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/server"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path to the HCL configuration `file` (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: svidbroker serve --config FILE")
		return errUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)

	src, err := identity.NewX509Source(ctx, cfg.WorkloadAPISocket, identity.DefaultSourceTimeout)
	if err != nil {
		return err
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "broker identity", "spiffe_id", svid.ID.String(), "expires", svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))

	var attest func(context.Context, spiffeid.ID) (*identity.Attestation, error)
	if ss := cfg.SPIREServer; ss != nil {
		atts, err := identity.NewAttestations(identity.AttestationConfig{
			Address: ss.Address, ServerID: ss.ServerIDParsed, Source: src, TTL: ss.CacheTTLD,
		}, cfg.TD)
		if err != nil {
			return err
		}
		defer atts.Close()
		attest = atts.Lookup
	}

	srvCfg := server.Config{
		HandshakeTimeout:        cfg.Limits.HandshakeTimeoutD,
		MaxConcurrentHandshakes: cfg.Limits.MaxConcurrentHandshakes,
		MaxConnections:          cfg.Limits.MaxConnections,
		ShutdownGrace:           cfg.Limits.ShutdownGraceD,
		AdminAddress:            *cfg.Admin.Listen,
		Ready:                   func() error { return svidValid(src) },
		Logger:                  log,
	}
	for _, t := range cfg.Targets {
		engine, err := newEngine(cfg, t, src, attest, log)
		if err != nil {
			return err
		}
		srvCfg.Listeners = append(srvCfg.Listeners, server.Listener{Name: t.Name, Address: t.Listen, Engine: engine})
	}
	srv, err := server.New(srvCfg)
	if err != nil {
		return err
	}
	for _, t := range cfg.Targets {
		log.InfoContext(ctx, "listening", "target", t.Name, "protocol", t.Protocol, "address", srv.Addr(t.Name).String())
	}
	return srv.Run(ctx)
}

// newEngine wires a target to its protocol plugin. Plugins are listed here explicitly.
func newEngine(cfg *config.Config, t config.Target, src *workloadapi.X509Source,
	attest func(context.Context, spiffeid.ID) (*identity.Attestation, error), log *slog.Logger) (server.Engine, error) {
	switch t.Protocol {
	case "postgres":
		backendTLS, err := identity.BackendConfig(t.Backend.CAFile, t.Backend.ServerName, src)
		if err != nil {
			return nil, err
		}
		return postgres.New(postgres.Config{
			Target:    t.Name,
			ServerTLS: identity.ServerConfig(src, src, cfg.Trusted, postgres.ALPN),
			Authorize: identity.AuthorizeExact(t.Allowed),
			Attest:    attest,
			Backend: postgres.Backend{
				Address:  t.Backend.Address,
				Database: t.Backend.Database,
				User:     t.Backend.User,
				TLS:      backendTLS,
			},
			Ready:           func() error { return svidValid(src) },
			SVIDExpiryGrace: cfg.Session.SVIDExpiryGraceD,
			MaxMessageBytes: cfg.Limits.MaxMessageBytes,
			Logger:          log,
		})
	default:
		return nil, fmt.Errorf("target %q: protocol %q has no engine", t.Name, t.Protocol)
	}
}

// svidValid reports whether the broker holds a current SVID, which it needs to grant any access.
func svidValid(src *workloadapi.X509Source) error {
	svid, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	if exp := svid.Certificates[0].NotAfter; time.Now().After(exp) {
		return fmt.Errorf("broker SVID expired at %s and the Workload API has not delivered a new one (is the SPIRE agent running?)", exp.UTC().Format(time.RFC3339))
	}
	return nil
}

func newLogger(c *config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

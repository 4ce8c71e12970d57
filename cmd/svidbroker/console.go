package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/console"
)

// startConsole serves the web console on its own HTTPS listener when the configuration has a console
// block. stop shuts it down, waiting up to 5s for requests in flight.
func startConsole(ctx context.Context, cfg *config.Config, a approvers, az *authz.Authorizer, log *slog.Logger) (stop func(), err error) {
	k := cfg.Console
	if k == nil {
		return func() {}, nil
	}
	cc := console.Config{PublicURL: k.PublicURL, SessionTTL: k.SessionTTLD, Authorizer: az, Logger: log,
		OIDC: oidc.Config{IssuerURL: k.OIDC.Issuer, ClientID: k.OIDC.ClientID, ClientSecretFile: k.OIDC.ClientSecretFile,
			CAFile: k.OIDC.CAFile, EmailClaim: k.OIDC.EmailClaim, GroupsClaim: k.OIDC.GroupsClaim}}
	switch {
	case a.desk != nil:
		// approver = "oidc": Cedar's approve, separation of duties, binding and scopes, kept.
		cc.Approvals = a.desk
	case a.queue != nil:
		cc.Approvals = console.QueueApprovals{Queue: a.queue}
	default:
		log.WarnContext(ctx, "console: no approvals to show: policy.approver is not set")
	}
	if k.ViewPolicyFile != "" {
		if cc.View, err = console.LoadView(k.ViewPolicyFile); err != nil {
			return nil, err
		}
	} else {
		log.WarnContext(ctx, "console: no view_policy_file, so nobody sees any session")
	}
	if a := cfg.Audit; a != nil && a.Dir != "" {
		key, err := audit.LoadMACKey(a.MACKeyFile)
		if err != nil {
			return nil, err
		}
		vpath := k.VerifierKeyFile
		if vpath == "" {
			vpath = filepath.Join(filepath.Dir(a.SigningKeyFile), audit.VerifierKeyFile)
		}
		verifier, err := audit.LoadVerifier(vpath)
		if err != nil {
			return nil, fmt.Errorf("console: verifier_key_file: %w", err)
		}
		dir, chain := a.Dir, a.Chain
		cc.Audit = audit.Files(dir, chain)
		cc.Verify = func(context.Context) (*audit.Report, error) { return audit.Verify(dir, chain, key, verifier) }
	} else {
		log.WarnContext(ctx, "console: sessions and replay need an audit log kept in files (audit.dir)")
	}
	c, err := console.New(ctx, cc)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(k.CertFile, k.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("console: cert_file/key_file: %w", err)
	}
	ln, err := net.Listen("tcp", k.Listen)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	srv := &http.Server{Handler: c, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			log.Error("console stopped", "error", err)
		}
	}()
	log.InfoContext(ctx, "console listening", "address", ln.Addr().String(), "public_url", k.PublicURL,
		"login", k.PublicURL+"/login")
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

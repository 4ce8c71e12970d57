package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/server"
	"github.com/svidbroker/svidbroker/broker/tracing"
	vaultcred "github.com/svidbroker/svidbroker/plugins/credential/vault"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
	"github.com/svidbroker/svidbroker/policies"
)

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve")
	path := fs.String("config", "", "path to the HCL configuration `file` (required)")
	if err := parseFlags(fs, "serve", args, stdout, stderr); err != nil {
		return err
	}
	if *path == "" {
		return usageError(stderr, "serve", "--config FILE is required")
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "serve", "unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*path, plugins())
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
	mtr, err := newMetrics(cfg, src)
	if err != nil {
		return err
	}
	trc, stopTracing, err := newTracing(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	if trc != nil {
		if err := mtr.WatchTraceExport(trc.ExportStats); err != nil {
			return err
		}
	}

	var attest func(context.Context, spiffeid.ID) (*identity.Attestation, error)
	deps := dependencies{src: src}
	if ss := cfg.SPIREServer; ss != nil {
		atts, err := identity.NewAttestations(identity.AttestationConfig{
			Address: ss.Address, ServerID: ss.ServerIDParsed, Source: src, TTL: ss.CacheTTLD, Metrics: mtr,
		}, cfg.TD)
		if err != nil {
			return err
		}
		defer atts.Close()
		attest, deps.spire = atts.Lookup, atts.Check
	}

	jwtVerifier, closeJWT, err := newJWTVerifier(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeJWT()

	authorize, az, err := newAuthorize(ctx, cfg, mtr, log)
	if err != nil {
		return err
	}
	masker, err := newMasker(cfg)
	if err != nil {
		return err
	}
	adminHandlers := map[string]http.Handler{"/metrics": mtr.Handler()}
	if cfg.Admin.Pprof {
		adminHandlers["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		adminHandlers["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		log.WarnContext(ctx, "runtime profiles are served on the admin listener", "admin", *cfg.Admin.Listen)
	}
	var sink audit.Sink // stays a nil interface without an audit block
	auditErr := func() error { return nil }
	if cfg.Audit == nil {
		log.WarnContext(ctx, "no audit block in the configuration: sessions and statements are NOT recorded")
	} else {
		alog, err := openAudit(ctx, cfg.Audit, src, mtr, log)
		if err != nil {
			return err
		}
		defer alog.Close()
		if err := mtr.WatchAuditBacklog(alog.Unflushed); err != nil {
			return err
		}
		sink, auditErr = alog, alog.Err
		if cfg.Audit.Witness != nil {
			deps.auditWitness = alog.WitnessErr
		}
		log.InfoContext(ctx, "audit log open", "dir", cfg.Audit.Dir, "postgres", cfg.Audit.Postgres != nil, "chain", cfg.Audit.Chain,
			"durability", cfg.Audit.Durability, "flush_interval", cfg.Audit.FlushIntervalD)
	}

	approvals, closeApprovals, err := newApprovers(ctx, cfg, src, az, sink, adminHandlers, log)
	if err != nil {
		return err
	}
	defer closeApprovals()
	stopNotify, err := startNotifier(ctx, cfg, approvals, sink, mtr, log)
	if err != nil {
		return err
	}
	defer stopNotify()

	leases, vault, err := newLeases(ctx, cfg, src, mtr, sink, log)
	if err != nil {
		return err
	}
	if vault != nil {
		deps.vault = vault.Check
	}
	if leases != nil {
		defer leases.Close()
	}

	// New access needs a current SVID and, when configured, a working audit log.
	if cfg.Audit != nil && cfg.Audit.OnFailure == "continue" {
		log.WarnContext(ctx, "audit on_failure = continue: if the audit store fails, statements run unrecorded")
		auditErr = func() error { return nil }
	}
	// What ready says reaches clients: the audit store's error, which may name hosts or paths, stays in
	// the log.
	ready := func() error {
		var audit error
		if err := auditErr(); err != nil {
			audit = errors.New("the audit log is unavailable, so new sessions are refused")
		}
		return errors.Join(svidValid(src), audit)
	}
	if cfg.Audit != nil {
		deps.audit = auditErr
	}
	if az != nil {
		deps.policy = az.Engine
	}

	srvCfg := server.Config{
		HandshakeTimeout:        cfg.Limits.HandshakeTimeoutD,
		MaxConcurrentHandshakes: cfg.Limits.MaxConcurrentHandshakes,
		MaxConnections:          cfg.Limits.MaxConnections,
		ShutdownGrace:           cfg.Limits.ShutdownGraceD,
		AdminAddress:            *cfg.Admin.Listen,
		AdminHandlers:           adminHandlers,
		Checks:                  readinessChecks(cfg, deps),
		Logger:                  log,
	}
	// Targets that share an address share a listener: the client's database names the target.
	var order []string
	byAddr := map[string][]server.Engine{}
	names := map[string][]string{}
	for _, t := range cfg.Targets {
		var engine server.Engine
		if t.Protocol == "http" || t.Protocol == "mcp" {
			ht := httpTarget{cfg: cfg, t: t, src: src, jwt: jwtVerifier, attest: attest, authorize: authorize(t), az: az,
				masker: masker, approvals: approvals, sink: sink, ready: ready, leases: leases, metrics: mtr, tracing: trc, log: log}
			if t.Protocol == "mcp" {
				engine, err = newMCPEngine(ht)
			} else {
				engine, err = newHTTPEngine(ht)
			}
		} else {
			engine, err = newEngine(cfg, t, src, attest, authorize(t), az, masker, approvals, sink, ready, leases, mtr, trc, log)
		}
		if err != nil {
			return err
		}
		if _, ok := byAddr[t.Listen]; !ok {
			order = append(order, t.Listen)
		}
		byAddr[t.Listen] = append(byAddr[t.Listen], engine)
		names[t.Listen] = append(names[t.Listen], t.Name)
	}
	for _, addr := range order {
		engine := byAddr[addr][0]
		if len(byAddr[addr]) > 1 {
			var pgs []*postgres.Engine
			for _, e := range byAddr[addr] {
				pgs = append(pgs, e.(*postgres.Engine))
			}
			if engine, err = postgres.NewRouter(pgs...); err != nil {
				return err
			}
		}
		srvCfg.Listeners = append(srvCfg.Listeners, server.Listener{Name: strings.Join(names[addr], "+"), Address: addr, Engine: engine})
	}
	srv, err := server.New(srvCfg)
	if err != nil {
		return err
	}
	for _, addr := range order {
		name := strings.Join(names[addr], "+")
		log.InfoContext(ctx, "listening", "targets", names[addr], "address", srv.Addr(name).String())
	}
	stopConsole, err := startConsole(ctx, cfg, approvals, az, log)
	if err != nil {
		return err
	}
	defer stopConsole()
	return srv.Run(ctx)
}

// newEngine wires a target to its protocol plugin. Plugins are listed here explicitly.
func newEngine(cfg *config.Config, t config.Target, src *workloadapi.X509Source,
	attest func(context.Context, spiffeid.ID) (*identity.Attestation, error),
	authorize func(context.Context, authz.Connect) (authz.Decision, error), az *authz.Authorizer, masker *inspect.Masker,
	approvals approvers, sink audit.Sink, ready func() error, leases *credential.Manager, mtr *metrics.Metrics, trc *tracing.Tracing, log *slog.Logger) (server.Engine, error) {
	switch t.Protocol {
	case "postgres":
		clientCert, lease := backendCredential(t, src, leases, false, log)
		pickRole, err := rolePicker(t, az, log)
		if err != nil {
			return nil, err
		}
		backendTLS, err := identity.BackendConfig(t.Backend.CAFile, t.Backend.ServerName, clientCert)
		if err != nil {
			return nil, err
		}
		return postgres.New(postgres.Config{
			Target:            t.Name,
			ServerTLS:         identity.ServerConfig(src, src, cfg.Trusted, postgres.ALPN),
			Authorize:         authorize,
			Audit:             sink,
			NoResults:         cfg.Audit != nil && cfg.Audit.Data == "none",
			FullData:          cfg.Audit != nil && cfg.Audit.Data == "full",
			AuditFailOpen:     cfg.Audit != nil && cfg.Audit.OnFailure == "continue",
			AuditPerStatement: cfg.Audit != nil && cfg.Audit.Durability == "statement",
			Attest:            attest,
			Backend: postgres.Backend{
				Address:  t.Backend.Address,
				Database: t.Backend.Database,
				User:     t.Backend.User,
				TLS:      backendTLS,
				Lease:    lease,
				PickRole: pickRole,
			},
			Ready:           ready,
			TLSReady:        func() error { return svidValid(src) },
			SVIDExpiryGrace: cfg.Session.SVIDExpiryGraceD,
			MaxMessageBytes: cfg.Limits.MaxMessageBytes,
			Logger:          log,
			Policy:          az,
			Masker:          masker,
			DefaultMask:     defaultMask(cfg),
			ApprovalTimeout: approvalTimeout(cfg),
			Approve:         approvals.approve,
			Grants:          approvals.grants,
			Timeouts:        targetTimeouts(t),
			Metrics:         mtr,
			Tracing:         trc,
		})
	default:
		return nil, fmt.Errorf("target %q: protocol %q has no engine", t.Name, t.Protocol)
	}
}

// newAuthorize returns, per target, how connections are decided: by Cedar when the config has a
// policy block (reloaded on change and on SIGHUP), otherwise by the target's exact allow list.
func newAuthorize(ctx context.Context, cfg *config.Config, mtr *metrics.Metrics, log *slog.Logger) (func(config.Target) func(context.Context, authz.Connect) (authz.Decision, error), *authz.Authorizer, error) {
	if cfg.Policy == nil {
		return func(t config.Target) func(context.Context, authz.Connect) (authz.Decision, error) {
			allow := identity.AuthorizeExact(t.Allowed)
			return func(_ context.Context, c authz.Connect) (authz.Decision, error) {
				return authz.Decision{}, allow(c.Peer.ID)
			}
		}, nil, nil
	}
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cfg.Catalog())
	if err != nil {
		return nil, nil, err
	}
	engine, err := authz.New(authz.Config{Dir: cfg.Policy.Dir, Schema: schema, Logger: log, Metrics: mtr})
	if err != nil {
		return nil, nil, err
	}
	go engine.Watch(ctx, cfg.Policy.ReloadIntervalD)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading policies")
				if err := engine.Reload(); err != nil {
					// The engine logs a refused set's problems once per change of its files.
					log.Warn("SIGHUP: policy set refused; the previous set stays in force", "dir", cfg.Policy.Dir)
				}
			}
		}
	}()
	az := authz.NewAuthorizer(engine, cfg.Catalog())
	return func(config.Target) func(context.Context, authz.Connect) (authz.Decision, error) {
		return func(ctx context.Context, c authz.Connect) (authz.Decision, error) {
			d, err := az.Connect(c)
			log.DebugContext(ctx, "decision", "decision", d.ID, "action", "connect", "target", c.Target,
				"spiffe_id", c.Peer.ID.String(), "allow", d.Allow, "policies", d.Reasons)
			return d, err
		}
	}, az, nil
}

// newMasker loads the key of the "hash" masking strategy, if the policy block names one.
func newMasker(cfg *config.Config) (*inspect.Masker, error) {
	var key []byte
	if cfg.Policy != nil && cfg.Policy.MaskKeyFile != "" {
		k, err := os.ReadFile(cfg.Policy.MaskKeyFile)
		if err != nil {
			return nil, fmt.Errorf("policy.mask_key_file: %w", err)
		}
		key = k
	}
	return inspect.NewMasker(key)
}

func defaultMask(cfg *config.Config) inspect.Strategy {
	if cfg.Policy == nil {
		return ""
	}
	return inspect.Strategy(cfg.Policy.DefaultMask)
}

func approvalTimeout(cfg *config.Config) time.Duration {
	if cfg.Policy == nil {
		return 0
	}
	return cfg.Policy.ApprovalTimeoutD
}

// newLeases sets up Vault credentials when the configuration has a vault block, and revokes the
// leases a previous run left in the journal, recording each revocation in sink (when not nil): the
// chain of a broker that died shows its sessions' leases acquired, and these records show them ended.
func newLeases(ctx context.Context, cfg *config.Config, src *workloadapi.X509Source, mtr *metrics.Metrics, sink audit.Sink, log *slog.Logger) (*credential.Manager, *vaultcred.Provider, error) {
	if cfg.Vault == nil {
		return nil, nil, nil
	}
	v := cfg.Vault
	provider, err := newVaultProvider(ctx, cfg, src, log)
	if err != nil {
		return nil, nil, err
	}
	journal, err := credential.OpenJournal(v.JournalDir)
	if err != nil {
		return nil, nil, err
	}
	m := credential.NewManager(mtr.Provider(provider), journal, log, v.TimeoutD, v.ReuseD)
	revoked, err := m.Sweep(ctx)
	if len(revoked) > 0 || err != nil {
		log.WarnContext(ctx, "leases left by a previous run", "revoked", len(revoked), "error", err)
	}
	for _, id := range revoked {
		if sink == nil {
			break
		}
		if err := sink.Write(audit.OrphanRevoked(time.Now(), id), false); err != nil {
			// The store failing refuses every session, so nothing runs unrecorded.
			log.ErrorContext(ctx, "the audit log did not take the record of an orphaned lease revoked", "lease", id, "error", err)
		}
	}
	return m, provider, nil
}

// newVaultProvider is the Vault client of the vault block, logging in with the broker's SVID (or, in
// development, a static token).
func newVaultProvider(ctx context.Context, cfg *config.Config, src *workloadapi.X509Source, log *slog.Logger) (*vaultcred.Provider, error) {
	v := cfg.Vault
	vc := vaultcred.Config{Address: v.Address, CAFile: v.CAFile, Method: v.Method, AuthMount: v.AuthMount, SVID: src}
	switch v.Method {
	case vaultcred.MethodCert:
		vc.Role = v.CertRole
	case vaultcred.MethodJWT:
		vc.Role, vc.Audience = v.JWT.Role, v.JWT.Audience
		vc.JWTSVID = func(ctx context.Context, audience string) (string, error) {
			svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience}, workloadapi.WithAddr(cfg.WorkloadAPISocket))
			if err != nil {
				return "", err
			}
			return svid.Marshal(), nil
		}
	case vaultcred.MethodToken:
		tok, err := os.ReadFile(v.DevTokenFile)
		if err != nil {
			return nil, fmt.Errorf("vault: dev_token_file: %w", err)
		}
		vc.Token = strings.TrimSpace(string(tok))
		log.WarnContext(ctx, "Vault is reached with a static token from vault.dev_token_file: for development only; use cert_role or a jwt block",
			"file", v.DevTokenFile)
	}
	return vaultcred.New(vc)
}

// credentialSource says where a backend's credential comes from; nil when the broker logs in with its
// own SVID.
func credentialSource(b config.Backend) *credential.Source {
	src := credential.Source{UsernameKey: b.VaultUsernameKey, PasswordKey: b.VaultPasswordKey}
	switch {
	case b.Auth == "vault-kv":
		src.Kind, src.Mount, src.Path = credential.Static, b.VaultKVMount, b.VaultKVPath
	case b.Auth == "vault" && b.VaultPath != "":
		src.Path = b.VaultPath
	case b.Auth == "vault":
		src.Path = b.VaultMount + "/creds/" + b.VaultRole
	default:
		return nil
	}
	return &src
}

func openAudit(ctx context.Context, a *config.Audit, src *workloadapi.X509Source, mtr *metrics.Metrics, log *slog.Logger) (*audit.Log, error) {
	key, err := audit.LoadMACKey(a.MACKeyFile)
	if err != nil {
		return nil, err
	}
	signer, err := audit.LoadSigner(a.SigningKeyFile)
	if err != nil {
		return nil, err
	}
	cfg := audit.Config{Dir: a.Dir, Chain: a.Chain, MACKey: key, Signer: signer, CheckpointInterval: a.CheckpointIntervalD,
		FlushInterval: a.FlushIntervalD, Logger: log, Metrics: mtr}
	if err := witnessConfig(a, src, &cfg); err != nil {
		return nil, err
	}
	if a.Postgres == nil {
		return audit.Open(cfg)
	}
	// The audit database, like backends with auth = "svid", knows the broker by its SVID.
	pg := a.Postgres
	tlsCfg, err := identity.BackendConfig(pg.CAFile, pg.ServerName, src)
	if err != nil {
		return nil, err
	}
	conn, err := postgres.ConnectSVID(ctx, pg.Address, pg.Database, pg.User, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("audit: database: %w", err)
	}
	return audit.OpenPostgres(ctx, cfg, conn)
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

// quietLogger keeps policy commands' output to their results.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newLogger(c *config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// targetTimeouts are a target's session time limits, as validated (defaults filled in).
func targetTimeouts(t config.Target) postgres.Timeouts {
	if t.Timeouts == nil {
		return postgres.Timeouts{}
	}
	return postgres.Timeouts{Statement: t.Timeouts.MaxStatementTimeoutD, Lock: t.Timeouts.MaxLockTimeoutD,
		IdleInTransaction: t.Timeouts.IdleInTransactionD}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/server"
)

// dependencies are what the broker needs to start a new session, for /readyz.
type dependencies struct {
	src *workloadapi.X509Source
	// audit reports the audit log's failure; nil without an audit block, or with on_failure = continue
	// (sessions then run unrecorded, which is said in the log).
	audit func() error
	// auditWitness reports checkpoints waiting for the audit witness, when one is configured. Listed,
	// not required: once one waits longer than max_lag, audit fails and the broker is not ready.
	auditWitness func() error
	// policy is the policy engine; nil for targets authorized by allow lists only.
	policy *authz.Engine
	// spire checks the SPIRE server, when enrichment (spire_server) is configured.
	spire func(context.Context) error
	// vault checks Vault, when a vault block is configured.
	vault func(context.Context) error
}

// readinessChecks lists the broker's dependencies: its SVID, its audit log (which fails while its store
// fails, or once a checkpoint has waited for the witness beyond max_lag), its policy set and the SPIRE
// server; and, listed but not required for readiness, the audit witness's backlog within max_lag, each
// target's backend and (when its credential comes from Vault) Vault.
func readinessChecks(cfg *config.Config, d dependencies) []server.Check {
	checks := []server.Check{{Name: "svid", Check: func(context.Context) error { return svidValid(d.src) }}}
	if d.audit != nil {
		checks = append(checks, server.Check{Name: "audit", Check: func(context.Context) error {
			if d.audit() != nil {
				// The store's error may name hosts or paths; it is in the log.
				return errors.New("the audit log is unavailable, so new sessions are refused")
			}
			return nil
		}})
	}
	if d.auditWitness != nil {
		checks = append(checks, server.Check{Name: "audit-witness", Optional: true,
			Consequence: "checkpoints wait for the witness; beyond max_lag, audit fails", Check: func(context.Context) error { return d.auditWitness() }})
	}
	if d.policy != nil {
		checks = append(checks, server.Check{Name: "policy", Check: func(context.Context) error { return d.policy.Ready() }})
	}
	if d.spire != nil {
		checks = append(checks, server.Check{Name: "spire-server", Check: d.spire})
	}
	for _, t := range cfg.Targets {
		addr := t.Backend.Address
		checks = append(checks, server.Check{Name: "target/" + t.Name + "/backend", Optional: true, Check: func(ctx context.Context) error {
			return dialCheck(ctx, addr)
		}})
		if d.vault != nil && credentialSource(t.Backend) != nil {
			checks = append(checks, server.Check{Name: "target/" + t.Name + "/vault", Optional: true, Check: d.vault})
		}
	}
	return checks
}

// dialCheck reports whether a TCP connection to addr opens before ctx ends. It names no host: the
// check's name says which backend.
func dialCheck(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("no connection within the deadline")
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			return fmt.Errorf("cannot connect: %s", syscallText(op.Err))
		}
		return errors.New("cannot connect")
	}
	return conn.Close()
}

// syscallText is the cause of a failed dial without its addresses ("connection refused").
func syscallText(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

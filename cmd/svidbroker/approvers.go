package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/identity"
	sess "github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

// approvers is how held operations get approved: approve waits for a request's outcome, grants
// lets an earlier approval cover an operation. Both nil: operations that need an approval are
// refused. Desk is the Store of approver = "oidc" (the console's); Queue that of approver = "dev".
type approvers struct {
	approve sess.ApproveFunc
	grants  sess.GrantFunc
	desk    *approval.Desk
	queue   *approval.Queue
}

// sweepInterval is how often the desk ends requests and grants that ran out of time.
const sweepInterval = 30 * time.Second

// newApprovers sets up cfg's approver, adding its endpoints to the admin listener's handlers. The
// returned close releases what it opened.
func newApprovers(ctx context.Context, cfg *config.Config, src *workloadapi.X509Source, az *authz.Authorizer, sink audit.Sink, admin map[string]http.Handler, log *slog.Logger) (approvers, func(), error) {
	switch {
	case cfg.Policy.DevApprover():
		q := approval.NewQueue()
		admin["/approvals"] = q.Handler()
		admin["/approvals/"] = q.Handler()
		log.WarnContext(ctx, "approvals are resolved through the unauthenticated admin API: for development and demos only",
			"admin", *cfg.Admin.Listen)
		return approvers{approve: sess.QueueApprover(q, log), queue: q}, func() {}, nil
	case cfg.Policy == nil || cfg.Policy.Approver != config.ApproverOIDC:
		return approvers{}, func() {}, nil
	}
	if az == nil {
		return approvers{}, nil, errors.New("approver = \"oidc\" needs Cedar policies: who may approve is the approve action")
	}
	backend, closeBackend, where, err := openApprovalsBackend(ctx, cfg, src)
	if err != nil {
		return approvers{}, nil, err
	}
	record := func(audit.Record) error { return nil }
	if sink != nil {
		record = func(rec audit.Record) error {
			if rec.Time.IsZero() {
				rec.Time = time.Now().UTC()
			}
			if err := sink.Write(rec, true); err != nil {
				return fmt.Errorf("the audit log is unavailable, so the decision was not recorded: %w", err)
			}
			return nil
		}
	}
	desk, err := approval.NewDesk(approval.DeskConfig{Backend: backend, Record: record,
		Authorize: func(p oidc.Person, r approval.Request) error {
			_, err := az.Approve(authz.Person{Email: p.Email, Issuer: p.Issuer, Groups: p.Groups}, authz.ApprovalRequest{
				ID: r.ID, Target: r.Target, Action: r.Action, Text: r.Statement, Fingerprint: r.Fingerprint, SPIFFEID: r.SPIFFEID,
				Owner: r.Owner, Policies: r.Policies, Selectors: r.Attestation, Attested: r.Attested})
			return err
		}})
	if err != nil {
		closeBackend()
		return approvers{}, nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	go desk.Run(sctx, sweepInterval, func(err error) { log.ErrorContext(sctx, "approvals sweep failed", "error", err) })

	o := cfg.Approvers.OIDC
	// The approvals API takes the ID tokens of `svidbroker approvals`, the CLI client's.
	ocfg := oidc.Config{IssuerURL: o.Issuer, ClientID: o.CLIClientID, ClientSecretFile: o.ClientSecretFile, CAFile: o.CAFile,
		EmailClaim: o.EmailClaim, GroupsClaim: o.GroupsClaim}
	verify := lazyVerifier(ocfg)
	api := approval.APIHandler(desk, verify)
	admin["/approvals"] = api
	admin["/approvals/"] = api
	if listen := *cfg.Admin.Listen; listen != "" && !config.Loopback(listen) {
		log.WarnContext(ctx, "the approvals API takes ID tokens in clear HTTP on a non-loopback admin listener: put it behind TLS or on loopback",
			"admin", listen)
	}
	approve, grants := sess.DeskApprover(desk, log)
	log.InfoContext(ctx, "approvals are decided by people of the approvers' provider, as Cedar's approve action permits",
		"issuer", o.Issuer, "store", where)
	return approvers{approve: approve, grants: grants, desk: desk}, func() { stop(); closeBackend() }, nil
}

// lazyVerifier reads the provider's discovery document at the first login rather than at start, so
// that a provider down at start does not stop the broker (nobody can approve until it is back).
func lazyVerifier(cfg oidc.Config) approval.VerifyFunc {
	var (
		mu sync.Mutex
		v  *oidc.Verifier
	)
	return func(ctx context.Context, raw string) (oidc.Person, error) {
		mu.Lock()
		if v == nil {
			nv, err := oidc.New(ctx, cfg)
			if err != nil {
				mu.Unlock()
				return oidc.Person{}, err
			}
			v = nv
		}
		cur := v
		mu.Unlock()
		return cur.VerifyIDToken(ctx, raw, "")
	}
}

// openApprovalsBackend opens the desk's store: the journal in the state directory, or the audit
// database a fleet shares, where the broker logs in with its SVID.
func openApprovalsBackend(ctx context.Context, cfg *config.Config, src *workloadapi.X509Source) (approval.Backend, func(), string, error) {
	if cfg.Approvers.Store != "postgres" {
		path := filepath.Join(cfg.Approvers.StateDir, "approvals.journal")
		j, err := approval.OpenJournal(path)
		if err != nil {
			return nil, nil, "", err
		}
		return j, func() { j.Close() }, path, nil
	}
	pg := cfg.Audit.Postgres
	tlsCfg, err := identity.BackendConfig(pg.CAFile, pg.ServerName, src)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := approval.OpenPostgres(ctx, func(ctx context.Context) (*pgx.Conn, error) {
		return postgres.ConnectSVID(ctx, pg.Address, pg.Database, pg.User, tlsCfg)
	})
	if err != nil {
		return nil, nil, "", err
	}
	return p, func() { p.Close() }, "postgres " + pg.Address + "/" + pg.Database, nil
}

// setNotifier tells n of what happens to the approvers' requests: the dev queue's, or the desk's
// (each change told once, by the broker that made it; a vote that does not yet resolve a request
// of several approvers is no event).
func (a approvers) setNotifier(n approval.Notifier) {
	if a.queue != nil {
		a.queue.SetNotifier(n)
	}
	if a.desk == nil {
		return
	}
	a.desk.SetOnChange(func(r approval.Request) {
		ev := approval.Event{Kind: r.State, Request: r, Reason: r.Ended, At: time.Now().UTC()}
		switch r.State {
		case approval.StatePending:
			if len(r.Approvals) > 0 {
				return
			}
			ev.Kind = approval.EventRaised
		case approval.StateApproved, approval.StateDenied:
			ev.By = r.Approvers()
			if r.State == approval.StateDenied {
				for _, v := range r.Approvals {
					if !v.Approve {
						ev.By = v.Email
					}
				}
			}
		case approval.StateExpired, approval.StateWithdrawn, approval.StateUsed:
		default:
			return
		}
		n.Notify(ev)
	})
}

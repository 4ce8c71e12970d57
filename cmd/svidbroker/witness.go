package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

// witnessFor builds an audit block's witness. The broker passes its SVID source, which it presents
// to an HTTPS or PostgreSQL witness; an auditor passes nil, and for a PostgreSQL witness a connection
// URL with their own credentials (pgURL).
func witnessFor(w *config.AuditWitness, src x509svid.Source, pgURL string) (audit.Witness, error) {
	switch {
	case w.Dir != "":
		return &audit.FileWitness{Dir: w.Dir}, nil
	case w.URL != "":
		return httpsWitness(w.URL, w.CAFile, w.ServerName, src)
	case pgURL != "":
		return &audit.PostgresWitness{Connect: func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, pgURL) }}, nil
	case w.Postgres != nil && src != nil:
		pg := w.Postgres
		tlsCfg, err := identity.BackendConfig(pg.CAFile, pg.ServerName, src)
		if err != nil {
			return nil, err
		}
		return &audit.PostgresWitness{Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return postgres.ConnectSVID(ctx, pg.Address, pg.Database, pg.User, tlsCfg)
		}}, nil
	case w.Postgres != nil:
		return nil, errors.New("the witness is a PostgreSQL database: add --witness-postgres URL, with your own credentials")
	}
	return nil, errors.New("the audit block's witness names no store")
}

// httpsWitness is an HTTPS witness whose certificate is verified against caFile; src, if not nil, is
// presented as the client certificate. Redirects are not followed: checkpoints go where configured.
func httpsWitness(url, caFile, serverName string, src x509svid.Source) (audit.Witness, error) {
	tlsCfg, err := identity.BackendConfig(caFile, serverName, src)
	if err != nil {
		return nil, err
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return audit.NewHTTPWitness(url, client)
}

// witnessConfig adds the audit block's witness, and the verifier that checks what it holds, to the
// log's configuration. Without a witness, the verifier beside the signing key, when there is one,
// checks the chain's checkpoints when it is opened.
func witnessConfig(a *config.Audit, src x509svid.Source, cfg *audit.Config) error {
	w := a.Witness
	if w == nil {
		if v, err := audit.LoadVerifier(filepath.Join(filepath.Dir(a.SigningKeyFile), audit.VerifierKeyFile)); err == nil {
			cfg.Verifier = v
		}
		return nil
	}
	v, err := audit.LoadVerifier(w.VerifierKeyFile)
	if err != nil {
		return err
	}
	if cfg.Witness, err = witnessFor(w, src, ""); err != nil {
		return err
	}
	cfg.Verifier, cfg.WitnessTimeout, cfg.WitnessMaxLag = v, w.TimeoutD, w.MaxLagD
	if a.OnFailure == "continue" {
		cfg.WitnessMaxLag = -1 // availability first: a lagging witness refuses nothing, as a failed store does not
	}
	return nil
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// AuditWitness is where the broker also sends every signed checkpoint of its chain: exactly one of
// dir (files, on another disk than the log), url (an HTTPS service speaking the witness protocol in
// README.md) or a postgres block (a table in another database, where the broker may only insert and
// select). The broker only ever adds to a witness.
type AuditWitness struct {
	// Dir keeps the checkpoints in <dir>/<chain>.witness. Put it on another disk than the log.
	Dir string `hcl:"dir,optional"`
	// URL is an HTTPS witness; CAFile verifies its certificate (ServerName defaults to the URL's
	// host), and the broker presents its SVID.
	URL        string `hcl:"url,optional"`
	CAFile     string `hcl:"ca_file,optional"`
	ServerName string `hcl:"server_name,optional"`
	// Postgres keeps the checkpoints in the table svidbroker_audit_witness of another database; the
	// broker logs in with its SVID.
	Postgres *AuditPostgres `hcl:"postgres,block"`
	// VerifierKeyFile checks what the witness holds. Default: verifier.key beside signing_key_file.
	VerifierKeyFile string `hcl:"verifier_key_file,optional"`
	// Timeout bounds each call to the witness, retries included. Default "5s".
	Timeout string `hcl:"timeout,optional"`
	// MaxLag is how long a signed checkpoint may wait for the witness to take it. Beyond it, the audit
	// log counts as unavailable: new sessions and statements are refused (unless on_failure =
	// "continue") until the witness takes it. Default "1m".
	MaxLag string `hcl:"max_lag,optional"`

	TimeoutD, MaxLagD time.Duration
}

// auditWitness validates the audit block's witness, filling in defaults.
func (v *validator) auditWitness(a *Audit) {
	w := a.Witness
	if w == nil {
		return
	}
	at := func(attr ...string) []string { return append([]string{"audit", "witness"}, attr...) }
	n := 0
	for _, set := range []bool{w.Dir != "", w.URL != "", w.Postgres != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.fail("Audit witness", "audit.witness needs exactly one of dir (files on another disk), url (an HTTPS witness) or a postgres block.", at()...)
	}
	if w.Dir != "" && a.Dir != "" {
		if wd, ld := filepath.Clean(w.Dir), filepath.Clean(a.Dir); wd == ld {
			v.fail("Audit witness", fmt.Sprintf("audit.witness.dir %q is the log's own directory: whoever removes the log removes the witness with it. Use another disk.", w.Dir), at("dir")...)
		}
	}
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			v.fail("Audit witness", fmt.Sprintf("audit.witness.url %q must be an https URL.", w.URL), at("url")...)
		} else if w.ServerName == "" {
			w.ServerName = u.Hostname()
		}
		if _, err := os.Stat(w.CAFile); err != nil {
			v.fail("Unreadable CA file", fmt.Sprintf("audit.witness.ca_file: %v. An HTTPS witness's certificate is verified against it.", err), at("ca_file")...)
		}
	}
	if pg := w.Postgres; pg != nil {
		v.hostPort(pg.Address, at("postgres", "address")...)
		if pg.ServerName == "" {
			pg.ServerName, _, _ = net.SplitHostPort(pg.Address)
		}
		if _, err := os.Stat(pg.CAFile); err != nil {
			v.fail("Unreadable CA file", fmt.Sprintf("audit.witness.postgres.ca_file: %v.", err), at("postgres", "ca_file")...)
		}
		if ap := a.Postgres; ap != nil && ap.Address == pg.Address && ap.Database == pg.Database {
			v.fail("Audit witness", "audit.witness.postgres is the audit database itself: whoever removes the log's rows removes the witness's with them. Use another database.", at("postgres")...)
		}
	}
	if w.VerifierKeyFile == "" {
		w.VerifierKeyFile = filepath.Join(filepath.Dir(a.SigningKeyFile), "verifier.key")
	}
	if _, err := os.Stat(w.VerifierKeyFile); err != nil {
		v.fail("Unreadable audit key", fmt.Sprintf("audit.witness.verifier_key_file: %v. `svidbroker audit keygen` writes verifier.key beside signing.key.", err), at("verifier_key_file")...)
	}
	w.TimeoutD = v.duration(w.Timeout, 5*time.Second, at("timeout")...)
	w.MaxLagD = v.duration(w.MaxLag, time.Minute, at("max_lag")...)
	if w.MaxLagD < w.TimeoutD || w.MaxLagD < a.CheckpointIntervalD {
		v.fail("Audit witness", fmt.Sprintf("audit.witness.max_lag %s must be at least the witness's timeout (%s) and the checkpoint_interval (%s), or the broker refuses access while the witness works.",
			w.MaxLagD, w.TimeoutD, a.CheckpointIntervalD), at("max_lag")...)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/config"
)

// errVerifyFailed makes `audit verify` exit non-zero; the problems are already printed.
var errVerifyFailed = errors.New("audit chain does not verify")

// chainFlags locate a chain, from the broker's configuration or directly.
type chainFlags struct {
	config, dir, chain, macKey, verifierKey, postgres string
	// witnessCfg is the configuration's witness, if it has one.
	witnessCfg *config.AuditWitness
}

func (c *chainFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "the broker's configuration `file` (its audit block)")
	fs.StringVar(&c.dir, "dir", "", "the audit directory, without --config")
	fs.StringVar(&c.chain, "chain", "", "the chain name, without --config")
	fs.StringVar(&c.macKey, "mac-key", "", "the MAC key file, without --config")
	fs.StringVar(&c.verifierKey, "verifier-key", "", "the checkpoint verifier key (default: verifier.key beside the signing or MAC key)")
	fs.StringVar(&c.postgres, "postgres", "", "read a chain kept in PostgreSQL: a connection `URL` with the auditor's own credentials")
}

// check reports a command line that names no chain as a usage mistake of the command name.
func (c *chainFlags) check(stderr io.Writer, name string) error {
	if c.config == "" && ((c.dir == "" && c.postgres == "") || c.chain == "") {
		return usageError(stderr, name, "give --config FILE, or --dir DIR (or --postgres URL) and --chain NAME")
	}
	return nil
}

// noArgs reports arguments left after the flags as a usage mistake of the command name.
func noArgs(stderr io.Writer, name string, fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageError(stderr, name, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func (c *chainFlags) resolve() error {
	if c.config != "" {
		cfg, err := config.Load(c.config, plugins())
		if err != nil {
			return err
		}
		if cfg.Audit == nil {
			return fmt.Errorf("%s has no audit block", c.config)
		}
		if cfg.Audit.Postgres != nil && c.postgres == "" {
			return fmt.Errorf("%s keeps its chain in PostgreSQL: add --postgres URL, with your own credentials", c.config)
		}
		c.dir, c.chain, c.macKey, c.witnessCfg = cfg.Audit.Dir, cfg.Audit.Chain, cfg.Audit.MACKeyFile, cfg.Audit.Witness
		if c.verifierKey == "" {
			c.verifierKey = filepath.Join(filepath.Dir(cfg.Audit.SigningKeyFile), audit.VerifierKeyFile)
		}
	}
	if (c.dir == "" && c.postgres == "") || c.chain == "" {
		return fmt.Errorf("give --config, or --dir (or --postgres) and --chain")
	}
	if c.verifierKey == "" && c.macKey != "" {
		c.verifierKey = filepath.Join(filepath.Dir(c.macKey), audit.VerifierKeyFile)
	}
	return nil
}

// reader resolves the flags and opens the chain for reading; close releases it.
func (c *chainFlags) reader(ctx context.Context) (read audit.Reader, close func(), err error) {
	if err := c.resolve(); err != nil {
		return nil, nil, err
	}
	if c.postgres == "" {
		return audit.Files(c.dir, c.chain), func() {}, nil
	}
	conn, err := pgx.Connect(ctx, c.postgres)
	if err != nil {
		return nil, nil, fmt.Errorf("audit database: %w", err)
	}
	return audit.Postgres(ctx, conn, c.chain), func() { conn.Close(context.Background()) }, nil
}

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name, err := subcommand("audit", args, stdout, stderr)
	if err != nil {
		return err
	}
	fs := newFlags(name)
	parse := func() error { return parseFlags(fs, name, args[1:], stdout, stderr) }
	var cf chainFlags
	// chainOnly checks a command line that names a chain and nothing else.
	chainOnly := func() error {
		if err := noArgs(stderr, name, fs); err != nil {
			return err
		}
		return cf.check(stderr, name)
	}
	switch args[0] {
	case "keygen":
		dir := fs.String("dir", "", "directory for the new keys")
		signer := fs.String("name", "svidbroker-audit", "the signer's name, shown in checkpoints")
		if err := parse(); err != nil {
			return err
		}
		if *dir == "" {
			return usageError(stderr, name, "--dir DIR is required")
		}
		if err := audit.GenerateKeys(*dir, *signer); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (keep secret; auditors need it), %s (keep secret) and %s (public) in %s\n",
			audit.MACKeyFile, audit.SigningKeyFile, audit.VerifierKeyFile, *dir)
		return nil
	case "verify":
		cf.register(fs)
		var wf witnessFlags
		wf.register(fs)
		if err := parse(); err != nil {
			return err
		}
		if err := chainOnly(); err != nil {
			return err
		}
		if cf.config == "" && cf.macKey == "" {
			return usageError(stderr, name, "--mac-key FILE is required without --config")
		}
		if err := wf.check(stderr, name); err != nil {
			return err
		}
		if err := cf.resolve(); err != nil {
			return err
		}
		return verifyChain(ctx, &cf, &wf, stdout)
	case "sessions":
		cf.register(fs)
		var f audit.Filter
		fs.StringVar(&f.SPIFFEID, "spiffe-id", "", "only this caller")
		fs.StringVar(&f.Target, "target", "", "only this target")
		since := fs.String("since", "", "only sessions started since a duration ago (1h) or a time (RFC 3339)")
		fs.StringVar(&f.Decision, "decision", "", "deny: sessions in which anything was refused (the connection or a statement); allow: those in which nothing was")
		if err := parse(); err != nil {
			return err
		}
		if err := chainOnly(); err != nil {
			return err
		}
		if *since != "" {
			if d, err := time.ParseDuration(*since); err == nil {
				f.Since = time.Now().Add(-d)
			} else if f.Since, err = time.Parse(time.RFC3339, *since); err != nil {
				return usageError(stderr, name, "--since %q: give a duration such as 1h or an RFC 3339 time", *since)
			}
		}
		if f.Decision != "" && f.Decision != "allow" && f.Decision != "deny" {
			return usageError(stderr, name, "--decision %q: give allow or deny", f.Decision)
		}
		read, done, err := cf.reader(ctx)
		if err != nil {
			return err
		}
		defer done()
		ss, err := audit.Sessions(read, f)
		if err != nil {
			return err
		}
		for _, s := range ss {
			state := "ended"
			if !s.Ended {
				state = "open"
			}
			if s.Denied {
				state = "connection refused"
			}
			fmt.Fprintf(stdout, "%s  %s  %-40s %-10s %3d operations  %3d refused  %s\n", s.Session, s.Start.UTC().Format(time.RFC3339),
				audit.Escape(s.SPIFFEID), audit.Escape(s.Target), s.Statements, s.DeniedStatements, state)
		}
		return nil
	case "export":
		cf.register(fs)
		session := fs.String("session", "", "only this session")
		if err := parse(); err != nil {
			return err
		}
		if err := chainOnly(); err != nil {
			return err
		}
		read, done, err := cf.reader(ctx)
		if err != nil {
			return err
		}
		defer done()
		enc := json.NewEncoder(stdout) // JSON escapes control characters
		return read(func(e audit.Entry) error {
			if *session != "" && e.Record.Session != *session {
				return nil
			}
			return enc.Encode(e)
		})
	default:
		return unknownCommand(stderr, "audit", args[0], subcommandNames("audit"))
	}
}

func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay")
	var cf chainFlags
	cf.register(fs)
	follow := fs.Bool("follow", false, "keep printing the session's records as they are written, until it ends")
	if err := parseFlags(fs, "replay", args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError(stderr, "replay", "give one SESSION (list them with 'svidbroker audit sessions')")
	}
	if err := cf.check(stderr, "replay"); err != nil {
		return err
	}
	read, done, err := cf.reader(ctx)
	if err != nil {
		return err
	}
	defer done()
	printed := 0
	for {
		tl, err := audit.Timeline(read, fs.Arg(0))
		if err != nil {
			return err
		}
		if len(tl) == 0 && !*follow {
			return fmt.Errorf("no session %q in chain %q", fs.Arg(0), cf.chain)
		}
		for _, e := range tl[printed:] {
			fmt.Fprintln(stdout, audit.Format(e))
		}
		printed = len(tl)
		if !*follow || (printed > 0 && tl[printed-1].Record.Kind == audit.KindSessionEnd) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/config"
)

// witnessFlags name the witness `audit verify` checks the chain against, overriding the
// configuration's.
type witnessFlags struct {
	witness, ca, postgres string
	none                  bool
}

func (w *witnessFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.witness, "witness", "", "verify against this witness: a `DIR` (a file witness) or an https URL (default: the configuration's audit.witness)")
	fs.StringVar(&w.ca, "witness-ca", "", "the CA `file` that verifies an https witness's certificate")
	fs.StringVar(&w.postgres, "witness-postgres", "", "verify against a PostgreSQL witness: a connection `URL` with your own credentials")
	fs.BoolVar(&w.none, "no-witness", false, "do not use the configuration's witness (what is proven then ends at the last checkpoint)")
}

// check reports conflicting witness flags as a usage mistake of the command name.
func (w *witnessFlags) check(stderr io.Writer, name string) error {
	n := 0
	for _, set := range []bool{w.witness != "", w.postgres != "", w.none} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return usageError(stderr, name, "give at most one of --witness, --witness-postgres and --no-witness")
	case strings.HasPrefix(w.witness, "https://") && w.ca == "":
		return usageError(stderr, name, "--witness-ca FILE is required with an https witness")
	case strings.Contains(w.witness, "://") && !strings.HasPrefix(w.witness, "https://"):
		return usageError(stderr, name, "--witness %q: give a directory or an https URL", w.witness)
	}
	return nil
}

// resolve returns the witness to verify against, or nil for none.
func (w *witnessFlags) resolve(cf *chainFlags) (audit.Witness, error) {
	switch {
	case w.none:
		return nil, nil
	case strings.HasPrefix(w.witness, "https://"):
		return httpsWitness(w.witness, w.ca, "", nil)
	case w.witness != "":
		return &audit.FileWitness{Dir: w.witness}, nil
	case w.postgres != "":
		return witnessFor(&config.AuditWitness{}, nil, w.postgres)
	case cf.witnessCfg != nil:
		return witnessFor(cf.witnessCfg, nil, "")
	}
	return nil, nil
}

// verifyChain verifies the chain the flags name, against its witness when there is one, and says
// what is proven: with a witness, every record up to the witness's latest checkpoint; without one,
// only up to the last signed checkpoint, never "intact".
func verifyChain(ctx context.Context, cf *chainFlags, wf *witnessFlags, stdout io.Writer) error {
	key, err := audit.LoadMACKey(cf.macKey)
	if err != nil {
		return err
	}
	v, err := audit.LoadVerifier(cf.verifierKey)
	if err != nil {
		return err
	}
	w, err := wf.resolve(cf)
	if err != nil {
		return err
	}
	var rep *audit.Report
	if cf.postgres != "" {
		conn, err := pgx.Connect(ctx, cf.postgres)
		if err != nil {
			return fmt.Errorf("audit database: %w", err)
		}
		defer conn.Close(context.Background())
		if w != nil {
			rep, err = audit.VerifyPostgresWitnessed(ctx, conn, cf.chain, key, v, w)
		} else {
			rep, err = audit.VerifyPostgres(ctx, conn, cf.chain, key, v)
		}
		if err != nil {
			return err
		}
	} else if w != nil {
		if rep, err = audit.VerifyWitnessed(ctx, cf.dir, cf.chain, key, v, w); err != nil {
			return err
		}
	} else if rep, err = audit.Verify(cf.dir, cf.chain, key, v); err != nil {
		return err
	}
	printReport(stdout, cf.chain, rep)
	if !rep.OK() {
		return errVerifyFailed
	}
	return nil
}

// printReport prints a verification's problems, the failed writes it found, and what it proves.
func printReport(out io.Writer, chain string, rep *audit.Report) {
	for _, p := range rep.Problems {
		fmt.Fprintf(out, "PROBLEM       %s\n", p)
	}
	for _, f := range rep.FailedWrites {
		fmt.Fprintf(out, "FAILED WRITE  %s\n", f)
	}
	for _, t := range []struct {
		torn *audit.Torn
		file string
	}{{rep.Torn, "log"}, {rep.TornCheckpoint, "checkpoints file"}} {
		if t.torn != nil {
			fmt.Fprintf(out, "FAILED WRITE  %s %s, after the last whole record: not tampering; the broker cuts it when it starts and records its hash\n", t.file, t.torn)
		}
	}
	fmt.Fprintf(out, "chain %q: %d records, %d signed checkpoints", chain, rep.Records, rep.Checkpoints)
	if !rep.OK() {
		fmt.Fprintf(out, ": %d problems\n", len(rep.Problems))
		return
	}
	fmt.Fprintln(out)
	seq, at := rep.Proven()
	when := "unknown time"
	if !at.IsZero() {
		when = at.UTC().Format(time.RFC3339)
	}
	if rep.Witnessed != nil {
		fmt.Fprintf(out, "verified against the witness through record %d (its latest checkpoint, signed %s): no record up to it was removed or changed\n", seq, when)
		if seq < rep.Records {
			fmt.Fprintf(out, "records %d to %d follow the witness's latest checkpoint: they verify, and are proven once it takes a later one (normal while the broker runs; after a crash, records beyond them may be missing)\n", seq+1, rep.Records)
		}
		return
	}
	fmt.Fprintf(out, "verified through record %d (the last signed checkpoint, signed %s)\n", seq, when)
	if seq < rep.Records {
		fmt.Fprintf(out, "records %d to %d after the last checkpoint verify, but cannot be proven present, nor that none were cut after them\n", seq+1, rep.Records)
	}
	fmt.Fprintln(out, "without a witness, the log cut together with its checkpoints back to an earlier checkpoint would verify the same: configure audit.witness and verify with it")
}

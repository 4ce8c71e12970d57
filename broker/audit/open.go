package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Open opens (or creates) the chain in files under cfg.Dir, checks that it is intact up to its end,
// and starts the writer. A new chain starts with a KindChainStart record, signed at once. An
// incomplete final line that a failed write left (a full disk, then a crash) is cut, and the next
// record says where it was and its hash.
func Open(cfg Config) (*Log, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, cfg.Chain+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit: chain %q is open in another process (one writer per chain): %w", cfg.Chain, err)
	}
	logPath, cpPath := chainPath(cfg.Dir, cfg.Chain), checkpointPath(cfg.Dir, cfg.Chain)
	rep, err := resume(cfg, isEmpty(logPath) && isEmpty(cpPath),
		fileLines(cpPath), fileLines(logPath))
	if err != nil {
		lock.Close()
		return nil, err
	}
	// Cut what a failed write left, before appending after it.
	for _, t := range []struct {
		path string
		torn *Torn
	}{{logPath, rep.Torn}, {cpPath, rep.TornCheckpoint}} {
		if t.torn != nil {
			if err := cutFile(t.path, t.torn.Offset); err != nil {
				lock.Close()
				return nil, fmt.Errorf("audit: cut the incomplete last line of %s: %w", t.path, err)
			}
		}
	}
	st := &fileStore{lock: lock}
	if st.f, st.size, err = openAppend(logPath); err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	if st.cp, st.cpSize, err = openAppend(cpPath); err != nil {
		st.f.Close()
		lock.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	// The files' names must survive a crash too, if they were just created.
	if err := syncDir(cfg.Dir); err != nil {
		st.close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	return begin(cfg, st, rep)
}

// resume verifies a chain before it is appended to: fresh says its store holds nothing (a new chain).
// It checks the chain against the witness's latest checkpoint, when the witness answers.
func resume(cfg Config, fresh bool, checkpoints, entries lineSource) (*Report, error) {
	var witnessed []byte
	unchecked := false
	if cfg.Witness != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.WitnessTimeout)
		latest, err := cfg.Witness.Latest(ctx, cfg.Chain)
		cancel()
		switch {
		case err != nil:
			unchecked = true
			cfg.Logger.Warn("audit: the witness did not answer at start; the chain is checked against it once it does, and until then no checkpoint is sent to it (new access is refused once one has waited longer than max_lag)",
				"chain", cfg.Chain, "error", err)
		case len(latest) > 0:
			witnessed = latest
		}
	}
	if fresh {
		if witnessed != nil {
			return nil, fmt.Errorf("audit: chain %q has no log and no checkpoints here, but the witness holds a checkpoint of it: the log was removed; restore it, or start a new chain under another name", cfg.Chain)
		}
		return &Report{witnessUnchecked: unchecked}, nil
	}
	rep, err := verify(cfg.Chain, cfg.MACKey, cfg.Verifier, witnessed, checkpoints, entries)
	if err != nil {
		return nil, err
	}
	rep.witnessUnchecked = unchecked
	// A crash between writing a new chain's start record and signing it leaves just that record.
	if rep.Records == 1 && rep.Checkpoints == 0 && len(rep.Problems) == 1 && strings.HasPrefix(rep.Problems[0], "the checkpoints file is missing or empty") {
		rep.Problems = nil
	}
	if !rep.OK() {
		return nil, fmt.Errorf("audit: chain %q does not verify; refusing to append to it: %s", cfg.Chain, rep.Problems[0])
	}
	return rep, nil
}

// begin starts a resumed chain's writer, then records what starting found: a new chain's start
// record and its checkpoint; a restart's cut incomplete lines.
func begin(cfg Config, st store, rep *Report) (*Log, error) {
	l := start(cfg, st, rep)
	if err := l.Err(); err != nil {
		l.Close()
		return nil, err
	}
	if rep.Records == 0 {
		if err := l.Append(Record{Time: cfg.Now().UTC(), Kind: KindChainStart, Detail: map[string]string{"chain": cfg.Chain}}); err != nil {
			l.Close()
			return nil, err
		}
	}
	if rep.Torn != nil || rep.TornCheckpoint != nil {
		d := map[string]string{"found": "at start", "error": "an earlier run's write failed (a full disk?) and left an incomplete last line, cut now"}
		tornDetail(d, "torn_", rep.Torn)
		tornDetail(d, "torn_checkpoint_", rep.TornCheckpoint)
		if err := l.Append(Record{Time: cfg.Now().UTC(), Kind: KindWriteFailed, Detail: d}); err != nil {
			l.Close()
			return nil, err
		}
		cfg.Logger.Warn("audit: cut an incomplete last line that a failed write left, and recorded its hash", "chain", cfg.Chain, "detail", d)
	}
	if rep.LastCheckpoint == 0 || rep.Torn != nil || rep.TornCheckpoint != nil {
		l.checkpoint() // sign the start record, or what the restart found, at once
	}
	if err := l.Err(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func tornDetail(d map[string]string, prefix string, t *Torn) {
	if t == nil {
		return
	}
	d[prefix+"offset"] = strconv.FormatInt(t.Offset, 10)
	d[prefix+"bytes"] = strconv.Itoa(t.Length)
	d[prefix+"sha256"] = t.SHA256
}

// isEmpty reports whether path is missing or empty.
func isEmpty(path string) bool {
	fi, err := os.Stat(path)
	return errors.Is(err, os.ErrNotExist) || err == nil && fi.Size() == 0
}

// cutFile truncates path to size, durably.
func cutFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return fdatasync(f)
}

// openAppend opens path for appending, creating it, and returns its size.
func openAppend(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

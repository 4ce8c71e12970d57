package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Witness keeps a copy of a chain's signed checkpoints where whoever can rewrite the log cannot: on
// another disk (FileWitness), in another database (PostgresWitness), or in another service
// (HTTPWitness). The broker only adds to it, never takes from it, and a witness never goes back to an
// earlier checkpoint of a chain. A log cut together with its checkpoints file then no longer covers
// the witness's latest checkpoint, which VerifyWitnessed reports.
type Witness interface {
	// Publish stores a signed checkpoint of record seq of chain. It fails with ErrWitnessConflict
	// when the witness holds a later checkpoint of the chain.
	Publish(ctx context.Context, chain string, seq uint64, signed []byte) error
	// Latest returns the latest checkpoint held for chain, or nil when there is none.
	Latest(ctx context.Context, chain string) ([]byte, error)
}

// ErrWitnessConflict is a witness refusing a checkpoint older than one it holds.
var ErrWitnessConflict = errors.New("audit: the witness holds a later checkpoint of this chain")

// MaxNoteBytes bounds a signed checkpoint as a witness reads it.
const MaxNoteBytes = 4 << 10

// VerifyWitnessed verifies a chain kept in files as Verify does, and that the log covers the
// witness's latest checkpoint: that no record the witness saw signed was cut, even together with its
// checkpoints.
func VerifyWitnessed(ctx context.Context, dir, chain string, key []byte, v note.Verifier, w Witness) (*Report, error) {
	latest, err := witnessLatest(ctx, w, chain)
	if err != nil {
		return nil, err
	}
	return verify(chain, key, v, latest, fileLines(checkpointPath(dir, chain)), fileLines(chainPath(dir, chain)))
}

// witnessLatest is the witness's latest checkpoint of chain, empty (not nil) when it holds none.
func witnessLatest(ctx context.Context, w Witness, chain string) ([]byte, error) {
	latest, err := w.Latest(ctx, chain)
	if err != nil {
		return nil, fmt.Errorf("audit: witness: %w", err)
	}
	if latest == nil {
		latest = []byte{}
	}
	return latest, nil
}

// queueWitness makes signed the checkpoint the witness is to take next; an older one waiting is
// dropped, since the newer covers it. WitnessMaxLag counts from the oldest one not yet taken.
func (l *Log) queueWitness(seq uint64, signed []byte) {
	l.mu.Lock()
	if l.wNote == nil {
		l.wSince = l.cfg.Now()
	}
	l.wNote, l.wSeq = signed, seq
	l.mu.Unlock()
	select {
	case l.wkick <- struct{}{}:
	default:
	}
}

// witnessOverdue says why the log takes no statement's record while a checkpoint has waited for the
// witness longer than WitnessMaxLag; l.mu is held.
func (l *Log) witnessOverdue() error {
	if l.wBroken != nil {
		return l.wBroken
	}
	if l.wNote == nil || l.cfg.WitnessMaxLag < 0 || l.cfg.Now().Sub(l.wSince) <= l.cfg.WitnessMaxLag {
		return nil
	}
	why := "it did not answer"
	if l.wErr != nil {
		why = l.wErr.Error()
	}
	return fmt.Errorf("%w: the witness has not taken the checkpoint of record %d for %s (over the witness's max_lag of %s; last attempt: %s): statements are refused until it does",
		ErrFailed, l.wSeq, l.cfg.Now().Sub(l.wSince).Round(time.Second), l.cfg.WitnessMaxLag, why)
}

// WitnessErr reports a checkpoint waiting for the witness after a failed attempt, within
// WitnessMaxLag or beyond it; nil when the witness has taken the latest or no witness is configured.
func (l *Log) WitnessErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wNote == nil || l.wErr == nil {
		return nil
	}
	return fmt.Errorf("the checkpoint of record %d has waited %s for the witness (max_lag %s): %v", l.wSeq,
		l.cfg.Now().Sub(l.wSince).Round(time.Second), l.cfg.WitnessMaxLag, l.wErr)
}

// witnessLoop sends the latest checkpoint to the witness, retrying with backoff until it takes it.
func (l *Log) witnessLoop() {
	defer close(l.wdone)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	backoff := l.cfg.FlushInterval
	for {
		select {
		case <-l.quit:
			return
		case <-l.wkick:
		case <-retry.C:
		}
		if err := l.publish(); err != nil {
			backoff = min(2*backoff, l.cfg.RetryInterval)
			l.cfg.Logger.Warn("audit: the witness did not take the latest checkpoint; it waits, and statements are refused once it has waited longer than max_lag",
				"chain", l.cfg.Chain, "error", err, "next_attempt_in", backoff)
			retry.Reset(backoff)
		} else {
			backoff = l.cfg.FlushInterval
		}
	}
}

// publish sends the waiting checkpoint, if any, within WitnessTimeout, once the chain is known to
// cover the witness's latest checkpoint.
func (l *Log) publish() error {
	l.mu.Lock()
	signed, seq, unchecked, broken := l.wNote, l.wSeq, l.wUnchecked, l.wBroken
	l.mu.Unlock()
	if signed == nil || broken != nil {
		return broken
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.WitnessTimeout)
	defer cancel()
	var err error
	if unchecked {
		err = l.checkWitness(ctx)
	}
	if err == nil {
		err = l.cfg.Witness.Publish(ctx, l.cfg.Chain, seq, signed)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.wErr = err
		return err
	}
	l.wErr = nil
	if l.wSeq == seq {
		l.wNote = nil
	}
	return nil
}

// checkWitness checks, once the witness answers, what Open could not: that the chain covers the
// witness's latest checkpoint. If it does not, records were removed before this start, and the log
// takes no statement's record from then on.
func (l *Log) checkWitness(ctx context.Context) error {
	latest, err := l.cfg.Witness.Latest(ctx, l.cfg.Chain)
	if err != nil {
		return err
	}
	broken := func(format string, a ...any) error {
		err := fmt.Errorf("%w: the chain does not cover the witness's latest checkpoint: "+format, append([]any{ErrFailed}, a...)...)
		l.cfg.Logger.Error("audit: records were removed from the chain before this start; no more statements are recorded (restart on the restored chain)",
			"chain", l.cfg.Chain, "error", err)
		l.mu.Lock()
		l.wBroken, l.wErr = err, err
		l.mu.Unlock()
		return err
	}
	if latest != nil {
		cp, err := openCheckpoint(latest, l.cfg.Verifier, l.cfg.Chain)
		if err != nil {
			return broken("%v", err)
		}
		l.mu.Lock()
		written := l.written
		l.mu.Unlock()
		if cp.seq > written {
			return broken("it holds record %d, and the log held only %d when it was opened (removed)", cp.seq, written)
		}
		r, ok := l.st.(interface{ macAt(uint64) (string, error) })
		if !ok {
			return broken("the store cannot read record %d back", cp.seq)
		}
		mac, err := r.macAt(cp.seq)
		if err != nil {
			return err
		}
		if mac != cp.mac {
			return broken("record %d differs from the one it holds (rewritten)", cp.seq)
		}
	}
	l.mu.Lock()
	l.wUnchecked = false
	l.mu.Unlock()
	return nil
}

// publishFinal sends the last checkpoint at close, once.
func (l *Log) publishFinal() {
	if l.cfg.Witness == nil {
		return
	}
	if err := l.publish(); err != nil {
		l.cfg.Logger.Error("audit: the witness did not take the final checkpoint", "chain", l.cfg.Chain, "error", err)
	}
}

// FileWitness keeps checkpoints in files under Dir, one per chain (<chain>.witness), which it only
// appends to. Put Dir on another disk than the log, writable by the broker and readable by auditors,
// where whoever could rewrite the log cannot remove what is written (for example a file system that
// only appends, or a directory another user copies away).
type FileWitness struct {
	Dir string

	mu   sync.Mutex
	last map[string]uint64 // the latest seq written per chain, once read
	size map[string]int64  // each file's size after its last whole line
}

var _ Witness = (*FileWitness)(nil)

// witnessLine is one line of a witness file, and the JSON of the HTTPS witness protocol.
type witnessLine struct {
	Chain string `json:"chain"`
	Seq   uint64 `json:"seq"`
	Note  string `json:"note"`
}

func (w *FileWitness) path(chain string) (string, error) {
	if !validChainName(chain) {
		return "", fmt.Errorf("audit: witness: chain name %q is not a file name (letters, digits, '.', '-', '_')", Escape(chain))
	}
	return filepath.Join(w.Dir, chain+".witness"), nil
}

// Publish appends the checkpoint to the chain's witness file and flushes it.
func (w *FileWitness) Publish(ctx context.Context, chain string, seq uint64, signed []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.last == nil {
		w.last, w.size = map[string]uint64{}, map[string]int64{}
	}
	last, ok := w.last[chain]
	if !ok {
		held, size, err := w.read(chain)
		if err != nil {
			return err
		}
		if held != nil {
			last = held.Seq
		}
		w.last[chain], w.size[chain] = last, size
	}
	switch {
	case seq < last:
		return fmt.Errorf("%w (record %d, not %d)", ErrWitnessConflict, last, seq)
	case seq == last && last > 0:
		return nil
	}
	if err := os.MkdirAll(w.Dir, 0o700); err != nil {
		return err
	}
	path, err := w.path(chain)
	if err != nil {
		return err
	}
	f, size, err := openAppend(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if size == 0 {
		if err := syncDir(w.Dir); err != nil {
			return err
		}
	}
	if size != w.size[chain] {
		// An incomplete line from a failed write: cut it, so that the next line stands alone.
		if _, err := cutTail(f, w.size[chain]); err != nil {
			return err
		}
	}
	line, _ := json.Marshal(witnessLine{Chain: chain, Seq: seq, Note: string(signed)})
	line = append(line, '\n')
	if _, err := f.Write(line); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	w.last[chain], w.size[chain] = seq, w.size[chain]+int64(len(line))
	return nil
}

// Latest returns the chain's latest checkpoint in the witness file.
func (w *FileWitness) Latest(ctx context.Context, chain string) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	held, _, err := w.read(chain)
	if err != nil || held == nil {
		return nil, err
	}
	return []byte(held.Note), nil
}

// read returns the chain's checkpoint of the highest seq, and the size of the file's whole lines. A
// line that is not a checkpoint of the chain is an error: the file is the witness's alone.
func (w *FileWitness) read(chain string) (*witnessLine, int64, error) {
	var best *witnessLine
	var size int64
	path, err := w.path(chain)
	if err != nil {
		return nil, 0, err
	}
	err = readLines(path, func(n int, line []byte) error {
		if line[len(line)-1] != '\n' {
			return nil // an incomplete last line: the next Publish cuts it
		}
		size += int64(len(line))
		wl, err := decodeWitnessLine(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if wl.Chain != chain {
			return fmt.Errorf("%s:%d: a checkpoint of chain %q", path, n, Escape(wl.Chain))
		}
		if best == nil || wl.Seq >= best.Seq {
			best = &wl
		}
		return nil
	})
	return best, size, err
}

// decodeWitnessLine reads a witnessed checkpoint, as stored or sent: a JSON object with the chain,
// the seq and the signed note, within MaxNoteBytes.
func decodeWitnessLine(b []byte) (witnessLine, error) {
	var wl witnessLine
	if len(b) > 2*MaxNoteBytes {
		return wl, fmt.Errorf("checkpoint longer than %d bytes", 2*MaxNoteBytes)
	}
	if err := json.Unmarshal(b, &wl); err != nil {
		return wl, fmt.Errorf("not a witnessed checkpoint: %v", err)
	}
	switch {
	case wl.Chain == "" || len(wl.Chain) > 256:
		return wl, errors.New("a witnessed checkpoint needs its chain (at most 256 bytes)")
	case wl.Note == "" || len(wl.Note) > MaxNoteBytes:
		return wl, fmt.Errorf("a witnessed checkpoint needs its signed note (at most %d bytes)", MaxNoteBytes)
	}
	return wl, nil
}

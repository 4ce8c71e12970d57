package audit

import (
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Report is the outcome of verifying a chain.
type Report struct {
	// Records is the number of entries read; LastMAC the last entry's MAC.
	Records uint64
	LastMAC string
	// Checkpoints is the number of signed checkpoints checked; LastCheckpoint the highest seq one covers.
	Checkpoints    int
	LastCheckpoint uint64
	// Problems say exactly where the chain is broken; empty means intact.
	Problems []string
}

// OK reports whether the chain verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Uncovered returns the records after the last checkpoint, from and to (from > to when there are
// none). They were written, and verify, but no signed checkpoint proves they were durable or that
// nothing after them was cut: after a crash or a failed flush, records beyond them may be missing
// unnoticed. A running broker's log always has such a tail, up to one checkpoint interval long; a
// cleanly closed one has none.
func (r *Report) Uncovered() (from, to uint64) { return r.LastCheckpoint + 1, r.Records }

type checkpoint struct {
	line int
	seq  uint64
	mac  string
}

// Verify checks a chain: every entry's MAC and link to the previous one (catching edits, deletions,
// insertions and reordering), and every signed checkpoint against the entry it names (catching a
// truncated tail up to the last checkpoint). With a nil verifier, checkpoints are not read.
func Verify(dir, chain string, key []byte, v note.Verifier) (*Report, error) {
	return verify(chain, key, v,
		func(f func(int, []byte) error) error { return readLines(checkpointPath(dir, chain), f) },
		func(f func(int, []byte) error) error { return readLines(chainPath(dir, chain), f) })
}

// lines iterates over numbered lines of a chain or of its checkpoints, wherever they are stored.
type lineSource func(func(n int, line []byte) error) error

func verify(chain string, key []byte, v note.Verifier, checkpoints, entries lineSource) (*Report, error) {
	rep := &Report{}
	var cps []checkpoint
	if v != nil {
		err := checkpoints(func(n int, line []byte) error {
			var raw struct{ Note string }
			if err := json.Unmarshal(line, &raw); err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: not a checkpoint", n))
				return nil
			}
			nt, err := note.Open([]byte(raw.Note), note.VerifierList(v))
			if err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: signature does not verify: %v", n, err))
				return nil
			}
			cp, err := parseCheckpoint(nt.Text, chain)
			if err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: %v", n, err))
				return nil
			}
			cp.line = n
			cps = append(cps, cp)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	want := map[uint64]string{}
	for _, cp := range cps {
		want[cp.seq] = ""
	}
	expected, prev := uint64(1), genesis(key, chain)
	macs := newEntryMACs(key)
	err := entries(func(n int, line []byte) error {
		var e entry
		if err := json.Unmarshal(line, &e); err != nil || e.MAC == "" {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: not a chain entry (damaged or inserted)", n))
			return nil
		}
		switch {
		case e.Seq > expected:
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: records %d to %d are missing (deleted)", n, expected, e.Seq-1))
		case e.Seq < expected:
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: record %d appears again or out of order (inserted or reordered)", n, e.Seq))
		case e.Prev != prev:
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: record %d does not follow record %d (inserted, deleted or reordered)", n, e.Seq, e.Seq-1))
		}
		if !hmac.Equal([]byte(macs.mac(e.Seq, e.Prev, e.Rec)), []byte(e.MAC)) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: record %d was altered (MAC mismatch)", n, e.Seq))
		}
		if _, ok := want[e.Seq]; ok {
			want[e.Seq] = e.MAC
		}
		expected, prev = e.Seq+1, e.MAC
		rep.Records, rep.LastMAC = e.Seq, e.MAC
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for _, cp := range cps {
		switch mac := want[cp.seq]; {
		case cp.seq > rep.Records:
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: signed at record %d, but the log ends at record %d (truncated)", cp.line, cp.seq, rep.Records))
		case mac != cp.mac:
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: record %d differs from the one signed (rewritten)", cp.line, cp.seq))
		}
		rep.Checkpoints++
		rep.LastCheckpoint = max(rep.LastCheckpoint, cp.seq)
	}
	return rep, nil
}

func parseCheckpoint(text, chain string) (checkpoint, error) {
	var cp checkpoint
	fields := map[string]string{}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) == 0 || lines[0] != "svidbroker audit checkpoint" {
		return cp, fmt.Errorf("not a svidbroker checkpoint")
	}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		fields[k] = v
	}
	if fields["chain"] != chain {
		return cp, fmt.Errorf("checkpoint of chain %q, not %q", fields["chain"], chain)
	}
	seq, err := strconv.ParseUint(fields["seq"], 10, 64)
	if err != nil {
		return cp, fmt.Errorf("bad seq %q", fields["seq"])
	}
	return checkpoint{seq: seq, mac: fields["mac"]}, nil
}

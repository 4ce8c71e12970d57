package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Report is the outcome of verifying a chain.
type Report struct {
	// Records is the number of entries read; LastMAC the last entry's MAC.
	Records uint64
	LastMAC string
	// Checkpoints is the number of signed checkpoints checked; LastCheckpoint the highest seq one
	// covers, and LastCheckpointTime when it was signed.
	Checkpoints        int
	LastCheckpoint     uint64
	LastCheckpointTime time.Time
	// Torn is an incomplete final line of the log, left by a write that failed (a full disk) before
	// the broker could cut it; nil when the log ends with a whole line. It is not tampering: nothing
	// follows it, and a restart cuts it and records its hash.
	Torn *Torn
	// TornCheckpoint is the same for the checkpoints file.
	TornCheckpoint *Torn
	// FailedWrites describe the failed writes the chain records (KindWriteFailed), in order.
	FailedWrites []string
	// Witnessed is set when the chain was verified against a witness: the latest checkpoint the
	// witness holds, which the log covers unless a problem says otherwise.
	Witnessed *WitnessedCheckpoint
	// Problems say exactly where the chain is broken; empty means that nothing shows tampering.
	Problems []string

	lastNote         []byte // the signed checkpoint of LastCheckpoint
	witnessUnchecked bool   // the witness did not answer when the chain was opened
}

// Torn is an incomplete final line: its line number, where it starts, its length, and the SHA-256 of
// its bytes.
type Torn struct {
	Line   int
	Offset int64
	Length int
	SHA256 string
}

func (t *Torn) String() string {
	return fmt.Sprintf("line %d: a failed write left an incomplete final line (%d bytes at offset %d, sha256 %s)", t.Line, t.Length, t.Offset, t.SHA256)
}

// WitnessedCheckpoint is the latest checkpoint a witness holds for a chain.
type WitnessedCheckpoint struct {
	Seq  uint64
	Time time.Time
	// None says the witness holds no checkpoint of the chain.
	None bool
}

// OK reports whether nothing shows tampering or removal. It does not say that nothing was cut after
// the last checkpoint: see Proven.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Proven returns the last record whose presence, and that of every record before it, is proven: by
// the witness's latest checkpoint when the chain was verified against one, else by the last signed
// checkpoint, with when it was signed. Records after it verify, but a cut of the log together with
// its checkpoints back to that point would look the same; only a witness, which the broker can add to
// and never take from, sees such a cut.
func (r *Report) Proven() (seq uint64, at time.Time) {
	if w := r.Witnessed; w != nil && !w.None {
		return w.Seq, w.Time
	}
	return r.LastCheckpoint, r.LastCheckpointTime
}

// Uncovered returns the records after the last checkpoint, from and to (from > to when there are
// none). They were written, and verify, but no signed checkpoint proves they were durable or that
// nothing after them was cut: after a crash or a failed flush, records beyond them may be missing
// unnoticed. A running broker's log always has such a tail, up to one checkpoint interval long; a
// cleanly closed one has none.
func (r *Report) Uncovered() (from, to uint64) { return r.LastCheckpoint + 1, r.Records }

type checkpoint struct {
	note  []byte
	line  int
	seq   uint64
	mac   string
	chain string
	time  time.Time
}

// Verify checks a chain: every entry's MAC and link to the previous one (catching edits, deletions,
// insertions and reordering), and every signed checkpoint against the entry it names (catching a
// truncated tail up to the last checkpoint). With a nil verifier, checkpoints are counted but not
// read. A missing or empty log, or checkpoints file, is a problem: a chain starts with a record
// (KindChainStart) that is signed as soon as it is written.
func Verify(dir, chain string, key []byte, v note.Verifier) (*Report, error) {
	return verify(chain, key, v, nil, fileLines(checkpointPath(dir, chain)), fileLines(chainPath(dir, chain)))
}

// lines iterates over numbered lines of a chain or of its checkpoints, wherever they are stored. A
// final line without its newline is an incomplete one.
type lineSource func(func(n int, line []byte) error) error

// verify checks a chain, and, when witnessed is not nil, that the log covers the witness's latest
// checkpoint (an empty witnessed means the witness holds none).
func verify(chain string, key []byte, v note.Verifier, witnessed []byte, checkpoints, entries lineSource) (*Report, error) {
	rep := &Report{}
	var cps []checkpoint
	cpLines := 0
	var off int64
	err := checkpoints(func(n int, line []byte) error {
		start := off
		off += int64(len(line))
		if !bytes.HasSuffix(line, []byte("\n")) {
			rep.TornCheckpoint = torn(n, start, line)
			return nil
		}
		cpLines++
		if v == nil {
			return nil
		}
		var raw struct{ Note string }
		if err := json.Unmarshal(line, &raw); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: not a checkpoint", n))
			return nil
		}
		cp, err := openCheckpoint([]byte(raw.Note), v, chain)
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: %v", n, err))
			return nil
		}
		cp.line, cp.note = n, []byte(raw.Note)
		cps = append(cps, cp)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var wcp *checkpoint
	if witnessed != nil {
		rep.Witnessed = &WitnessedCheckpoint{None: len(witnessed) == 0}
		if len(witnessed) == 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("witness: it holds no checkpoint of chain %q: it never received one (is the broker configured with this witness?) or it lost them", chain))
		} else if cp, err := openCheckpoint(witnessed, v, chain); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("witness: its latest checkpoint: %v", err))
		} else {
			wcp = &cp
			rep.Witnessed.Seq, rep.Witnessed.Time = cp.seq, cp.time
		}
	}
	want := map[uint64]string{}
	for _, cp := range cps {
		want[cp.seq] = ""
	}
	if wcp != nil {
		want[wcp.seq] = ""
	}
	expected, prev := uint64(1), genesis(key, chain)
	macs := newEntryMACs(key)
	off = 0
	err = entries(func(n int, line []byte) error {
		start := off
		off += int64(len(line))
		if !bytes.HasSuffix(line, []byte("\n")) {
			rep.Torn = torn(n, start, line)
			return nil
		}
		var e entry
		if err := json.Unmarshal(line, &e); err != nil || e.MAC == "" {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: not a chain entry (damaged or inserted; an incomplete line from a failed write can only be the last)", n))
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
		} else if bytes.Contains(e.Rec, []byte(`"kind":"`+KindWriteFailed+`"`)) {
			var r Record
			if json.Unmarshal(e.Rec, &r) == nil && r.Kind == KindWriteFailed {
				rep.FailedWrites = append(rep.FailedWrites, fmt.Sprintf("record %d: %s", e.Seq, Escape(describeWriteFailure(r))))
			}
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
	if rep.Records == 0 {
		rep.Problems = append(rep.Problems, "the log is missing or empty: a chain holds at least its start record, written when the chain is created (removed, or not this chain)")
	}
	if cpLines == 0 {
		rep.Problems = append(rep.Problems, "the checkpoints file is missing or empty: a chain's start record is signed as soon as it is written (removed, or not this chain)")
	}
	for _, cp := range cps {
		switch mac := want[cp.seq]; {
		case cp.seq > rep.Records:
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: signed at record %d, but the log ends at record %d (truncated)", cp.line, cp.seq, rep.Records))
		case mac != cp.mac:
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoints:%d: record %d differs from the one signed (rewritten)", cp.line, cp.seq))
		}
		rep.Checkpoints++
		if cp.seq >= rep.LastCheckpoint {
			rep.LastCheckpoint, rep.LastCheckpointTime, rep.lastNote = cp.seq, cp.time, cp.note
		}
	}
	if wcp != nil {
		switch mac := want[wcp.seq]; {
		case wcp.seq > rep.Records:
			rep.Problems = append(rep.Problems, fmt.Sprintf("witness: it holds a checkpoint of record %d (signed %s), but the log ends at record %d: records %d to %d were removed (with their checkpoints, if these do not say so)",
				wcp.seq, wcp.time.Format(time.RFC3339), rep.Records, rep.Records+1, wcp.seq))
		case mac != wcp.mac:
			rep.Problems = append(rep.Problems, fmt.Sprintf("witness: record %d differs from the one the witness holds a checkpoint of (rewritten)", wcp.seq))
		}
		if wcp.seq > rep.LastCheckpoint {
			rep.Problems = append(rep.Problems, fmt.Sprintf("witness: its checkpoint of record %d is not in the checkpoints file, which ends at record %d (checkpoints removed)", wcp.seq, rep.LastCheckpoint))
		}
	}
	return rep, nil
}

func torn(n int, off int64, line []byte) *Torn {
	sum := sha256.Sum256(line)
	return &Torn{Line: n, Offset: off, Length: len(line), SHA256: hex.EncodeToString(sum[:])}
}

// openCheckpoint checks a signed checkpoint's signature and chain.
func openCheckpoint(signed []byte, v note.Verifier, chain string) (checkpoint, error) {
	if v == nil {
		return checkpoint{}, fmt.Errorf("no verifier key to check it with")
	}
	nt, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return checkpoint{}, fmt.Errorf("signature does not verify: %v", err)
	}
	cp, err := parseCheckpoint(nt.Text)
	if err != nil {
		return cp, err
	}
	if cp.chain != chain {
		return cp, fmt.Errorf("checkpoint of chain %q, not %q", Escape(cp.chain), chain)
	}
	return cp, nil
}

// checkpointText is the text a checkpoint signs.
func checkpointText(chain string, seq uint64, mac string, t time.Time) string {
	return fmt.Sprintf("svidbroker audit checkpoint\nchain %s\nseq %d\nmac %s\ntime %s\n", chain, seq, mac, t.UTC().Format(time.RFC3339))
}

// parseCheckpoint reads a checkpoint's text: its header line, then chain, seq, mac and time, each
// once.
func parseCheckpoint(text string) (checkpoint, error) {
	var cp checkpoint
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) == 0 || lines[0] != "svidbroker audit checkpoint" {
		return cp, fmt.Errorf("not a svidbroker checkpoint")
	}
	fields := map[string]string{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, " ")
		if !ok {
			return cp, fmt.Errorf("checkpoint line %q has no value", Escape(l))
		}
		if _, dup := fields[k]; dup {
			return cp, fmt.Errorf("checkpoint names %q twice", Escape(k))
		}
		fields[k] = v
	}
	cp.chain = fields["chain"]
	seq, err := strconv.ParseUint(fields["seq"], 10, 64)
	if err != nil {
		return cp, fmt.Errorf("bad seq %q", Escape(fields["seq"]))
	}
	cp.seq, cp.mac = seq, fields["mac"]
	if len(cp.mac) != 2*sha256.Size {
		return cp, fmt.Errorf("bad mac %q", Escape(cp.mac))
	}
	if t := fields["time"]; t != "" {
		if cp.time, err = time.Parse(time.RFC3339, t); err != nil {
			return cp, fmt.Errorf("bad time %q", Escape(t))
		}
	}
	return cp, nil
}

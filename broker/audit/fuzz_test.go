package audit

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzParseCheckpoint: any text either parses or is refused, without panicking; a checkpoint's own
// text parses back to what it says.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add("b1", uint64(7), strings.Repeat("ab", 32), "")
	f.Add("", uint64(0), "", "svidbroker audit checkpoint\nchain x\nchain y\n")
	f.Add("c", uint64(1<<63), "xyz", "svidbroker audit checkpoint\nseq -1\n")
	f.Fuzz(func(t *testing.T, chain string, seq uint64, mac, raw string) {
		if raw != "" {
			_, _ = parseCheckpoint(raw)
		}
		if strings.ContainsAny(chain, " \n") || strings.Contains(mac, "\n") {
			return
		}
		at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		cp, err := parseCheckpoint(checkpointText(chain, seq, mac, at))
		if len(mac) != 64 || strings.Contains(mac, " ") {
			return
		}
		if err != nil || cp.chain != chain || cp.seq != seq || cp.mac != mac || !cp.time.Equal(at) {
			t.Fatalf("round trip of chain %q seq %d mac %q: %+v %v", chain, seq, mac, cp, err)
		}
	})
}

// FuzzDecodeWitnessLine: what a witness is sent or answers is decoded or refused, within its bounds.
func FuzzDecodeWitnessLine(f *testing.F) {
	f.Add([]byte(`{"chain":"b1","seq":3,"note":"svidbroker audit checkpoint\n"}`))
	f.Add([]byte(`{"chain":"","seq":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		wl, err := decodeWitnessLine(b)
		if err == nil && (wl.Chain == "" || wl.Note == "" || len(wl.Note) > MaxNoteBytes || len(b) > 2*MaxNoteBytes) {
			t.Fatalf("accepted %q as %+v", b, wl)
		}
	})
}

// FuzzTornTail: bytes after a whole, valid chain are a failed write's incomplete line exactly when
// they hold no newline; with a newline they are tampering, never a failed write.
func FuzzTornTail(f *testing.F) {
	k := newKeysTB(f)
	dir := f.TempDir()
	l, err := Open(Config{Dir: dir, Chain: "b1", MACKey: k.mac, Signer: k.signer, CheckpointInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 3 {
		if err := l.Append(stmt(i)); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	whole, err := os.ReadFile(chainPath(dir, "b1"))
	if err != nil {
		f.Fatal(err)
	}
	cps, err := os.ReadFile(checkpointPath(dir, "b1"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"seq":5,"prev":"`))
	f.Add([]byte("\n"))
	f.Add([]byte("{}\n{"))
	f.Fuzz(func(t *testing.T, tail []byte) {
		log := append(append([]byte(nil), whole...), tail...)
		src := func(b []byte) lineSource {
			return func(fn func(int, []byte) error) error {
				for n, line := range bytes.SplitAfter(b, []byte("\n")) {
					if len(line) > 0 {
						if err := fn(n+1, line); err != nil {
							return err
						}
					}
				}
				return nil
			}
		}
		rep, err := verify("b1", k.mac, k.verif, nil, src(cps), src(log))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(tail) == 0:
			if !rep.OK() || rep.Torn != nil {
				t.Fatalf("the whole chain: %+v", rep)
			}
		case !bytes.Contains(tail, []byte("\n")):
			if !rep.OK() || rep.Torn == nil || rep.Torn.Length != len(tail) || rep.Torn.Offset != int64(len(whole)) {
				t.Fatalf("an incomplete line %q: %+v", tail, rep)
			}
		default:
			if rep.OK() {
				t.Fatalf("bytes with a newline after the chain (%q) verified", tail)
			}
		}
	})
}

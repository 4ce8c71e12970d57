package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

type keys struct {
	dir    string
	mac    []byte
	signer note.Signer
	verif  note.Verifier
}

func newKeys(t *testing.T) keys { return newKeysTB(t) }

func newKeysTB(t testing.TB) keys {
	t.Helper()
	dir := t.TempDir()
	if err := GenerateKeys(dir, "test-broker"); err != nil {
		t.Fatal(err)
	}
	mac, err := LoadMACKey(filepath.Join(dir, MACKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(filepath.Join(dir, VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return keys{dir: dir, mac: mac, signer: s, verif: v}
}

func openLog(t *testing.T, k keys, dir string) *Log {
	t.Helper()
	l, err := Open(Config{Dir: dir, Chain: "b1", MACKey: k.mac, Signer: k.signer, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func stmt(i int) Record {
	return Record{Time: time.Unix(int64(i), 0), Kind: KindStatement, Session: "s1",
		Statement: &Statement{Protocol: "simple", Text: fmt.Sprintf("SELECT %d", i)}}
}

// writeChain writes n records and closes the log (which signs a final checkpoint).
func writeChain(t *testing.T, k keys, n int) string {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, k, dir)
	for i := 1; i <= n; i++ {
		if err := l.Append(stmt(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func lines(t *testing.T, dir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(chainPath(dir, "b1"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func rewrite(t *testing.T, dir string, ls [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range ls {
		b = append(b, l...)
		if !bytes.HasSuffix(l, []byte("\n")) {
			b = append(b, '\n')
		}
	}
	if err := os.WriteFile(chainPath(dir, "b1"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	k := newKeys(t)
	cases := []struct {
		name   string
		tamper func([][]byte) [][]byte
		want   string
	}{
		{"intact", func(l [][]byte) [][]byte { return l }, ""},
		{"edited", func(l [][]byte) [][]byte {
			l[5] = bytes.Replace(l[5], []byte("SELECT 5"), []byte("SELECT 6"), 1)
			return l
		}, "line 6: record 6 was altered"},
		{"deleted", func(l [][]byte) [][]byte { return append(l[:3], l[4:]...) }, "line 4: records 4 to 4 are missing"},
		{"inserted", func(l [][]byte) [][]byte {
			return append(l[:6], append([][]byte{l[2]}, l[6:]...)...)
		}, "line 7: record 3 appears again"},
		{"reordered", func(l [][]byte) [][]byte { l[2], l[3] = l[3], l[2]; return l }, "line 3: records 3 to 3 are missing"},
		{"tail truncated", func(l [][]byte) [][]byte { return l[:7] }, "signed at record 11, but the log ends at record 7 (truncated)"},
		{"garbage line", func(l [][]byte) [][]byte { return append(l[:5], append([][]byte{[]byte("{}\n")}, l[5:]...)...) }, "line 6: not a chain entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeChain(t, k, 10)
			rewrite(t, dir, tc.tamper(lines(t, dir)))
			rep, err := Verify(dir, "b1", k.mac, k.verif)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !rep.OK() || rep.Records != 11 || rep.Checkpoints != 2 { // the start record and its checkpoint, 10, a checkpoint at close
					t.Fatalf("intact chain: %+v", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatal("tampering not detected")
			}
			if !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
				t.Fatalf("problems do not say %q:\n%s", tc.want, strings.Join(rep.Problems, "\n"))
			}
		})
	}
	t.Run("forged checkpoint", func(t *testing.T) {
		dir := writeChain(t, k, 3)
		other := newKeys(t)
		signed, _ := note.Sign(&note.Note{Text: "svidbroker audit checkpoint\nchain b1\nseq 3\nmac x\ntime now\n"}, other.signer)
		f, _ := os.OpenFile(checkpointPath(dir, "b1"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "{\"note\":%q}\n", signed)
		f.Close()
		rep, _ := Verify(dir, "b1", k.mac, k.verif)
		if rep.OK() || !strings.Contains(rep.Problems[0], "signature does not verify") {
			t.Fatalf("forged checkpoint accepted: %+v", rep)
		}
	})
	t.Run("wrong MAC key", func(t *testing.T) {
		dir := writeChain(t, k, 3)
		rep, _ := Verify(dir, "b1", bytes.Repeat([]byte{1}, 32), nil)
		if rep.OK() {
			t.Fatal("a chain verified under another key")
		}
	})
}

func TestConcurrentAppendsFormOneChain(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	l := openLog(t, k, dir)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := l.Append(stmt(g*1000 + i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() || rep.Records != 801 {
		t.Fatalf("%+v %v", rep, err)
	}
	// Reopening continues the same chain.
	l = openLog(t, k, dir)
	if err := l.Append(stmt(1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep, _ := Verify(dir, "b1", k.mac, k.verif); !rep.OK() || rep.Records != 802 {
		t.Fatalf("after reopening: %+v", rep)
	}
}

func TestOneWriterPerChain(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	l := openLog(t, k, dir)
	defer l.Close()
	if _, err := Open(Config{Dir: dir, Chain: "b1", MACKey: k.mac, Signer: k.signer}); err == nil {
		t.Fatal("a second writer opened the same chain")
	}
}

func TestRefusesToAppendToABrokenChain(t *testing.T) {
	k := newKeys(t)
	dir := writeChain(t, k, 3)
	ls := lines(t, dir)
	rewrite(t, dir, ls[1:])
	if _, err := Open(Config{Dir: dir, Chain: "b1", MACKey: k.mac, Signer: k.signer}); err == nil {
		t.Fatal("opened a chain that does not verify")
	}
}

// TestFullDiskFailsClosed swaps the chain's file for /dev/full, which fails every write with ENOSPC as a
// full disk does: the append fails, and so does every later one.
func TestFullDiskFailsClosed(t *testing.T) {
	k := newKeys(t)
	l := openLog(t, k, t.TempDir())
	defer l.Close()
	if err := l.Append(stmt(1)); err != nil {
		t.Fatal(err)
	}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fs := l.st.(*fileStore)
	fs.f.Close()
	fs.f = full
	if err := l.Append(stmt(2)); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if err := l.Append(stmt(3)); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after a failure: %v", err)
	}
}

func TestEscapeAndTimeline(t *testing.T) {
	if got := Escape("SELECT 1;\n\x1b[2J\r-- \u2028x\ttab"); got != `SELECT 1;\n\u001b[2J\u000d-- \u2028x\ttab` {
		t.Fatalf("Escape = %s", got)
	}
	k := newKeys(t)
	dir := t.TempDir()
	l := openLog(t, k, dir)
	for _, r := range []Record{
		{Kind: KindSessionStart, Session: "a", SPIFFEID: "spiffe://example.org/agent/x", Target: "shop",
			Decision: &Decision{ID: "d1", Action: "connect", Allow: true, Policies: []string{"p"}}},
		{Kind: KindStatement, Session: "a", Statement: &Statement{Protocol: "simple", Text: "SELECT 1"}},
		{Kind: KindDecision, Session: "b", SPIFFEID: "spiffe://example.org/agent/y", Target: "shop", Decision: &Decision{ID: "d2", Allow: false}},
		{Kind: KindSessionEnd, Session: "a", Detail: map[string]string{"reason": "done"}},
	} {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	tl, err := Timeline(Files(dir, "b1"), "a")
	if err != nil || len(tl) != 3 || !strings.Contains(Format(tl[1]), "[simple] SELECT 1") {
		t.Fatalf("timeline %v %v", tl, err)
	}
	denied, _ := Sessions(Files(dir, "b1"), Filter{Decision: "deny"})
	if len(denied) != 1 || denied[0].Session != "b" {
		t.Fatalf("denied sessions %+v", denied)
	}
	byID, _ := Sessions(Files(dir, "b1"), Filter{SPIFFEID: "spiffe://example.org/agent/x"})
	if len(byID) != 1 || byID[0].Statements != 1 || !byID[0].Ended {
		t.Fatalf("sessions by ID %+v", byID)
	}
}

// TestVerifyReportsTheTailNoCheckpointCovers: records written after the last checkpoint verify, and
// the report names them as not proven durable; a clean close covers them.
func TestVerifyReportsTheTailNoCheckpointCovers(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	l := openLog(t, k, dir)
	for i := range 3 {
		if err := l.Append(stmt(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, k, dir)
	defer l.Close()
	for i := range 2 {
		if err := l.Write(stmt(10+i), false); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep, err)
	}
	if from, to := rep.Uncovered(); from != 5 || to != 6 {
		t.Fatalf("uncovered tail %d to %d; want 5 to 6", from, to)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err = Verify(dir, "b1", k.mac, k.verif); err != nil || !rep.OK() {
		t.Fatalf("verify after close: %v %v", rep, err)
	}
	if from, to := rep.Uncovered(); from <= to {
		t.Fatalf("uncovered tail %d to %d after a clean close; want none", from, to)
	}
}

package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// tornStore is a fileStore whose appends can be made to fail as on a full disk: write(2) puts part of
// the lines in the file, then fails with ENOSPC.
type tornStore struct {
	*fileStore
	full atomic.Bool
	torn atomic.Int64 // bytes the failed appends left
}

// repair fails while the disk is full, as the file store's does when its file system has no room.
func (s *tornStore) repair() (map[string]string, error) {
	if s.full.Load() {
		return nil, &os.PathError{Op: "statfs", Path: s.f.Name(), Err: syscall.ENOSPC}
	}
	return s.fileStore.repair()
}

func (s *tornStore) append(entries []entry) error {
	if !s.full.Load() {
		return s.fileStore.append(entries)
	}
	var buf []byte
	for _, e := range entries {
		buf = appendLine(buf, e)
	}
	n, err := s.f.Write(buf[:len(buf)/2+1])
	if err != nil {
		return err
	}
	s.torn.Add(int64(n))
	return &os.PathError{Op: "write", Path: s.f.Name(), Err: syscall.ENOSPC}
}

// openTorn opens the chain in dir with appends that can be made to fail.
func openTorn(t *testing.T, k keys, dir string) (*Log, *tornStore) {
	t.Helper()
	l, err := Open(Config{Dir: dir, Chain: "b1", MACKey: k.mac, Signer: k.signer, Verifier: k.verif, CheckpointInterval: time.Hour,
		FlushInterval: time.Millisecond, RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Swap the store under the flusher's feet only while nothing runs: after Open, before appends.
	l.mu.Lock()
	ts := &tornStore{fileStore: l.st.(*fileStore)}
	l.st = ts
	l.mu.Unlock()
	return l, ts
}

// TestWriterRecoversAfterAFullDisk: while the disk is full, statements' records are refused and Err
// says so; the torn bytes a failed write left are cut once writes succeed again, the failure is
// recorded with their hash and the records it cost, and the chain goes on and verifies.
func TestWriterRecoversAfterAFullDisk(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	l, ts := openTorn(t, k, dir)
	defer l.Close()
	if err := l.Append(stmt(1)); err != nil {
		t.Fatal(err)
	}
	ts.full.Store(true)
	if err := l.Write(stmt(2), false); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("write on a full disk: %v", err)
	}
	for range 3 { // refused while failing; retries keep failing and tear nothing more
		if err := l.Write(stmt(3), false); !errors.Is(err, ErrFailed) {
			t.Fatalf("write while the store is failing: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l.Err() == nil {
		t.Fatal("Err is nil while the store is full")
	}
	l.AppendAsync(Record{Kind: KindResult, Session: "s1"}) // nobody waits for it: dropped, and counted
	// The verifier, run now, sees a failed write at the tail, not tampering.
	rep, err := Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() || rep.Torn == nil || rep.Torn.Length != int(ts.torn.Load()) {
		t.Fatalf("verify while the tail is torn: %+v %v", rep, err)
	}
	tornSum := rep.Torn.SHA256
	ts.full.Store(false)
	eventually(t, "recovery", func() bool { return l.Err() == nil })
	if err := l.Append(stmt(4)); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() || rep.Torn != nil {
		t.Fatalf("verify after recovery: %+v %v", rep, err)
	}
	if len(rep.FailedWrites) != 1 {
		t.Fatalf("failed writes %q; want one", rep.FailedWrites)
	}
	for _, want := range []string{"record 3:", "no space left on device", "records chained as 3 to 3 were never written",
		"1 record(s) nobody waited for", "at offset", tornSum} {
		if !strings.Contains(rep.FailedWrites[0], want) {
			t.Errorf("the failure's record does not say %q: %s", want, rep.FailedWrites[0])
		}
	}
	// The chain: start, 1, the failure, 4. The refused statement 2 is not in it.
	var texts []string
	if err := Read(dir, "b1", func(e Entry) error {
		if e.Record.Statement != nil {
			texts = append(texts, e.Record.Statement.Text)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(texts, ",") != "SELECT 1,SELECT 4" || rep.Records != 4 {
		t.Fatalf("statements %q in %d records", texts, rep.Records)
	}
}

// TestRestartOnATornTail: a broker that died with an incomplete last line (a write failed on a full
// disk, then the process ended) starts again on the chain: the line is cut, and the first record
// says where it was and its hash. The verifier reports such a line as a failed write, before and
// after, and never as tampering; an incomplete line anywhere else is tampering.
func TestRestartOnATornTail(t *testing.T) {
	k := newKeys(t)
	dir := writeChain(t, k, 3)
	whole, err := os.ReadFile(chainPath(dir, "b1"))
	if err != nil {
		t.Fatal(err)
	}
	frag := []byte(`{"seq":5,"prev":"ab`)
	if err := os.WriteFile(chainPath(dir, "b1"), append(whole, frag...), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() || rep.Torn == nil || rep.Torn.Offset != int64(len(whole)) || rep.Torn.Length != len(frag) {
		t.Fatalf("torn tail: %+v %v", rep, err)
	}
	sum := sha256.Sum256(frag)
	l := openLog(t, k, dir)
	if err := l.Append(stmt(9)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep, err = Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() || rep.Torn != nil || rep.Records != 6 || len(rep.FailedWrites) != 1 {
		t.Fatalf("after restart: %+v %v", rep, err)
	}
	if f := rep.FailedWrites[0]; !strings.Contains(f, "found at start") || !strings.Contains(f, hex.EncodeToString(sum[:])) {
		t.Fatalf("the failure's record: %s", f)
	}

	t.Run("torn line in the middle is tampering", func(t *testing.T) {
		dir := writeChain(t, k, 3)
		ls := lines(t, dir)
		ls[2] = ls[2][:len(ls[2])/2] // no newline: it runs into the next line
		var b []byte
		for _, l := range ls {
			b = append(b, l...)
		}
		b = append(b, '\n')
		if err := os.WriteFile(chainPath(dir, "b1"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(dir, "b1", k.mac, k.verif)
		if err != nil || rep.OK() || rep.Torn != nil || !strings.Contains(rep.Problems[0], "line 3: not a chain entry") {
			t.Fatalf("a torn line in the middle: %+v %v", rep, err)
		}
		if _, err := Open(Config{Dir: dir, Chain: "b1", MACKey: k.mac, Signer: k.signer}); err == nil {
			t.Fatal("opened a chain with a torn line in the middle")
		}
	})
}

// TestMissingOrEmptyFilesFail: a chain always has its start record and that record's checkpoint, so
// a missing or empty log or checkpoints file fails verification; the intact chain is the control.
func TestMissingOrEmptyFilesFail(t *testing.T) {
	k := newKeys(t)
	for _, c := range []struct {
		name   string
		break_ func(dir string) error
		want   string
	}{
		{"intact", func(string) error { return nil }, ""},
		{"log missing", func(dir string) error { return os.Remove(chainPath(dir, "b1")) }, "the log is missing or empty"},
		{"log empty", func(dir string) error { return os.Truncate(chainPath(dir, "b1"), 0) }, "the log is missing or empty"},
		{"checkpoints missing", func(dir string) error { return os.Remove(checkpointPath(dir, "b1")) }, "the checkpoints file is missing or empty"},
		{"checkpoints empty", func(dir string) error { return os.Truncate(checkpointPath(dir, "b1"), 0) }, "the checkpoints file is missing or empty"},
		{"both missing", func(dir string) error {
			return errors.Join(os.Remove(chainPath(dir, "b1")), os.Remove(checkpointPath(dir, "b1")))
		}, "the log is missing or empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeChain(t, k, 2)
			if err := c.break_(dir); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(dir, "b1", k.mac, k.verif)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if !rep.OK() || rep.Records != 3 {
					t.Fatalf("intact chain: %+v", rep)
				}
				return
			}
			if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), c.want) {
				t.Fatalf("problems %q; want %q", rep.Problems, c.want)
			}
		})
	}
}

// TestNewChainIsSignedAtOnce: opening a new chain writes its start record and a checkpoint of it
// before any session record, so that a chain is never without either.
func TestNewChainIsSignedAtOnce(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	l := openLog(t, k, dir)
	defer l.Close()
	rep, err := Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() || rep.Records != 1 || rep.LastCheckpoint != 1 {
		t.Fatalf("a new chain: %+v %v", rep, err)
	}
	var kinds []string
	_ = Read(dir, "b1", func(e Entry) error { kinds = append(kinds, e.Record.Kind); return nil })
	if len(kinds) != 1 || kinds[0] != KindChainStart {
		t.Fatalf("records of a new chain: %v", kinds)
	}
	if b, _ := os.ReadFile(checkpointPath(dir, "b1")); !bytes.Contains(b, []byte(`seq 1\n`)) {
		t.Fatalf("checkpoints of a new chain: %s", b)
	}
}

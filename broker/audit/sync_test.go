package audit

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStore records how the log writes and flushes. A sync can be held (gate) or made to fail.
type testStore struct {
	mu      sync.Mutex
	written uint64   // the last entry appended
	syncs   []uint64 // what each sync covered
	notes   []uint64 // the records written when each checkpoint was
	gate    chan struct{}
	syncErr error
}

func (c *testStore) append(entries []entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written = entries[len(entries)-1].Seq
	return nil
}

func (c *testStore) sync(upTo uint64) error {
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.syncErr != nil {
		return c.syncErr
	}
	if upTo != c.written {
		return errors.New("sync told a seq other than the last written")
	}
	c.syncs = append(c.syncs, upTo)
	return nil
}

func (c *testStore) checkpoint([]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, c.written)
	return nil
}

func (c *testStore) repair() (map[string]string, error) { return nil, nil }

func (c *testStore) close() error { return nil }

func (c *testStore) synced() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.syncs...)
}

func startTest(t *testing.T, st store, flushInterval time.Duration, logger *slog.Logger) *Log {
	t.Helper()
	k := newKeys(t)
	cfg := Config{Chain: "c", MACKey: k.mac, Signer: k.signer, CheckpointInterval: time.Hour, FlushInterval: flushInterval, Logger: logger}
	if err := checkConfig(&cfg); err != nil {
		t.Fatal(err)
	}
	return start(cfg, st, &Report{})
}

// eventually polls cond until it holds, failing the test after a generous deadline: it checks that
// something happens, never how fast.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen", what)
		}
	}
}

// TestWriteReturnsBeforeTheFlush: Write returns once the store holds the record, while a flush is held
// up; Flush and Append return only once the flush is done, and then cover every record before them.
func TestWriteReturnsBeforeTheFlush(t *testing.T) {
	st := &testStore{gate: make(chan struct{})}
	go func() { st.gate <- struct{}{} }() // the flush at start
	l := startTest(t, st, time.Hour, nil)
	defer func() { close(st.gate); l.Close() }()
	if err := l.Write(Record{Kind: KindStatement}, false); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Record{Kind: KindStatement}, true); err != nil { // starts a flush, which is held
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- l.Flush() }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while the store's flush was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	st.gate <- struct{}{}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if got := st.synced(); len(got) == 0 || got[len(got)-1] != 2 {
		t.Fatalf("syncs covered %v; want the last to cover record 2", got)
	}
}

// TestWrittenRecordsAreFlushedWithinTheInterval: nobody asks for a flush, and the records still reach
// stable storage, by the flush interval.
func TestWrittenRecordsAreFlushedWithinTheInterval(t *testing.T) {
	st := &testStore{}
	l := startTest(t, st, 5*time.Millisecond, nil)
	defer l.Close()
	for range 3 {
		if err := l.Write(Record{Kind: KindStatement}, false); err != nil {
			t.Fatal(err)
		}
	}
	l.AppendAsync(Record{Kind: KindResult})
	eventually(t, "a flush of all four records", func() bool {
		s := st.synced()
		return len(s) > 0 && s[len(s)-1] == 4
	})
}

// TestUrgentWriteStartsAFlush: with an hour's flush interval, an urgent record is flushed at once,
// and an ordinary one is not.
func TestUrgentWriteStartsAFlush(t *testing.T) {
	st := &testStore{}
	l := startTest(t, st, time.Hour, nil)
	defer l.Close()
	if err := l.Write(Record{Kind: KindStatement}, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)  // time for a wrong implementation to flush
	if s := st.synced(); len(s) != 1 { // the flush at start alone
		t.Fatalf("syncs %v after an ordinary write; want none but the one at start", s)
	}
	if err := l.Write(Record{Kind: KindStatement}, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the urgent record's flush", func() bool {
		s := st.synced()
		return s[len(s)-1] == 2
	})
}

// TestFailedFlushFailsTheLogAndNamesTheRecords: a flush that fails fails the log for good; Flush
// says so, later writes are refused, and the log names the records that may not be durable.
func TestFailedFlushFailsTheLogAndNamesTheRecords(t *testing.T) {
	st := &testStore{}
	var logs bytes.Buffer
	l := startTest(t, st, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	defer l.Close()
	if err := l.Append(Record{Kind: KindStatement}); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.syncErr = errors.New("EIO")
	st.mu.Unlock()
	for range 2 {
		if err := l.Write(Record{Kind: KindStatement}, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Flush after a failed sync: %v", err)
	}
	if err := l.Write(Record{Kind: KindStatement}, false); !errors.Is(err, ErrFailed) {
		t.Fatalf("Write after a failed sync: %v", err)
	}
	for _, want := range []string{"not_durable_from_seq=2", "last_written_seq=3", "EIO"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the log does not say %q: %s", want, logs.String())
		}
	}
}

// TestCheckpointNamesOnlyDurableRecords: records written but not yet flushed are flushed before a
// checkpoint names them, at close as at every interval.
func TestCheckpointNamesOnlyDurableRecords(t *testing.T) {
	st := &testStore{}
	l := startTest(t, st, time.Hour, nil)
	l.AppendAsync(Record{Kind: KindResult})
	if err := l.Write(Record{Kind: KindStatement}, false); err != nil {
		t.Fatal(err)
	}
	l.AppendAsync(Record{Kind: KindSessionEnd})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := st.synced()
	if len(st.notes) != 1 || st.notes[0] != 3 || len(s) == 0 || s[len(s)-1] != 3 {
		t.Fatalf("checkpoints at %v, syncs %v: want one checkpoint of record 3, after a sync covering it", st.notes, s)
	}
}

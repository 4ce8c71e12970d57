package audit

import (
	"sync"
	"testing"
	"time"
)

// countingStore records how the log writes: which appends asked to be durable, and syncs.
type countingStore struct {
	mu      sync.Mutex
	appends []bool
	syncs   int
	notes   int
}

func (c *countingStore) append(_ []entry, durable bool) error {
	c.mu.Lock()
	c.appends = append(c.appends, durable)
	c.mu.Unlock()
	return nil
}
func (c *countingStore) sync() error { c.mu.Lock(); c.syncs++; c.mu.Unlock(); return nil }
func (c *countingStore) checkpoint(note []byte) error {
	c.mu.Lock()
	c.notes++
	c.mu.Unlock()
	return nil
}
func (c *countingStore) close() error { return nil }

// TestAsyncRecordsAreSyncedBeforeACheckpoint: a batch nobody waits for is written without a sync; a
// durable Append syncs; and a checkpoint never names records that are not yet durable.
func TestAsyncRecordsAreSyncedBeforeACheckpoint(t *testing.T) {
	k := newKeys(t)
	st := &countingStore{}
	l := start(Config{Chain: "c", MACKey: k.mac, Signer: k.signer, CheckpointInterval: time.Hour, Now: time.Now}, st, &Report{})
	l.AppendAsync(Record{Kind: KindResult})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		st.mu.Lock()
		n := len(st.appends)
		st.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the async record was not written")
		}
	}
	if err := l.Append(Record{Kind: KindStatement}); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	if st.appends[0] || !st.appends[len(st.appends)-1] {
		t.Fatalf("appends (durable?) %v: want the async batch unsynced and the Append's synced", st.appends)
	}
	st.mu.Unlock()
	l.AppendAsync(Record{Kind: KindSessionEnd})
	if err := l.Close(); err != nil { // writes the pending record, then a final checkpoint
		t.Fatal(err)
	}
	if st.syncs != 1 || st.notes != 1 {
		t.Fatalf("%d syncs and %d checkpoints at close; want the unsynced record synced before the checkpoint", st.syncs, st.notes)
	}
}

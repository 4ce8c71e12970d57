package approval

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Journal is a Desk's Backend in one broker's state directory: every change is a JSON line appended
// to the file and fsynced before Update returns, so pending requests and grants survive a restart
// (and a crash). Opening it replays the file and rewrites it compacted.
type Journal struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	reqs    map[string]Request
	ended   []string // IDs of requests in a final state, oldest first (bounded by maxEnded)
	changed chan struct{}
	appends int // lines appended since the last compaction
}

// compactAfter is how many appended lines make the journal compacted again (at least, and four
// times the requests it keeps).
const compactAfter = 4096

// maxJournalLine bounds one journal line.
const maxJournalLine = 1 << 20

// final says whether a request's state is final: it neither waits nor grants.
func final(state string) bool {
	return state != StatePending && state != StateApproved
}

// OpenJournal opens (or creates) the journal at path.
func OpenJournal(path string) (*Journal, error) {
	j := &Journal{path: path, reqs: map[string]Request{}, changed: make(chan struct{})}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), maxJournalLine)
		line := 0
		for sc.Scan() {
			line++
			var r Request
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ID == "" {
				// A torn last line is a write the crash interrupted: it was never acknowledged.
				continue
			}
			r.Waiting = false // no held operation survives a restart
			j.put(r)
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("approval: journal %s: line %d: %w", path, line+1, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("approval: journal: %w", err)
	}
	if err := j.compact(); err != nil {
		return nil, err
	}
	return j, nil
}

// put keeps r in memory, forgetting the oldest final requests beyond maxEnded. j.mu is held.
func (j *Journal) put(r Request) {
	if i := slices.Index(j.ended, r.ID); i >= 0 {
		j.ended = slices.Delete(j.ended, i, i+1)
	}
	j.reqs[r.ID] = r
	if final(r.State) {
		j.ended = append(j.ended, r.ID)
		for len(j.ended) > maxEnded {
			delete(j.reqs, j.ended[0])
			j.ended = j.ended[1:]
		}
	}
}

// compact rewrites the journal with what is kept, and opens it for appending: the new file is
// written, fsynced and opened before it replaces the old one, so that j.f changes only when the
// whole of it succeeded.
func (j *Journal) compact() error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("approval: journal: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("approval: journal: %w", err)
	}
	w := bufio.NewWriter(f)
	reqs := make([]Request, 0, len(j.reqs))
	for _, r := range j.reqs {
		reqs = append(reqs, r)
	}
	slices.SortFunc(reqs, func(a, b Request) int { return a.Created.Compare(b.Created) })
	enc := json.NewEncoder(w)
	for _, r := range reqs {
		if err := enc.Encode(r); err != nil {
			return fail(err)
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fail(err)
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	j.f = f
	return nil
}

// Close closes the journal's file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

// Update implements Backend: the change is on stable storage when it returns.
func (j *Journal) Update(_ context.Context, id string, fn func(r *Request, exists bool) error) (Request, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	cur, ok := j.reqs[id]
	r := cur
	r.Approvals = slices.Clone(cur.Approvals)
	r.Attestation = slices.Clone(cur.Attestation)
	r.Policies = slices.Clone(cur.Policies)
	if err := fn(&r, ok); err != nil {
		return cur, err
	}
	r.ID = id
	line, err := json.Marshal(r)
	if err != nil {
		return cur, err
	}
	if len(line) >= maxJournalLine {
		return cur, fmt.Errorf("approval: request %s is too large to journal (%d bytes)", id, len(line))
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return cur, fmt.Errorf("approval: journal write: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return cur, fmt.Errorf("approval: journal sync: %w", err)
	}
	j.put(r)
	if j.appends++; j.appends > compactAfter && j.appends > 4*len(j.reqs) {
		// The change is on stable storage already; a compaction that fails leaves the journal as it
		// was, growing.
		if old := j.f; j.compact() == nil {
			old.Close()
			j.appends = 0
		}
	}
	close(j.changed)
	j.changed = make(chan struct{})
	return r, nil
}

// Get implements Backend.
func (j *Journal) Get(_ context.Context, id string) (Request, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.reqs[id]
	return r, ok, nil
}

// Live implements Backend.
func (j *Journal) Live(context.Context) ([]Request, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Request
	for _, r := range j.reqs {
		if !final(r.State) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Changed implements Backend.
func (j *Journal) Changed() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.changed
}

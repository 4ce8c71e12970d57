package approval

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzJournalOpen: whatever bytes a journal holds (a torn write, a corrupted disk), opening it does
// not panic, keeps only requests with an ID, and what it keeps is what a second opening of the
// compacted file keeps.
func FuzzJournalOpen(f *testing.F) {
	f.Add([]byte(`{"id":"r1","state":"pending","statement":"ALTER TABLE t ADD c int"}` + "\n"))
	f.Add([]byte(`{"id":"r1","state":"pending"}` + "\n" + `{"id":"r1","state":"approved","scope":{"kind":"once","for":60000000000}}` + "\n"))
	f.Add([]byte(`{"id":"r2","state":"pend`))
	f.Add([]byte("\x00\xff\n{}\n[]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "approvals.journal")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := OpenJournal(path)
		if err != nil {
			return // a line beyond the bound: refused, not guessed at
		}
		first, _ := j.Live(context.Background())
		for _, r := range first {
			if r.ID == "" || r.Waiting {
				t.Fatalf("kept %+v", r)
			}
		}
		j.Close()
		j2, err := OpenJournal(path)
		if err != nil {
			t.Fatalf("the compacted journal does not open: %v", err)
		}
		defer j2.Close()
		second, _ := j2.Live(context.Background())
		ids := func(rs []Request) []string {
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			slices.Sort(out)
			return out
		}
		if !slices.Equal(ids(first), ids(second)) {
			t.Fatalf("live requests %q, then %q", ids(first), ids(second))
		}
	})
}

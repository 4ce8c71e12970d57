package credential

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Journal records the IDs of leases in use, so that leases orphaned by a crash can be revoked at the
// next start. It is a directory with one empty file per lease, named by a hash-safe encoding of its
// ID: adding and removing are single atomic file operations, synced to disk.
type Journal struct {
	dir string
	mu  sync.Mutex
}

// OpenJournal opens (creating) the journal directory.
func OpenJournal(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credential: journal: %w", err)
	}
	return &Journal{dir: dir}, nil
}

func (j *Journal) path(id string) string {
	return filepath.Join(j.dir, strings.NewReplacer("/", "%2F", "%", "%25").Replace(id))
}

// Add records a lease before it is used.
func (j *Journal) Add(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := os.OpenFile(j.path(id), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("credential: journal: %w", err)
	}
	if _, err := f.WriteString(id + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("credential: journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("credential: journal: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("credential: journal: %w", err)
	}
	return syncDir(j.dir)
}

// Remove forgets a revoked lease.
func (j *Journal) Remove(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := os.Remove(j.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("credential: journal: %w", err)
	}
	return syncDir(j.dir)
}

// List returns the recorded lease IDs.
func (j *Journal) List() ([]string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("credential: journal: %w", err)
	}
	var ids []string
	for _, e := range entries {
		f, err := os.Open(filepath.Join(j.dir, e.Name()))
		if err != nil {
			continue
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		if id := strings.TrimSpace(line); id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package audit

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// MaxRecordBytes bounds one record's JSON; longer statement texts are cut (and marked).
const MaxRecordBytes = 256 << 10

// Config configures a Log.
type Config struct {
	// Dir holds the chain (<Chain>.jsonl) and its checkpoints (<Chain>.checkpoints).
	Dir string
	// Chain names this broker's chain. One writer per chain.
	Chain string
	// MACKey keys the chain's MACs.
	MACKey []byte
	// Signer signs checkpoints.
	Signer note.Signer
	// CheckpointInterval is how often a checkpoint is written when records were added. Default 10s.
	CheckpointInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// entry is one line of the chain file.
type entry struct {
	Seq  uint64          `json:"seq"`
	Prev string          `json:"prev"`
	Rec  json.RawMessage `json:"rec"`
	MAC  string          `json:"mac"`
}

// Log is an open chain.
type Log struct {
	cfg   Config
	st    store
	reqs  chan *appendReq
	done  chan struct{}
	close sync.Once

	mu     sync.Mutex // guards failed, seq, mac
	failed error
	seq    uint64
	mac    string
	cpSeq  uint64
	// unsynced: records were written without a sync since the last one (the writer's alone).
	unsynced bool
	macs     *entryMACs // the writer's alone
}

type appendReq struct {
	rec  []byte     // the record's JSON, encoded by the appender so the writer's turn stays short
	resp chan error // nil for async
}

// ErrFailed wraps the error that failed the log; every append after it fails.
var ErrFailed = errors.New("audit: log failed")

// store keeps a chain's entries and checkpoints durably: files (fileStore) or PostgreSQL (pgStore).
type store interface {
	// append writes entries, already chained; with durable, it returns once they (and everything
	// written before) are durable.
	append(entries []entry, durable bool) error
	// sync makes everything written durable.
	sync() error
	// checkpoint writes a signed note durably.
	checkpoint(note []byte) error
	close() error
}

// fileStore keeps a chain in <dir>/<chain>.jsonl and its checkpoints in <dir>/<chain>.checkpoints.
type fileStore struct {
	f, cp, lock *os.File
	buf         []byte // the lines of the last append, kept for the next
}

// Open opens (or creates) the chain in files under cfg.Dir, checks that it is intact up to its end,
// and starts the writer.
func Open(cfg Config) (*Log, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, cfg.Chain+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit: chain %q is open in another process (one writer per chain): %w", cfg.Chain, err)
	}
	// Resume from the chain's last entry, after checking the whole chain.
	rep, err := Verify(cfg.Dir, cfg.Chain, cfg.MACKey, nil)
	if err != nil {
		lock.Close()
		return nil, err
	}
	if !rep.OK() {
		lock.Close()
		return nil, fmt.Errorf("audit: chain %q does not verify; refusing to append to it: %s", cfg.Chain, rep.Problems[0])
	}
	st := &fileStore{lock: lock}
	if st.f, err = os.OpenFile(chainPath(cfg.Dir, cfg.Chain), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	if st.cp, err = os.OpenFile(checkpointPath(cfg.Dir, cfg.Chain), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		st.f.Close()
		lock.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	return start(cfg, st, rep), nil
}

func checkConfig(cfg *Config) error {
	if len(cfg.MACKey) < MinMACKeyBytes || cfg.Signer == nil || cfg.Chain == "" {
		return errors.New("audit: a chain name, a MAC key and a signer are required")
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// start resumes a verified chain and starts its writer.
func start(cfg Config, st store, rep *Report) *Log {
	l := &Log{cfg: cfg, st: st, reqs: make(chan *appendReq, 1024), done: make(chan struct{}), macs: newEntryMACs(cfg.MACKey)}
	l.seq, l.mac = rep.Records, rep.LastMAC
	if l.seq == 0 {
		l.mac = genesis(cfg.MACKey, cfg.Chain)
	}
	l.cpSeq = rep.LastCheckpoint
	go l.writer()
	return l
}

func (s *fileStore) append(entries []entry, durable bool) error {
	buf := s.buf[:0]
	for _, e := range entries {
		buf = appendLine(buf, e)
	}
	if cap(buf) <= maxKeptLines {
		s.buf = buf
	}
	if _, err := s.f.Write(buf); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return s.f.Sync()
}

// maxKeptLines is the largest line buffer a fileStore keeps from one append to the next.
const maxKeptLines = 1 << 20

func (s *fileStore) sync() error { return s.f.Sync() }

// appendLine appends the entry's line: the same bytes json.Marshal gives, without encoding rec a
// second time (seq is a number, prev and mac are hex, and rec is already compact JSON).
func appendLine(buf []byte, e entry) []byte {
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendUint(buf, e.Seq, 10)
	buf = append(buf, `,"prev":"`...)
	buf = append(buf, e.Prev...)
	buf = append(buf, `","rec":`...)
	buf = append(buf, e.Rec...)
	buf = append(buf, `,"mac":"`...)
	buf = append(buf, e.MAC...)
	return append(buf, "\"}\n"...)
}

func (s *fileStore) checkpoint(note []byte) error {
	line, _ := json.Marshal(map[string]string{"note": string(note)})
	if _, err := s.cp.Write(append(line, '\n')); err != nil {
		return err
	}
	return s.cp.Sync()
}

func (s *fileStore) close() error { return errors.Join(s.f.Close(), s.cp.Close(), s.lock.Close()) }

func chainPath(dir, chain string) string      { return filepath.Join(dir, chain+".jsonl") }
func checkpointPath(dir, chain string) string { return filepath.Join(dir, chain+".checkpoints") }

func genesis(key []byte, chain string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("svidbroker audit genesis\n" + chain))
	return hex.EncodeToString(m.Sum(nil))
}

// entryMACs computes entry MACs with one keyed HMAC, reset per entry. It is not safe for concurrent
// use.
type entryMACs struct {
	h   hash.Hash
	hdr []byte
	sum [sha256.Size]byte
}

func newEntryMACs(key []byte) *entryMACs { return &entryMACs{h: hmac.New(sha256.New, key)} }

// mac is the MAC of the entry seq, which follows the entry whose MAC is prev and holds rec: HMAC of
// "seq\nprev\n" and rec, in hex.
func (m *entryMACs) mac(seq uint64, prev string, rec []byte) string {
	m.hdr = append(append(append(strconv.AppendUint(m.hdr[:0], seq, 10), '\n'), prev...), '\n')
	m.h.Reset()
	m.h.Write(m.hdr)
	m.h.Write(rec)
	return hex.EncodeToString(m.h.Sum(m.sum[:0]))
}

// encode is the JSON of rec as the chain keeps it. A record that cannot be encoded fails the log:
// it could not be kept, and what follows it must not be kept without it.
func (l *Log) encode(rec Record) ([]byte, error) {
	b, err := json.Marshal(truncate(rec))
	if err != nil {
		return nil, l.fail(err)
	}
	return b, nil
}

// Append writes rec and returns once it is durable.
func (l *Log) Append(rec Record) error {
	if err := l.Err(); err != nil {
		return err
	}
	b, err := l.encode(rec)
	if err != nil {
		return err
	}
	r := &appendReq{rec: b, resp: make(chan error, 1)}
	select {
	case l.reqs <- r:
	case <-l.done:
		return fmt.Errorf("%w: closed", ErrFailed)
	}
	select {
	case err := <-r.resp:
		return err
	case <-l.done:
		return fmt.Errorf("%w: closed", ErrFailed)
	}
}

// AppendAsync queues rec without waiting. If the queue is full it waits, rather than drop a record.
func (l *Log) AppendAsync(rec Record) {
	if l.Err() != nil {
		return
	}
	b, err := l.encode(rec)
	if err != nil {
		return
	}
	select {
	case l.reqs <- &appendReq{rec: b}:
	case <-l.done:
	}
}

// Err returns the error that failed the log, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Close writes pending records and a final checkpoint, and releases the chain.
func (l *Log) Close() error {
	var err error
	l.close.Do(func() {
		close(l.reqs)
		<-l.done
		err = l.st.close()
	})
	return err
}

// writer batches requests into one write and one fsync.
func (l *Log) writer() {
	defer close(l.done)
	tick := time.NewTicker(l.cfg.CheckpointInterval)
	defer tick.Stop()
	var batch []*appendReq
	for {
		select {
		case r, ok := <-l.reqs:
			if !ok {
				l.checkpoint()
				return
			}
			batch = append(batch[:0], r)
			// The appenders the last fsync released are runnable now; let them enqueue before taking
			// the batch, or each fsync would carry one record while the others wait for the next.
			runtime.Gosched()
		drain:
			for len(batch) < 512 {
				select {
				case r, ok := <-l.reqs:
					if !ok {
						break drain
					}
					batch = append(batch, r)
				default:
					break drain
				}
			}
			err := l.writeBatch(batch)
			for _, r := range batch {
				if r.resp != nil {
					r.resp <- err
				}
			}
		case <-tick.C:
			l.checkpoint()
		}
	}
}

func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: %v", ErrFailed, err)
	}
	return l.failed
}

func (l *Log) writeBatch(batch []*appendReq) error {
	if err := l.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	seq, prev := l.seq, l.mac
	l.mu.Unlock()
	entries := make([]entry, 0, len(batch))
	for _, r := range batch {
		seq++
		mac := l.macs.mac(seq, prev, r.rec)
		entries = append(entries, entry{Seq: seq, Prev: prev, Rec: r.rec, MAC: mac})
		prev = mac
	}
	// A batch of records nobody waits for (result summaries, session ends) is written but not synced:
	// the next durable append, checkpoint or close syncs it. That halves the fsyncs of a statement
	// stream without weakening what Append promises.
	durable := false
	for _, r := range batch {
		durable = durable || r.resp != nil
	}
	if err := l.st.append(entries, durable); err != nil {
		return l.fail(err)
	}
	l.unsynced = !durable
	l.mu.Lock()
	l.seq, l.mac = seq, prev
	l.mu.Unlock()
	return nil
}

// truncate keeps a record under MaxRecordBytes by cutting its statement text.
func truncate(r Record) Record {
	if r.Statement != nil && len(r.Statement.Text) > MaxRecordBytes/2 {
		s := *r.Statement
		s.Text = s.Text[:MaxRecordBytes/2] + "…[truncated]"
		r.Statement = &s
	}
	return r
}

// checkpoint signs the chain's head if it moved since the last checkpoint.
func (l *Log) checkpoint() {
	l.mu.Lock()
	seq, mac, failed := l.seq, l.mac, l.failed
	l.mu.Unlock()
	if failed != nil || seq == 0 || seq == l.cpSeq {
		return
	}
	// A checkpoint must never name records that a crash could still lose.
	if l.unsynced {
		if err := l.st.sync(); err != nil {
			l.fail(err)
			return
		}
		l.unsynced = false
	}
	text := fmt.Sprintf("svidbroker audit checkpoint\nchain %s\nseq %d\nmac %s\ntime %s\n", l.cfg.Chain, seq, mac, l.cfg.Now().UTC().Format(time.RFC3339))
	signed, err := note.Sign(&note.Note{Text: text}, l.cfg.Signer)
	if err != nil {
		l.fail(err)
		return
	}
	if err := l.st.checkpoint(signed); err != nil {
		l.fail(err)
		return
	}
	l.cpSeq = seq
}

// readLines calls f for each line of path, with its 1-based number. A missing file has no lines. A
// line longer than twice MaxRecordBytes is an error before it is held in memory whole.
func readLines(path string, f func(n int, line []byte) error) error {
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	r := bufio.NewReaderSize(file, 2*MaxRecordBytes)
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n') // valid until the next read: f must not keep it
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%s:%d: line longer than %d bytes", path, n, 2*MaxRecordBytes)
		}
		if len(line) > 0 {
			if ferr := f(n, line); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

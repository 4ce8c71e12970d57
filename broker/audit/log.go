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
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/svidbroker/svidbroker/broker/metrics"
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
	// FlushInterval bounds how long a written record waits for a flush to stable storage when nothing
	// asks for one sooner. Default 10ms.
	FlushInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger reports a failure of the store, with the records it may have cost. Default: none.
	Logger *slog.Logger
	// Verifier checks the chain's signed checkpoints when it is opened; without it they are counted,
	// not read. Required with a Witness.
	Verifier note.Verifier
	// Witness, if set, is sent every signed checkpoint, so that a cut of the log together with its
	// checkpoints file shows. A chain that does not cover the witness's latest checkpoint is not opened.
	Witness Witness
	// WitnessTimeout bounds each call to the witness. Default 5s.
	WitnessTimeout time.Duration
	// WitnessMaxLag is how long a signed checkpoint may wait for the witness to take it; after that,
	// Err reports the log unavailable and statements are refused until the witness takes it. Default
	// 1m; negative: a lagging witness refuses nothing (audit on_failure = "continue").
	WitnessMaxLag time.Duration
	// RetryInterval is the longest wait between attempts to recover a failed store; they start at
	// FlushInterval and double. Default 5s.
	RetryInterval time.Duration
	// Metrics, if set, times the store's writes and flushes and counts its errors.
	Metrics *metrics.Metrics
}

// entry is one line of the chain file.
type entry struct {
	Seq  uint64          `json:"seq"`
	Prev string          `json:"prev"`
	Rec  json.RawMessage `json:"rec"`
	MAC  string          `json:"mac"`
}

// Log is an open chain. Appenders chain their records under the log's lock and write them
// themselves: the first to find no write under way writes everything chained so far, with one write,
// and the others wait for it (group commit, without handing each record to another goroutine). A
// flusher goroutine makes what was written durable, so that writing goes on while a flush is under
// way; it also writes the checkpoints.
type Log struct {
	cfg   Config
	st    store
	kick  chan struct{} // a flush is wanted now
	wrote chan struct{} // records were written: flush within FlushInterval
	quit  chan struct{} // stops the flusher
	fdone chan struct{} // closed when the flusher has stopped
	close sync.Once

	mu      sync.Mutex
	cond    *sync.Cond // on mu: written or durable moved, a write ended, or the log failed or stopped
	failed  error
	closed  bool   // no more appends
	stopped bool   // closed and flushed: nothing more becomes durable
	seq     uint64 // the last record chained
	mac     string
	macs    *entryMACs
	pending []entry // chained, not yet written
	spare   []entry // a written batch's slice, for the next
	urgent  bool    // a pending record wants its flush at once
	writing bool    // an appender is writing
	written uint64  // the last record written to the store
	// writtenMAC is the MAC of record written, which a checkpoint names.
	writtenMAC string
	durable    uint64 // the last record known to be on stable storage
	// durableMAC is the MAC of record durable, which a checkpoint names.
	durableMAC string
	cpMu       sync.Mutex // one checkpoint at a time
	cpSeq      uint64     // on cpMu: the last record a checkpoint names
	// epoch counts failures: a record chained in an earlier epoch than the current one was dropped
	// (or its flush failed), whatever seq later records take.
	epoch uint64
	// failure is the current failure, which recovery records; lastFailure the error of the last one.
	failure     *failure
	lastFailure error

	// The witness's state: the latest signed checkpoint it has not taken, since when one has waited,
	// and the last attempt's error.
	wkick  chan struct{}
	wdone  chan struct{}
	wNote  []byte
	wSeq   uint64
	wSince time.Time
	wErr   error
	// wUnchecked says the chain is still to be checked against the witness's latest checkpoint (the
	// witness did not answer at start); wBroken, that it does not cover it.
	wUnchecked bool
	wBroken    error
}

// failure is what a failed write or flush cost: records chained but never written (lostFrom to
// lostTo, refused to whoever waited for them), and records written whose flush failed.
type failure struct {
	err                        error
	at                         time.Time
	lostFrom, lostTo           uint64
	unflushedFrom, unflushedTo uint64
	torn                       map[string]string
	recorded                   bool // the failure's record is written; its flush remains
	dropped                    int  // records not waited for (results, ends) refused while it failed
	recordSeq                  uint64
}

// maxPending bounds the records AppendAsync may leave chained while a write is under way; beyond it,
// it waits for the write, rather than hold records without bound.
const maxPending = 4096

// ErrFailed wraps the error that failed the log; every append after it fails.
var ErrFailed = errors.New("audit: log failed")

// store keeps a chain's entries and checkpoints: files (fileStore) or PostgreSQL (pgStore). One
// append runs at a time; sync and checkpoint run on the flusher, at the same time as an append.
type store interface {
	// append writes entries, already chained, so that the broker process dying loses none of them
	// once it returns; they are durable after the next sync.
	append(entries []entry) error
	// sync makes everything appended so far durable; upTo is the last entry's seq.
	sync(upTo uint64) error
	// checkpoint writes a signed note durably.
	checkpoint(note []byte) error
	// repair readies the store for appends after a failed append, checkpoint or sync: it ends with
	// the last entry and checkpoint written successfully. It describes what it cut, for the record of
	// the failure.
	repair() (map[string]string, error)
	close() error
}

// fileStore keeps a chain in <dir>/<chain>.jsonl and its checkpoints in <dir>/<chain>.checkpoints.
type fileStore struct {
	f, cp, lock *os.File
	buf         []byte // the lines of the last append, kept for the next
	// size and cpSize are the files' sizes after the last write that succeeded: what a failed write
	// added after them is incomplete, and repair cuts it.
	size, cpSize int64
}

func checkConfig(cfg *Config) error {
	if len(cfg.MACKey) < MinMACKeyBytes || cfg.Signer == nil || cfg.Chain == "" {
		return errors.New("audit: a chain name, a MAC key and a signer are required")
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 10 * time.Second
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 10 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Witness != nil && cfg.Verifier == nil {
		return errors.New("audit: a witness needs the checkpoint verifier key, to check what it holds")
	}
	if cfg.WitnessTimeout <= 0 {
		cfg.WitnessTimeout = 5 * time.Second
	}
	if cfg.WitnessMaxLag == 0 {
		cfg.WitnessMaxLag = time.Minute
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	return nil
}

// start resumes a verified chain and starts its flusher.
func start(cfg Config, st store, rep *Report) *Log {
	l := &Log{cfg: cfg, st: st, kick: make(chan struct{}, 1), wrote: make(chan struct{}, 1), quit: make(chan struct{}),
		fdone: make(chan struct{}), macs: newEntryMACs(cfg.MACKey), wkick: make(chan struct{}, 1), wdone: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	l.seq, l.mac = rep.Records, rep.LastMAC
	if l.seq == 0 {
		l.mac = genesis(cfg.MACKey, cfg.Chain)
	}
	l.written, l.writtenMAC, l.cpSeq = l.seq, l.mac, rep.LastCheckpoint
	// What a previous run wrote may not have been flushed before it stopped: flush it now.
	if err := st.sync(l.seq); err != nil {
		l.fail(fmt.Errorf("flush at start: %w", err))
	} else {
		l.durable, l.durableMAC = l.seq, l.mac
	}
	l.wUnchecked = rep.witnessUnchecked
	if cfg.Witness != nil && len(rep.lastNote) > 0 {
		// The witness may have missed the last run's latest checkpoint; it refuses none it holds later.
		l.queueWitness(rep.LastCheckpoint, rep.lastNote)
	}
	go l.flusher()
	if cfg.Witness != nil {
		go l.witnessLoop()
	} else {
		close(l.wdone)
	}
	return l
}

// append writes the entries' lines with one write(2): once it returns the kernel holds them, and they
// survive the broker process.
func (s *fileStore) append(entries []entry) error {
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
	s.size += int64(len(buf))
	return nil
}

// maxKeptLines is the largest line buffer a fileStore keeps from one append to the next.
const maxKeptLines = 1 << 20

// sync flushes the chain file with fdatasync: its data and its size, which is what reading it back
// needs, without the journal commit for its times that fsync forces. Under a database's write load
// that halves a flush here (375 µs against 218 µs for appends of 600 bytes).
func (s *fileStore) sync(uint64) error { return fdatasync(s.f) }

func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

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
	line = append(line, '\n')
	if _, err := s.cp.Write(line); err != nil {
		return err
	}
	s.cpSize += int64(len(line))
	return fdatasync(s.cp)
}

// macAt returns the MAC of record seq, which the log holds.
func (s *fileStore) macAt(seq uint64) (string, error) {
	mac := ""
	errFound := errors.New("found")
	err := readLines(s.f.Name(), func(n int, line []byte) error {
		var e entry
		if json.Unmarshal(line, &e) == nil && e.Seq == seq {
			mac = e.MAC
			return errFound
		}
		return nil
	})
	if err != nil && err != errFound {
		return "", err
	}
	if mac == "" {
		return "", fmt.Errorf("record %d is not in the log", seq)
	}
	return mac, nil
}

// repair cuts what failed writes added to either file after the last write that succeeded, and
// returns where those bytes were and their hash, for the record of the failure.
func (s *fileStore) repair() (map[string]string, error) {
	// A disk that is still full would take the failure's record in the room a cut frees, and fail the
	// next write: wait for room, leaving the incomplete bytes where verify reports them until then.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(s.f.Name()), &fs); err != nil {
		return nil, err
	}
	if free := fs.Bavail * uint64(fs.Bsize); free < minFreeBytes {
		return nil, fmt.Errorf("%s has %d bytes free: writes resume once it has %d", filepath.Dir(s.f.Name()), free, minFreeBytes)
	}
	d := map[string]string{}
	for _, f := range []struct {
		file   *os.File
		good   int64
		prefix string
	}{{s.f, s.size, "torn_"}, {s.cp, s.cpSize, "torn_checkpoint_"}} {
		t, err := cutTail(f.file, f.good)
		if err != nil {
			return nil, err
		}
		tornDetail(d, f.prefix, t)
	}
	return d, nil
}

// minFreeBytes is the room a failed file store waits for before it takes records again.
const minFreeBytes = 64 << 10

// cutTail truncates f, opened for appending, to good, durably, and describes the bytes cut; nil when
// there were none.
func cutTail(f *os.File, good int64) (*Torn, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case fi.Size() < good:
		return nil, fmt.Errorf("%s is %d bytes, shorter than the %d written to it: it was cut while the broker ran", f.Name(), fi.Size(), good)
	case fi.Size() == good:
		return nil, fdatasync(f)
	}
	r, err := os.Open(f.Name())
	if err != nil {
		return nil, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(r, good, fi.Size()-good))
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(good); err != nil {
		return nil, err
	}
	if err := fdatasync(f); err != nil {
		return nil, err
	}
	return &Torn{Offset: good, Length: int(n), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
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
	rec = truncate(rec)
	b, err := encodeRecord(&rec)
	if err != nil {
		return nil, l.fail(err)
	}
	return b, nil
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

// fileLines is the lineSource of the file at path.
func fileLines(path string) lineSource {
	return func(f func(int, []byte) error) error { return readLines(path, f) }
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

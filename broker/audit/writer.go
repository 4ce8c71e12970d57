package audit

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Append records rec and returns once it is durable: on stable storage, with every record before it.
func (l *Log) Append(rec Record) error {
	seq, err := l.write(rec, true)
	if err != nil {
		return err
	}
	return l.waitDurable(seq)
}

// Write records rec and returns once the store holds it: the broker process dying after that loses
// nothing (for files the kernel holds it; for PostgreSQL the database has committed it). It reaches
// stable storage within the flush interval; with urgent, a flush starts as soon as it is written, so
// that a commit point that follows (Flush) finds the flush under way or done.
func (l *Log) Write(rec Record, urgent bool) error {
	_, err := l.write(rec, urgent)
	return err
}

// Flush returns once every record written before it was called is durable.
func (l *Log) Flush() error {
	l.mu.Lock()
	seq, failed := l.seq, l.failed
	l.mu.Unlock()
	if failed != nil {
		return failed
	}
	return l.waitDurable(seq)
}

// AppendAsync queues rec without waiting. If the queue is full it waits, rather than drop a record.
// The record is written with the next batch and is durable within the flush interval after that.
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

func (l *Log) write(rec Record, urgent bool) (uint64, error) {
	if err := l.Err(); err != nil {
		return 0, err
	}
	b, err := l.encode(rec)
	if err != nil {
		return 0, err
	}
	r := &appendReq{rec: b, resp: make(chan appended, 1), urgent: urgent}
	select {
	case l.reqs <- r:
	case <-l.done:
		return 0, fmt.Errorf("%w: closed", ErrFailed)
	}
	select {
	case a := <-r.resp:
		return a.seq, a.err
	case <-l.done:
		return 0, fmt.Errorf("%w: closed", ErrFailed)
	}
}

// waitDurable waits until record seq is durable, starting a flush if none is under way.
func (l *Log) waitDurable(seq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.durable >= seq {
		return nil
	}
	l.kickFlush()
	for l.durable < seq && l.failed == nil && !l.closed {
		l.flushed.Wait()
	}
	switch {
	case l.durable >= seq:
		return nil
	case l.failed != nil:
		return l.failed
	default:
		return fmt.Errorf("%w: closed", ErrFailed)
	}
}

// kickFlush asks the flusher for a flush now.
func (l *Log) kickFlush() {
	select {
	case l.kick <- struct{}{}:
	default: // one is asked for already; it will cover this record too
	}
}

// Err returns the error that failed the log, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Close writes pending records, flushes them, writes a final checkpoint, and releases the chain.
func (l *Log) Close() error {
	var err error
	l.close.Do(func() {
		close(l.reqs)
		<-l.done
		close(l.quit)
		<-l.fdone
		l.mu.Lock()
		l.closed = true
		l.flushed.Broadcast()
		l.mu.Unlock()
		err = l.st.close()
	})
	return err
}

// writer chains requests in batches and writes each batch with one write; checkpoints are its too.
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
			// The appenders the last write released are runnable now; let them enqueue before taking
			// the batch, or each write would carry one record while the others wait for the next.
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
			first, err := l.writeBatch(batch)
			urgent := false
			for i, r := range batch {
				urgent = urgent || r.urgent
				if r.resp != nil {
					r.resp <- appended{seq: first + uint64(i), err: err}
				}
			}
			if err == nil {
				if urgent {
					l.kickFlush()
				} else {
					select {
					case l.wrote <- struct{}{}:
					default:
					}
				}
			}
		case <-tick.C:
			l.checkpoint()
		}
	}
}

// flusher makes written records durable: at once when a flush is asked for, else within
// FlushInterval of a write. While it flushes, the writer goes on writing; the next flush covers that.
func (l *Log) flusher() {
	defer close(l.fdone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		select {
		case <-l.kick:
		case <-l.wrote:
			if !armed {
				timer.Reset(l.cfg.FlushInterval)
				armed = true
			}
			continue
		case <-timer.C:
		case <-l.quit:
			return
		}
		timer.Stop()
		armed = false
		if l.flush() {
			timer.Reset(l.cfg.FlushInterval) // written during the flush
			armed = true
		}
	}
}

// flush makes every record written so far durable. It reports whether more were written meanwhile.
func (l *Log) flush() (more bool) {
	l.mu.Lock()
	target, failed := l.seq, l.failed
	done := l.durable >= target
	l.mu.Unlock()
	if failed != nil || done {
		return false
	}
	err := l.st.sync(target)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failLocked(fmt.Errorf("flush: %w", err))
		return false
	}
	l.durable = max(l.durable, target)
	l.flushed.Broadcast()
	return l.seq > l.durable
}

func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failLocked(err)
}

// failLocked fails the log for good, once, and says which records may not be durable: those after
// the last flush, up to the last written, and any whose write failed.
func (l *Log) failLocked(err error) error {
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		l.cfg.Logger.Error("audit store failed: no more records can be kept, and records after the last flush may not be durable",
			"chain", l.cfg.Chain, "error", err, "last_durable_seq", l.durable, "not_durable_from_seq", l.durable+1, "last_written_seq", l.seq)
		l.flushed.Broadcast()
	}
	return l.failed
}

// writeBatch chains and writes a batch, and returns its first record's seq.
func (l *Log) writeBatch(batch []*appendReq) (uint64, error) {
	if err := l.Err(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	seq, prev := l.seq, l.mac
	l.mu.Unlock()
	first := seq + 1
	entries := make([]entry, 0, len(batch))
	for _, r := range batch {
		seq++
		mac := l.macs.mac(seq, prev, r.rec)
		entries = append(entries, entry{Seq: seq, Prev: prev, Rec: r.rec, MAC: mac})
		prev = mac
	}
	if err := l.st.append(entries); err != nil {
		return 0, l.fail(fmt.Errorf("write of records %d to %d: %w", first, seq, err))
	}
	l.mu.Lock()
	l.seq, l.mac = seq, prev
	l.mu.Unlock()
	return first, nil
}

// checkpoint signs the chain's head if it moved since the last checkpoint.
func (l *Log) checkpoint() {
	l.mu.Lock()
	seq, mac, failed := l.seq, l.mac, l.failed
	l.mu.Unlock()
	if failed != nil || seq == 0 || seq == l.cpSeq {
		return
	}
	// A checkpoint must never name records that a crash could still lose. Only this goroutine writes,
	// so seq cannot move during the flush.
	l.flush()
	l.mu.Lock()
	durable := l.durable >= seq
	l.mu.Unlock()
	if !durable {
		return // the flush failed, and failed the log
	}
	text := fmt.Sprintf("svidbroker audit checkpoint\nchain %s\nseq %d\nmac %s\ntime %s\n", l.cfg.Chain, seq, mac, l.cfg.Now().UTC().Format(time.RFC3339))
	signed, err := note.Sign(&note.Note{Text: text}, l.cfg.Signer)
	if err != nil {
		l.fail(err)
		return
	}
	if err := l.st.checkpoint(signed); err != nil {
		l.fail(fmt.Errorf("checkpoint: %w", err))
		return
	}
	l.cpSeq = seq
}

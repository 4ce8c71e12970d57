package audit

import (
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Append records rec and returns once it is durable: on stable storage, with every record before it.
func (l *Log) Append(rec Record) error {
	seq, ep, err := l.append(rec, true, true)
	if err != nil {
		return err
	}
	return l.waitDurable(seq, ep)
}

// Write records rec and returns once the store holds it: the broker process dying after that loses
// nothing (for files the kernel holds it; for PostgreSQL the database has committed it). It reaches
// stable storage within the flush interval; with urgent, a flush starts as soon as it is written, so
// that a commit point that follows (Flush) finds the flush under way or done.
func (l *Log) Write(rec Record, urgent bool) error {
	_, _, err := l.append(rec, true, urgent)
	return err
}

// Flush returns once every record written before it was called is durable.
func (l *Log) Flush() error {
	l.mu.Lock()
	seq, ep := l.written, l.epoch
	l.mu.Unlock()
	return l.waitDurable(seq, ep)
}

// AppendAsync records rec without waiting for it to be written, unless many records already wait to
// be. It is written with the next record someone waits for, or by the flusher, and so is in the store
// and durable within the flush interval; a write of its own for each result summary would cost more
// than the statement's. An error fails the log for the next Write or Flush.
func (l *Log) AppendAsync(rec Record) { _, _, _ = l.append(rec, false, false) }

// append chains rec and, with wait, returns once it is written. If no write is under way, the caller
// writes everything chained so far itself.
func (l *Log) append(rec Record, wait, urgent bool) (uint64, uint64, error) {
	b, err := l.encode(rec)
	if err != nil {
		return 0, 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refusing(wait); err != nil {
		if f := l.failure; f != nil && !wait {
			f.dropped++ // said in the failure's record
		}
		return 0, 0, err
	}
	ep := l.epoch
	l.seq++
	seq, mac := l.seq, l.macs.mac(l.seq, l.mac, b)
	l.pending = append(l.pending, entry{Seq: seq, Prev: l.mac, Rec: b, MAC: mac})
	l.mac = mac
	l.urgent = l.urgent || urgent
	switch {
	case !wait && len(l.pending) < maxPending:
		select {
		case l.wrote <- struct{}{}: // the flusher writes it, unless an appender does first
		default:
		}
		return seq, ep, nil
	case !l.writing:
		l.writeLocked()
	}
	for l.written < seq && l.failed == nil && l.epoch == ep {
		l.cond.Wait()
	}
	if l.epoch != ep || l.written < seq {
		return 0, 0, l.lastFailure
	}
	return seq, ep, nil
}

// refusing says why no record can be added, if one cannot. A record that something waits for
// before it goes on (a statement's) is refused too while the witness is overdue; one nobody waits
// for (what became of work already under way) is still kept.
func (l *Log) refusing(wait bool) error {
	switch {
	case l.failed != nil:
		return l.failed
	case l.closed:
		return fmt.Errorf("%w: closed", ErrFailed)
	case wait:
		return l.witnessOverdue()
	}
	return nil
}

// writeLocked writes what is pending, and what is chained meanwhile, until nothing is; l.mu is held,
// and released during each write.
func (l *Log) writeLocked() {
	l.writing = true
	for len(l.pending) > 0 && l.failed == nil {
		batch, urgent := l.pending, l.urgent
		l.pending, l.spare, l.urgent = l.spare, nil, false
		l.mu.Unlock()
		start := time.Now()
		err := l.st.append(batch)
		l.cfg.Metrics.AuditAppend(time.Since(start), err)
		l.mu.Lock()
		if err != nil {
			l.failLocked(fmt.Errorf("write of records %d to %d: %w", batch[0].Seq, batch[len(batch)-1].Seq, err))
			break
		}
		l.written, l.writtenMAC = batch[len(batch)-1].Seq, batch[len(batch)-1].MAC
		clear(batch)
		l.spare = batch[:0]
		if urgent {
			l.kickFlush()
		} else {
			select {
			case l.wrote <- struct{}{}:
			default:
			}
		}
		l.cond.Broadcast()
	}
	l.writing = false
	l.cond.Broadcast()
}

// waitDurable waits until record seq, chained in epoch ep, is durable, asking for a flush.
func (l *Log) waitDurable(seq, ep uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.durable < seq && l.failed == nil && !l.stopped && l.epoch == ep {
		l.kickFlush()
		l.cond.Wait()
	}
	switch {
	case l.epoch != ep:
		return l.lastFailure
	case l.durable >= seq:
		return nil
	case l.failed != nil:
		return l.failed
	default:
		return fmt.Errorf("%w: closed", ErrFailed)
	}
}

// Unflushed is how many records are chained but not yet durable: written to the store and waiting
// for a flush, or waiting to be written.
func (l *Log) Unflushed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq - min(l.durable, l.seq)
}

// kickFlush asks the flusher for a flush now.
func (l *Log) kickFlush() {
	select {
	case l.kick <- struct{}{}:
	default: // one is asked for already; it will cover this record too
	}
}

// Err returns why the log takes no statement's record now: the store failed (until it recovers), or
// the witness has not taken a checkpoint for longer than WitnessMaxLag; nil when it takes them.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return l.failed
	}
	return l.witnessOverdue()
}

// Close refuses further records, writes and flushes the pending ones, writes a final checkpoint, and
// releases the chain.
func (l *Log) Close() error {
	var err error
	l.close.Do(func() {
		close(l.quit)
		<-l.fdone
		<-l.wdone
		l.mu.Lock()
		l.closed = true
		for l.writing {
			l.cond.Wait()
		}
		if len(l.pending) > 0 {
			l.writeLocked() // left by AppendAsync
		}
		l.mu.Unlock()
		l.checkpoint()
		l.publishFinal()
		l.mu.Lock()
		l.stopped = true
		l.cond.Broadcast()
		l.mu.Unlock()
		err = l.st.close()
	})
	return err
}

// flusher makes written records durable: at once when a flush is asked for, else within
// FlushInterval of a write. It also writes a checkpoint every CheckpointInterval.
func (l *Log) flusher() {
	defer close(l.fdone)
	tick := time.NewTicker(l.cfg.CheckpointInterval)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	// The backoff goes on doubling across a recovery that fails again soon (a disk that is still full
	// takes the failure's record in the bytes it cut, then fails the next write), so that such a store
	// is tried less and less often; it starts over once the store has held for RetryInterval.
	retrying, backoff := false, l.cfg.FlushInterval
	var recovered time.Time
	for {
		if !retrying && l.failedNow() {
			if !recovered.IsZero() && time.Since(recovered) > l.cfg.RetryInterval {
				backoff = l.cfg.FlushInterval
			}
			retry.Reset(backoff)
			retrying = true
		}
		select {
		case <-retry.C:
			retrying = false
			backoff = min(2*backoff, l.cfg.RetryInterval)
			if err := l.recover(); err != nil {
				l.cfg.Logger.Warn("audit: the store has not recovered yet; statements stay refused", "chain", l.cfg.Chain, "error", err, "next_attempt_in", backoff)
			} else {
				recovered = time.Now()
			}
			continue
		case <-l.kick:
		case <-l.wrote:
			if !armed {
				timer.Reset(l.cfg.FlushInterval)
				armed = true
			}
			continue
		case <-timer.C:
		case <-tick.C:
			l.checkpoint()
			continue
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

// flush writes what is chained, unless an appender is writing it, and makes every record written so
// far durable. It reports whether more were chained meanwhile.
func (l *Log) flush() (more bool) {
	l.mu.Lock()
	if !l.writing && len(l.pending) > 0 {
		l.writeLocked()
	}
	target, targetMAC, failed := l.written, l.writtenMAC, l.failed
	done := l.durable >= target
	l.mu.Unlock()
	if failed != nil || done {
		return false
	}
	start := time.Now()
	err := l.st.sync(target)
	l.cfg.Metrics.AuditFlush(time.Since(start), err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failLocked(fmt.Errorf("flush: %w", err))
		return false
	}
	if target > l.durable {
		l.durable, l.durableMAC = target, targetMAC
	}
	l.cond.Broadcast()
	return l.seq > l.durable
}

// failedNow reports whether the store has failed (not merely the witness lagging).
func (l *Log) failedNow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed != nil
}

func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failLocked(err)
}

// failLocked fails the log until it recovers, and says which records may not be durable: those
// after the last flush, up to the last written, and those chained but not written, which are dropped:
// whoever waited for them is refused, and the chain goes on from the last record written.
func (l *Log) failLocked(err error) error {
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		l.lastFailure = l.failed
		l.epoch++
		l.failure = &failure{err: err, at: l.cfg.Now(), lostFrom: l.written + 1, lostTo: l.seq,
			unflushedFrom: l.durable + 1, unflushedTo: l.written}
		l.cfg.Logger.Error("audit store failed: statements are refused until it recovers, and records after the last flush may not be durable",
			"chain", l.cfg.Chain, "error", err, "last_durable_seq", l.durable, "not_durable_from_seq", l.durable+1,
			"last_written_seq", l.written, "last_chained_seq", l.seq)
		l.seq, l.mac = l.written, l.writtenMAC
		clear(l.pending)
		l.pending, l.urgent = l.pending[:0], false
		l.kickFlush() // the flusher schedules recovery
		l.cond.Broadcast()
	}
	return l.failed
}

// checkpoint flushes, then signs the last durable record if it moved since the last checkpoint: a
// checkpoint must never name records that a crash could still lose.
func (l *Log) checkpoint() {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	l.flush()
	l.mu.Lock()
	seq, mac, failed := l.durable, l.durableMAC, l.failed
	l.mu.Unlock()
	if failed != nil || seq == 0 || seq == l.cpSeq {
		return
	}
	signed, err := note.Sign(&note.Note{Text: checkpointText(l.cfg.Chain, seq, mac, l.cfg.Now())}, l.cfg.Signer)
	if err != nil {
		l.cfg.Metrics.AuditCheckpointFailed()
		l.fail(err)
		return
	}
	if err := l.st.checkpoint(signed); err != nil {
		l.cfg.Metrics.AuditCheckpointFailed()
		l.fail(fmt.Errorf("checkpoint: %w", err))
		return
	}
	l.cpSeq = seq
	if l.cfg.Witness != nil {
		l.queueWitness(seq, signed)
	}
}

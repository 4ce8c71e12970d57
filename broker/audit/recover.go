package audit

import (
	"fmt"
	"maps"
	"strconv"
)

// recover tries to end the store's failure: it has the store cut what the failed writes left, then
// records the failure (what it cost, and the hash of what was cut) and flushes that record. Once it is
// durable, records are taken again. It runs on the flusher.
func (l *Log) recover() error {
	l.mu.Lock()
	f := l.failure
	for l.writing {
		l.cond.Wait()
	}
	l.mu.Unlock()
	if f == nil {
		return nil
	}
	l.mu.Lock()
	recorded := f.recorded
	l.mu.Unlock()
	if !recorded {
		torn, err := l.st.repair()
		if err != nil {
			return fmt.Errorf("repair: %w", err)
		}
		if f.torn == nil {
			f.torn = map[string]string{}
		}
		maps.Copy(f.torn, torn)
		l.mu.Lock()
		rec := Record{Time: l.cfg.Now().UTC(), Kind: KindWriteFailed, Detail: failureDetail(f)}
		f.recorded = true
		l.mu.Unlock()
		b, err := encodeRecord(&rec)
		if err != nil {
			return err
		}
		l.mu.Lock()
		seq := l.seq + 1
		e := entry{Seq: seq, Prev: l.mac, Rec: b, MAC: l.macs.mac(seq, l.mac, b)}
		l.mu.Unlock()
		if err := l.st.append([]entry{e}); err != nil {
			l.mu.Lock()
			f.recorded = false
			l.mu.Unlock()
			return fmt.Errorf("write the record of the failure: %w", err)
		}
		l.mu.Lock()
		l.seq, l.mac, l.written, l.writtenMAC = seq, e.MAC, seq, e.MAC
		f.recordSeq = seq
		l.mu.Unlock()
	}
	l.mu.Lock()
	seq, mac := l.written, l.writtenMAC
	l.mu.Unlock()
	if err := l.st.sync(seq); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	l.mu.Lock()
	l.durable, l.durableMAC = seq, mac
	l.failed, l.failure = nil, nil
	l.cond.Broadcast()
	l.mu.Unlock()
	l.cfg.Logger.Info("audit store recovered: records are taken again", "chain", l.cfg.Chain, "failure_record_seq", f.recordSeq,
		"failed_at", f.at, "error", f.err)
	return nil
}

// failureDetail is what the record of a failure says.
func failureDetail(f *failure) map[string]string {
	d := map[string]string{"error": f.err.Error(), "failed_at": f.at.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
	if f.lostFrom <= f.lostTo {
		d["lost_from"], d["lost_to"] = strconv.FormatUint(f.lostFrom, 10), strconv.FormatUint(f.lostTo, 10)
	}
	if f.unflushedFrom <= f.unflushedTo {
		d["not_flushed_from"], d["not_flushed_to"] = strconv.FormatUint(f.unflushedFrom, 10), strconv.FormatUint(f.unflushedTo, 10)
	}
	if f.dropped > 0 {
		d["dropped_unwaited"] = strconv.Itoa(f.dropped)
	}
	maps.Copy(d, f.torn)
	return d
}

// describeWriteFailure says what a KindWriteFailed record records, for people.
func describeWriteFailure(r Record) string {
	d := r.Detail
	s := "a write to the audit store failed"
	if at := d["failed_at"]; at != "" {
		s += " at " + at
	}
	if e := d["error"]; e != "" {
		s += " (" + e + ")"
	}
	if d["found"] != "" {
		s += ", found " + d["found"]
	}
	if d["lost_from"] != "" {
		s += fmt.Sprintf("; records chained as %s to %s were never written (the statements that waited for them were refused; results and ends recorded without waiting are lost)", d["lost_from"], d["lost_to"])
	}
	if d["dropped_unwaited"] != "" {
		s += fmt.Sprintf("; %s record(s) nobody waited for (result summaries, session ends) refused while it failed", d["dropped_unwaited"])
	}
	if d["not_flushed_from"] != "" {
		s += fmt.Sprintf("; records %s to %s were written before the failure but not confirmed on stable storage then", d["not_flushed_from"], d["not_flushed_to"])
	}
	for _, p := range []struct{ prefix, what string }{{"torn_", "log"}, {"torn_checkpoint_", "checkpoints file"}} {
		if d[p.prefix+"bytes"] != "" {
			s += fmt.Sprintf("; %s incomplete bytes at offset %s of the %s were cut (sha256 %s)", d[p.prefix+"bytes"], d[p.prefix+"offset"], p.what, d[p.prefix+"sha256"])
		}
	}
	return s + "; the chain goes on after it"
}

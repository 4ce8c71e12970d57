package audit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends from 1, 4 and 16 concurrent sessions: group commit shares
// each fsync among the appends waiting for it. Compare records/s across the concurrency levels, and
// with BenchmarkWrite.
func BenchmarkAppend(b *testing.B) {
	benchAppends(b, func(l *Log, r Record) error { return l.Append(r) })
}

// BenchmarkWrite measures what a statement waits for in audit durability "commit" (outside a commit
// point): its record written to the file, the flush left to the flusher.
func BenchmarkWrite(b *testing.B) {
	benchAppends(b, func(l *Log, r Record) error { return l.Write(r, false) })
}

func benchAppends(b *testing.B, appendOne func(*Log, Record) error) {
	for _, writers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			k := newKeysTB(b)
			l, err := Open(Config{Dir: b.TempDir(), Chain: "b1", MACKey: k.mac, Signer: k.signer, CheckpointInterval: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			start := time.Now()
			var wg sync.WaitGroup
			per := b.N/writers + 1
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range per {
						if err := appendOne(l, stmt(w*per+i)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*writers)/time.Since(start).Seconds(), "records/s")
		})
	}
}

package audit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends from 1, 4 and 16 concurrent sessions: group commit shares
// each fsync among the appends waiting for it. Compare records/s across the concurrency levels.
func BenchmarkAppend(b *testing.B) {
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
						if err := l.Append(stmt(w*per + i)); err != nil {
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

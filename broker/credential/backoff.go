package credential

import (
	"math/rand/v2"
	"time"
)

// backoff is how failed provider calls are retried: waits that start at initial and double up to
// max, each drawn at random from its upper half, so that many sessions' retries do not reach Vault
// together.
type backoff struct {
	initial, max time.Duration
	// revokeAttempts and revokeWithin bound the background retries of a failed revocation; past
	// them the lease stays in the journal for the next start's sweep.
	revokeAttempts int
	revokeWithin   time.Duration
}

var defaultBackoff = backoff{initial: 500 * time.Millisecond, max: 30 * time.Second, revokeAttempts: 8, revokeWithin: 5 * time.Minute}

// wait is the pause before retry n (from 0).
func (b backoff) wait(n int) time.Duration {
	d := b.initial
	for range n {
		if d >= b.max/2 {
			d = b.max
			break
		}
		d *= 2
	}
	d = min(d, b.max)
	half := d / 2
	return half + rand.N(half+1)
}

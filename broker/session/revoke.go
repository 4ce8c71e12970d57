package session

import (
	"context"
	"sync"
	"time"
)

// revokeTimeout bounds one re-decision of a live session's connect.
const revokeTimeout = 5 * time.Second

// revocations decides the connect of live sessions again whenever a new policy set comes into force,
// and tells a session that is no longer permitted. One goroutine watches for new sets while sessions
// are registered, and none when there are none.
type revocations struct {
	core *Core
	mu   sync.Mutex
	live map[*Session]*revokeWatch
	stop chan struct{} // closes to end the watcher; nil while none runs
}

type revokeWatch struct {
	digest string // the set the session was last decided under
	notify func(*Ended)
	done   bool
}

func (r *revocations) add(s *Session, notify func(*Ended)) (stop func()) {
	policy := r.core.cfg.Policy
	w := &revokeWatch{digest: s.decision.PolicySet, notify: notify}
	r.mu.Lock()
	if r.live == nil {
		r.live = map[*Session]*revokeWatch{}
	}
	r.live[s] = w
	if r.stop == nil {
		r.stop = make(chan struct{})
		go r.watch(r.stop)
	} else if w.digest != policy.Engine.Digest() {
		go r.recheck() // a set came into force between the decision and now
	}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.live, s)
		if len(r.live) == 0 && r.stop != nil {
			close(r.stop)
			r.stop = nil
		}
	}
}

// watch re-decides the live sessions at each new policy set, until stop closes.
func (r *revocations) watch(stop chan struct{}) {
	engine := r.core.cfg.Policy.Engine
	for {
		changed := engine.Changed()
		r.recheck()
		select {
		case <-stop:
			return
		case <-changed:
		}
	}
}

// recheck decides again the connect of every live session decided under another set.
func (r *revocations) recheck() {
	digest := r.core.cfg.Policy.Engine.Digest()
	r.mu.Lock()
	var stale []*Session
	for s, w := range r.live {
		if w.digest != digest && !w.done {
			stale = append(stale, s)
		}
	}
	r.mu.Unlock()
	for _, s := range stale {
		ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
		d, err := r.core.cfg.Authorize(ctx, s.connect)
		cancel()
		r.mu.Lock()
		w, ok := r.live[s]
		notify := ok && !w.done && err != nil
		if ok {
			w.digest = digest
			w.done = notify
		}
		r.mu.Unlock()
		if notify {
			w.notify(&Ended{Why: ErrRevoked, Err: err, Decision: d})
		}
	}
}

package postgres

import (
	"sync"
	"sync/atomic"
)

// failedParses are the named statements whose Parse the backend refused. The backend side notes them;
// the client side forgets their names before it handles the client's next message, since the server
// keeps no statement whose Parse failed and the client may Parse that name again.
type failedParses struct {
	any   atomic.Bool
	mu    sync.Mutex
	names map[string]*prepared
}

func (f *failedParses) add(name string, st *prepared) {
	f.mu.Lock()
	if f.names == nil {
		f.names = map[string]*prepared{}
	}
	f.names[name] = st
	f.any.Store(true)
	f.mu.Unlock()
}

// forget removes the statements whose Parse failed from stmts, unless their names were given to
// other statements since.
func (f *failedParses) forget(stmts map[string]*prepared) {
	if !f.any.Load() {
		return
	}
	f.mu.Lock()
	for name, st := range f.names {
		if stmts[name] == st {
			delete(stmts, name)
		}
	}
	clear(f.names)
	f.any.Store(false)
	f.mu.Unlock()
}

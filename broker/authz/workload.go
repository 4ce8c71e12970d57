package authz

import (
	"sync"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// workloads keeps the caller entities Catalog.Workload built, so that a session's decisions (and the
// sessions of one caller, which share its Attestation) build it once rather than per decision. An
// entity depends only on the peer's ID, its Attestation and the catalog's groups: the key holds all
// three, by pointer for the last two, which are not changed once in use (an attestation looked up
// again is a new one; the catalog is the configuration's). A policy reload does not change it.
type workloads struct {
	mu sync.Mutex
	m  map[workloadKey]types.Entity
}

type workloadKey struct {
	catalog *Catalog
	id      spiffeid.ID
	att     *identity.Attestation
}

// maxWorkloads bounds the entities kept: past it, they are let go and built again as needed.
const maxWorkloads = 4096

// get returns p's entity in c, built at most once while it is kept.
func (w *workloads) get(c *Catalog, p identity.Peer) types.Entity {
	k := workloadKey{catalog: c, id: p.ID, att: p.Attestation}
	w.mu.Lock()
	e, ok := w.m[k]
	w.mu.Unlock()
	if ok {
		return e
	}
	e = c.Workload(p)
	w.mu.Lock()
	if w.m == nil || len(w.m) >= maxWorkloads {
		w.m = map[workloadKey]types.Entity{}
	}
	w.m[k] = e
	w.mu.Unlock()
	return e
}

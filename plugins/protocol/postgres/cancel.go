package postgres

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// cancelKey is the key a client gets in BackendKeyData: the broker's own, never the backend's.
type cancelKey struct {
	pid    uint32
	secret uint32
}

// cancelTarget is where a cancel request for one session goes.
type cancelTarget struct {
	secret  uint32
	address string // the backend's host:port
	pid     uint32
	key     []byte     // the backend's secret key
	held    *holdState // the session's statement held for approval; nil until it first holds one
}

// cancelRegistry maps the broker's cancel keys to backend sessions, for one engine or one router (no
// registry is shared by the whole process). A CancelRequest arrives on a new
// connection, usually without TLS (that is how libpq sends it), so the only proof is the key: 64 random
// bits, compared in constant time, as the server itself does.
type cancelRegistry struct {
	mu      sync.Mutex
	byPID   map[uint32]cancelTarget
	timeout time.Duration
}

func newCancelRegistry(timeout time.Duration) *cancelRegistry {
	return &cancelRegistry{byPID: map[uint32]cancelTarget{}, timeout: timeout}
}

// add registers a backend session and returns the key for its client.
func (r *cancelRegistry) add(address string, pid uint32, key []byte) cancelKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		k := cancelKey{pid: randomUint32(), secret: randomUint32()}
		if _, taken := r.byPID[k.pid]; taken || k.pid == 0 {
			continue
		}
		r.byPID[k.pid] = cancelTarget{secret: k.secret, address: address, pid: pid, key: append([]byte(nil), key...)}
		return k
	}
}

// attach lets cancel requests with k reach the statements its session holds for approval.
func (r *cancelRegistry) attach(k cancelKey, h *holdState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.byPID[k.pid]; ok && t.secret == k.secret {
		t.held = h
		r.byPID[k.pid] = t
	}
}

func (r *cancelRegistry) remove(k cancelKey) {
	r.mu.Lock()
	delete(r.byPID, k.pid)
	r.mu.Unlock()
}

// cancelOutcome is what a cancel request did.
type cancelOutcome uint8

const (
	cancelUnknownKey           cancelOutcome = iota
	cancelForwarded                          // to the backend session
	cancelWithdrew                           // withdrew the statement held for approval; the backend owed nothing
	cancelWithdrewAndForwarded               // withdrew the held statement, and went on to the backend, which owed answers
)

// cancel acts on a client's cancel request, if the key is right: it withdraws the statement the
// session holds for approval, if any, and forwards the request to the backend session unless that
// owes the client nothing.
func (r *cancelRegistry) cancel(ctx context.Context, m *pgproto3.CancelRequest) (cancelOutcome, error) {
	r.mu.Lock()
	t, ok := r.byPID[m.ProcessID]
	r.mu.Unlock()
	var secret [4]byte
	binary.BigEndian.PutUint32(secret[:], t.secret)
	if !ok || len(m.SecretKey) != 4 || subtle.ConstantTimeCompare(m.SecretKey, secret[:]) != 1 {
		return cancelUnknownKey, nil
	}
	outcome := cancelForwarded
	if t.held != nil {
		switch withdrew, forward := t.held.cancelRequest(); {
		case withdrew && !forward:
			return cancelWithdrew, nil
		case withdrew:
			outcome = cancelWithdrewAndForwarded
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", t.address)
	if err != nil {
		return outcome, fmt.Errorf("postgres: cancel: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(r.timeout))
	buf, err := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.key}).Encode(nil)
	if err != nil {
		return outcome, fmt.Errorf("postgres: cancel: %w", err)
	}
	if _, err := conn.Write(buf); err != nil {
		return outcome, fmt.Errorf("postgres: cancel: %w", err)
	}
	// The server closes the connection once it has acted on the request.
	var one [1]byte
	_, _ = conn.Read(one[:])
	return outcome, nil
}

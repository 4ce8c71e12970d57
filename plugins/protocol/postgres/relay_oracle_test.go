package postgres

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBackendModelHasTeeth checks the fuzz oracle of FuzzBackendMessages on its seeds: the model
// follows the conforming ones to the end, the seeds that show a secret demand masking, the backend's
// own (unmasked) stream fails the check, and the relay's output passes it.
func TestBackendModelHasTeeth(t *testing.T) {
	p := maskingPlan(t)
	seeds := backendSeeds(t)
	for i, seed := range seeds {
		in := decodeBackendStream(seed, relayTestMaxBody)
		_, model := backendQueue(p)
		exp := expectations(in.msgs, model)
		if i < 10 && (in.err != nil || exp.conforming != len(in.msgs)) {
			t.Errorf("seed %d: the model stopped at message %d of %d (decode error %v)", i, exp.conforming, len(in.msgs), in.err)
		}
		if !bytes.Contains(seed, []byte("SECRET")) {
			continue
		}
		if i < 10 && checkMasked(exp, in.msgs) == nil {
			t.Errorf("seed %d: the unmasked backend stream passes the check", i)
		}
		items, _ := backendQueue(p)
		var out bytes.Buffer
		s := newRelaySession(t, relayIO{fromBackend: bytes.NewReader(seed), toClient: &out})
		s.queue.items = items
		_ = s.backendToClient()
		if bytes.Contains(out.Bytes(), []byte("SECRET")) && i != 1 { // seed 1 has a function call's result
			t.Errorf("seed %d: the client got %q", i, out.Bytes())
		}
		if err := checkMasked(exp, decodeBackendStream(out.Bytes(), 0).msgs); err != nil {
			t.Errorf("seed %d: %v", i, err)
		}
	}
}

// TestClientSeedsReachTheBackend checks the fuzz oracle of FuzzClientMessages: the seeds forward what
// they should, so the invariants are checked on something.
func TestClientSeedsReachTheBackend(t *testing.T) {
	seeds := clientSeeds(t)
	forwarded := func(seed []byte) []pgproto3.FrontendMessage {
		var toBackend bytes.Buffer
		s := newRelaySession(t, relayIO{fromClient: bytes.NewReader(seed), toBackend: &toBackend})
		_ = s.clientToBackend()
		_ = s.backend.Flush()
		checkForwarded(t, toBackend.Bytes(), snapshotQueue(&s.queue))
		msgs, _ := splitMessages(toBackend.Bytes())
		var out []pgproto3.FrontendMessage
		for _, raw := range msgs {
			m, err := pgproto3.NewBackend(bytes.NewReader(raw), nil).Receive()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}
	names := func(msgs []pgproto3.FrontendMessage) string {
		var b []string
		for _, m := range msgs {
			name := msgName(m)
			if e, ok := m.(*pgproto3.Execute); ok && e.Portal == deniedPortal {
				name = "Execute(denied)"
			}
			b = append(b, name)
		}
		return strings.Join(b, " ")
	}
	cases := map[int]string{
		0:  "Query",
		2:  "Execute(denied) Sync Query",
		3:  "Execute(denied) Sync",
		4:  "Execute(denied) Sync",
		6:  "Parse Bind Describe Execute Sync",
		8:  "Execute(denied) Sync Query", // the Flush flushes the broker; the server ignores it until Sync
		9:  "Execute(denied) Sync Execute(denied) Sync",
		10: "Execute(denied) Sync",
		14: "Query Terminate",
	}
	for i, want := range cases {
		if got := names(forwarded(seeds[i])); got != want {
			t.Errorf("seed %d forwarded %q, want %q", i, got, want)
		}
	}
}

package approval

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// eventRecorder is a Notifier that keeps what it is told.
type eventRecorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *eventRecorder) Notify(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *eventRecorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		out = append(out, ev.Kind+":"+ev.Request.ID+":"+ev.By+":"+ev.Reason)
	}
	return out
}

// TestNotifierIsToldOfEachRequestOnce: a request raised, then resolved, expired or withdrawn, is told
// to the notifier once at each step, with who resolved it or why it ended; a Resolve that finds
// nothing pending tells nothing.
func TestNotifierIsToldOfEachRequestOnce(t *testing.T) {
	q := NewQueue()
	rec := &eventRecorder{}
	q.SetNotifier(rec)
	waitFor := func(ctx context.Context, id string, pending bool) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := q.Wait(ctx, Request{ID: id, Statement: "DROP TABLE t"})
			done <- err
		}()
		for pending && len(q.Pending()) == 0 {
			time.Sleep(time.Millisecond)
		}
		return done
	}
	done := waitFor(t.Context(), "a", true)
	if err := q.Resolve("a", true, "dba@example.com"); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := q.Resolve("a", false, "dba@example.com"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("second resolve: %v", err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	done = waitFor(ctx, "b", true)
	cancel(errors.New("the client disconnected"))
	<-done
	if err := q.Resolve("b", true, "dba@example.com"); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("resolve withdrawn: %v", err)
	}
	ctx, stop := context.WithTimeout(t.Context(), time.Millisecond)
	defer stop()
	<-waitFor(ctx, "c", false) // it may expire before it shows as pending
	want := []string{"raised:a::", "approved:a:dba@example.com:", "raised:b::", "withdrawn:b::the client disconnected",
		"raised:c::", "expired:c::nobody resolved it in time"}
	got := rec.kinds()
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %q, want %q", got, want)
		}
	}
	for _, ev := range rec.events {
		if ev.At.IsZero() || ev.Request.Created.IsZero() || ev.Request.Statement != "DROP TABLE t" {
			t.Fatalf("event %+v", ev)
		}
	}
}

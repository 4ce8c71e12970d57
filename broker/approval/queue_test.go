package approval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWaitResolveAndExpire(t *testing.T) {
	q := NewQueue()
	got := make(chan string, 1)
	go func() {
		st, err := q.Wait(context.Background(), Request{ID: "a", Statement: "CREATE TABLE t (x int)"})
		if err != nil {
			got <- err.Error()
			return
		}
		got <- st.State + " by " + st.Approver
	}()
	for len(q.Pending()) == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := q.Resolve("nope", true, "x"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("resolving an unknown request: %v", err)
	}
	srv := httptest.NewServer(q.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/approvals/a/approve", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("approval without an approver's name: %v %v", resp, err)
	}
	req.Header.Set("X-Approver", "dba@example.com")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %v %v", resp, err)
	}
	if s := <-got; s != "approved by dba@example.com" {
		t.Fatalf("outcome %q", s)
	}
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("approving twice: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	st, err := q.Wait(ctx, Request{ID: "b"})
	if err == nil || st.State != "expired" || len(q.Pending()) != 0 {
		t.Fatalf("timed out request: %+v %v, %d pending", st, err, len(q.Pending()))
	}
	go func() { _, _ = q.Wait(context.Background(), Request{ID: "c"}) }()
	for len(q.Pending()) == 0 {
		time.Sleep(time.Millisecond)
	}
	resp, err := http.Get(srv.URL + "/approvals")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	if !strings.Contains(b.String(), `"id":"c"`) {
		t.Fatalf("pending list %q", b.String())
	}
	_ = q.Resolve("c", false, "dba")
}

// TestWithdrawnRequestCannotBeResolved: a request whose waiter withdraws it (its client cancelled the
// statement, or went away) leaves the pending list at once; approving or denying it then fails with
// ErrWithdrawn and the waiter's reason, which the admin API answers with 410 Gone. A request that
// timed out says so (ErrExpired). A request that never existed is still ErrUnknown (404).
func TestWithdrawnRequestCannotBeResolved(t *testing.T) {
	q := NewQueue()
	srv := httptest.NewServer(q.Handler())
	defer srv.Close()
	post := func(id, verb string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/approvals/"+id+"/"+verb, nil)
		req.Header.Set("X-Approver", "dba@example.com")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	why := errors.New("the client sent a cancel request")
	for _, verb := range []string{"approve", "deny"} {
		t.Run(verb, func(t *testing.T) {
			id := "w-" + verb
			ctx, withdraw := context.WithCancelCause(context.Background())
			type outcome struct {
				state string
				err   error
			}
			got := make(chan outcome, 1)
			go func() {
				st, err := q.Wait(ctx, Request{ID: id, Statement: "DROP TABLE orders"})
				got <- outcome{st.State, err}
			}()
			waitListed(t, q, id, true)
			withdraw(why)
			o := <-got
			if o.state != "withdrawn" || !errors.Is(o.err, why) {
				t.Fatalf("the waiter got %q, %v; want withdrawn with its own reason", o.state, o.err)
			}
			waitListed(t, q, id, false)
			err := q.Resolve(id, verb == "approve", "dba@example.com")
			var ended *EndedError
			if !errors.Is(err, ErrWithdrawn) || errors.Is(err, ErrExpired) || !errors.As(err, &ended) || ended.Reason != why.Error() {
				t.Fatalf("resolving a withdrawn request: %v", err)
			}
			if !strings.Contains(err.Error(), "withdrawn") || !strings.Contains(err.Error(), why.Error()) || !strings.Contains(err.Error(), id) {
				t.Fatalf("the error does not say which request was withdrawn and why: %q", err)
			}
			if code, body := post(id, verb); code != http.StatusGone || !strings.Contains(body, why.Error()) {
				t.Fatalf("admin API: %d %q; want 410 saying why", code, body)
			}
		})
	}
	t.Run("session ended", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if st, _ := q.Wait(ctx, Request{ID: "gone"}); st.State != "withdrawn" {
			t.Fatalf("state %q", st.State)
		}
		if err := q.Resolve("gone", true, "dba"); !errors.Is(err, ErrWithdrawn) || !strings.Contains(err.Error(), "session ended") {
			t.Fatalf("resolving a request whose session ended: %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if st, err := q.Wait(ctx, Request{ID: "late"}); st.State != "expired" || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("timed out request: %q %v", st.State, err)
		}
		if err := q.Resolve("late", true, "dba"); !errors.Is(err, ErrExpired) || errors.Is(err, ErrWithdrawn) {
			t.Fatalf("resolving an expired request: %v", err)
		}
		if code, body := post("late", "approve"); code != http.StatusGone || !strings.Contains(body, "expired") {
			t.Fatalf("admin API: %d %q", code, body)
		}
	})
	if code, _ := post("never", "approve"); code != http.StatusNotFound {
		t.Fatalf("unknown request: %d, want 404", code)
	}
}

// TestEndedRequestsAreForgottenOldestFirst: Resolve recognizes at most maxEnded requests that ended
// unresolved; older ones become unknown.
func TestEndedRequestsAreForgottenOldestFirst(t *testing.T) {
	q := NewQueue()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range maxEnded + 1 {
		_, _ = q.Wait(ctx, Request{ID: fmt.Sprint(i)})
	}
	if err := q.Resolve("0", true, "dba"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("the oldest ended request: %v, want ErrUnknown", err)
	}
	if err := q.Resolve(fmt.Sprint(maxEnded), true, "dba"); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("the newest ended request: %v, want ErrWithdrawn", err)
	}
}

// waitListed waits until the pending list does (or does not) list id.
func waitListed(t *testing.T, q *Queue, id string, listed bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		found := false
		for _, r := range q.Pending() {
			found = found || r.ID == id
		}
		if found == listed {
			return
		}
	}
	t.Fatalf("request %s listed = %v, want %v", id, !listed, listed)
}

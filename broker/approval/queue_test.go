package approval

import (
	"context"
	"errors"
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

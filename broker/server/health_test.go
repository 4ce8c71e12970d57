package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestOptionalCheckSaysWhatItsFailureMeans: an optional check's failure is listed with its own
// consequence and does not fail /readyz; a required one does.
func TestOptionalCheckSaysWhatItsFailureMeans(t *testing.T) {
	behind := errors.New("the checkpoint of record 9 has waited 5s for the witness")
	var auditErr error
	checks := []Check{
		{Name: "audit", Check: func(context.Context) error { return auditErr }},
		{Name: "audit-witness", Optional: true, Consequence: "checkpoints wait for the witness; beyond max_lag, audit fails",
			Check: func(context.Context) error { return behind }},
	}
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		readyz(checks, time.Second)(rec, httptest.NewRequest(http.MethodGet, "/readyz?verbose", nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	want := "[+]audit ok\n[-]audit-witness failed: the checkpoint of record 9 has waited 5s for the witness (optional: checkpoints wait for the witness; beyond max_lag, audit fails)\nreadyz check passed\n"
	if code, body := get(); code != http.StatusOK || body != want {
		t.Fatalf("witness behind: %d %q; want 200 %q", code, body, want)
	}
	auditErr = errors.New("the audit log is unavailable")
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("audit failing: %d; want 503", code)
	}
}

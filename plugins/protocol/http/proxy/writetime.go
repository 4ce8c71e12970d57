package proxy

import (
	"net/http"
	"time"
)

// writeDeadline bounds each write of a response to the agent, and its head, by Limits.Write from
// the moment it is made: net/http sets no write deadline, so a client that stops reading would hold
// its request, its upstream connection, its session and a connection slot for as long as it likes. A
// slow stream that keeps being read is not cut: each write has the whole limit.
type writeDeadline struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
	// status is the response's status, once its head is written (the request's span reports it).
	status int
}

func newWriteDeadline(w http.ResponseWriter, d time.Duration) *writeDeadline {
	return &writeDeadline{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
}

func (w *writeDeadline) extend() error { return w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *writeDeadline) WriteHeader(status int) {
	if w.status < 200 { // a 1xx is followed by the final status
		w.status = status
	}
	_ = w.extend() // a failure shows in the write that follows, or in net/http's own flush
	w.ResponseWriter.WriteHeader(status)
}

func (w *writeDeadline) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if err := w.extend(); err != nil {
		return 0, err
	}
	return w.ResponseWriter.Write(p)
}

// FlushError flushes within the limit too; http.ResponseController finds it.
func (w *writeDeadline) FlushError() error {
	if err := w.extend(); err != nil {
		return err
	}
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection's other controls.
func (w *writeDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

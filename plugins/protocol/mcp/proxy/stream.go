package proxy

import (
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/svidbroker/svidbroker/plugins/protocol/http/sse"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// readServerMessages reads an upstream body of content type ct, application/json (one message or a
// batch) or text/event-stream, each message at most max bytes and checked strictly (wire's
// ServerMessages), calling fn per message with the id of its event. fn's error ends the reading and
// is returned.
func readServerMessages(ctx context.Context, ct string, r io.Reader, max int, fn func(m message, eventID string) error) error {
	return wire.ServerMessages(ctx, ct, r, io.Discard, nil, wire.Limits{MaxMessageBytes: max},
		func(m wire.Message, eventID string) ([]byte, error) { return nil, fn(fromWire(m), eventID) })
}

// clientOut is what a client gets back for one POST or GET: one JSON body, or an event stream
// (the upstream's, or the engine's own while a call is held with progress).
type clientOut struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	stream  bool
	started bool
	buf     []byte
	n       int64
}

func newClientOut(w http.ResponseWriter) *clientOut {
	return &clientOut{w: w, rc: http.NewResponseController(w)}
}

// startStream sends the head of an event stream, once; h sets headers first.
func (o *clientOut) startStream(h func(http.Header)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.startLocked(h)
	_ = o.rc.Flush()
}

// startRelay starts an event stream that relays the upstream's: its head goes with the first event
// (or when the answer ends), in one write.
func (o *clientOut) startRelay(h func(http.Header)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.startLocked(h)
}

func (o *clientOut) startLocked(h func(http.Header)) {
	if o.started {
		return
	}
	o.started, o.stream = true, true
	hd := o.w.Header()
	if h != nil {
		h(hd)
	}
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Del("Content-Length")
	o.w.WriteHeader(http.StatusOK)
}

// event sends one message as an event of the stream.
func (o *clientOut) event(data []byte, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.startLocked(nil)
	ev := sse.Event{Type: "message", HasType: true, Data: string(data), HasData: true}
	if id != "" {
		ev.ID, ev.HasID = id, true
	}
	var err error
	o.buf, err = sse.AppendEvent(o.buf[:0], ev)
	if err != nil {
		return err
	}
	k, err := o.w.Write(o.buf)
	o.n += int64(k)
	if err != nil {
		return err
	}
	return o.rc.Flush()
}

// json sends messages as one JSON body (a batch when batch), or as events when the stream started.
func (o *clientOut) json(h func(http.Header), msgs [][]byte, batch bool) error {
	o.mu.Lock()
	if o.stream {
		o.mu.Unlock()
		for _, m := range msgs {
			if err := o.event(m, ""); err != nil {
				return err
			}
		}
		return nil
	}
	defer o.mu.Unlock()
	o.started = true
	hd := o.w.Header()
	if h != nil {
		h(hd)
	}
	if len(msgs) == 0 {
		o.w.WriteHeader(http.StatusAccepted)
		return nil
	}
	var body []byte
	if batch {
		body = append(body, '[')
		for i, m := range msgs {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, m...)
		}
		body = append(body, ']')
	} else {
		body = msgs[0]
	}
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Del("Content-Length")
	o.w.WriteHeader(http.StatusOK)
	k, err := o.w.Write(body)
	o.n += int64(k)
	return err
}

// status answers with a bodiless status, unless something was sent already.
func (o *clientOut) status(h func(http.Header), code int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started {
		return
	}
	o.started = true
	if h != nil {
		h(o.w.Header())
	}
	o.w.WriteHeader(code)
}

func (o *clientOut) isStarted() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.started
}

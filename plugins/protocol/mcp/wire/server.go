package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"

	"github.com/svidbroker/svidbroker/plugins/protocol/http/sse"
)

// ErrServerMessage wraps every failure of ServerMessages to read what the server sent: the engine
// ends the client's stream on it (fail closed) rather than pass anything unread.
var ErrServerMessage = errors.New("mcp wire: server message refused")

// sseOverhead is what an event may add to its data in field names and line breaks.
const sseOverhead = 4 << 10

// ServerMessages relays a server's response body (to a POST, or the GET stream) message by message.
// contentType is the response's Content-Type: application/json holds one message or a batch;
// text/event-stream holds one message per event. Each message is checked as strictly as a client's
// (parseMessage) and must fit MaxMessageBytes; fn gets it with its SSE event id ("" for JSON) and
// returns the bytes to send in its place (its own input to pass it on unchanged, nil to drop it).
// The output is framed like the input: a JSON body is written once, at the end (a batch as an array
// of the kept messages, nothing when none is kept); each SSE event is written, then flushed, as it is
// read. Events without data (priming events, retry, keep-alive comments) pass through; an event
// whose type is not "message" has its data dropped, since clients do not treat it as a message; a
// dropped message's event keeps its id, so that resumption stays in step. Anything unreadable ends
// the relay with an error wrapping ErrServerMessage (or the reader's error, or ctx's). ctx is checked
// between messages; a read that blocks ends when the upstream request is cancelled, closing r.
func ServerMessages(ctx context.Context, contentType string, r io.Reader, w io.Writer, flush func(), l Limits,
	fn func(m Message, eventID string) ([]byte, error)) error {
	l = l.WithDefaults()
	if flush == nil {
		flush = func() {}
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("%w: unreadable Content-Type", ErrServerMessage)
	}
	switch mt {
	case "application/json":
		return jsonMessages(ctx, r, w, flush, l, fn)
	case "text/event-stream":
		return sseMessages(ctx, r, w, flush, l, fn)
	}
	return fmt.Errorf("%w: Content-Type %s is neither application/json nor text/event-stream", ErrServerMessage, clip(mt))
}

func serverMessage(raw []byte, l Limits) (Message, error) {
	m, e := parseMessage(raw, l)
	if e != nil {
		return Message{}, fmt.Errorf("%w: %s", ErrServerMessage, e.Message)
	}
	return m, nil
}

// replacement checks fn's output: one compact JSON value (so that it fits one SSE data line).
func replacement(out []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, out); err != nil {
		return nil, fmt.Errorf("mcp wire: a replacement message is not JSON: %w", err)
	}
	return b.Bytes(), nil
}

func jsonMessages(ctx context.Context, r io.Reader, w io.Writer, flush func(), l Limits,
	fn func(Message, string) ([]byte, error)) error {
	body, err := io.ReadAll(io.LimitReader(r, int64(l.MaxBodyBytes)+1))
	if err != nil {
		return fmt.Errorf("mcp wire: reading the server's response: %w", err)
	}
	if len(body) > l.MaxBodyBytes {
		return fmt.Errorf("%w: the response body is larger than %d bytes", ErrServerMessage, l.MaxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	raws, batch, err := splitBody(body)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrServerMessage, err)
	}
	if len(raws) > l.MaxBatch {
		return fmt.Errorf("%w: a batch of %d messages, more than %d", ErrServerMessage, len(raws), l.MaxBatch)
	}
	var kept [][]byte
	for _, raw := range raws {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := serverMessage(raw, l)
		if err != nil {
			return err
		}
		out, err := fn(m, "")
		if err != nil {
			return err
		}
		if out == nil {
			continue
		}
		if out, err = replacement(out); err != nil {
			return err
		}
		kept = append(kept, out)
	}
	var buf []byte
	switch {
	case len(kept) == 0:
		return nil
	case batch:
		buf = append(append(buf, '['), bytes.Join(kept, []byte{','})...)
		buf = append(buf, ']')
	default:
		buf = kept[0]
	}
	if _, err := w.Write(buf); err != nil {
		return err
	}
	flush()
	return nil
}

func sseMessages(ctx context.Context, r io.Reader, w io.Writer, flush func(), l Limits,
	fn func(Message, string) ([]byte, error)) error {
	rd := sse.NewReader(r, l.MaxMessageBytes+sseOverhead)
	var out []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, sse.ErrTooLarge) {
			return fmt.Errorf("%w: an event is larger than %d bytes", ErrServerMessage, l.MaxMessageBytes)
		}
		if err != nil {
			return err
		}
		if e.HasData && e.HasType && e.Type != "message" && e.Type != "" {
			e.Data, e.HasData = "", false
		}
		if e.HasData && e.Data != "" {
			m, err := serverMessage([]byte(e.Data), l)
			if err != nil {
				return err
			}
			repl, err := fn(m, e.ID)
			if err != nil {
				return err
			}
			if repl == nil {
				e.Data, e.HasData, e.Type, e.HasType = "", false, "", false
				if !e.HasID && !e.HasRetry {
					continue
				}
			} else {
				if repl, err = replacement(repl); err != nil {
					return err
				}
				e.Data = string(repl)
			}
		}
		if out, err = sse.AppendEvent(out[:0], e); err != nil {
			return fmt.Errorf("%w: %v", ErrServerMessage, err)
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		flush()
	}
}

package sse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Event is one block of fields up to a blank line.
type Event struct {
	// Type is the event field ("" with HasType is the default type, "message").
	Type    string
	HasType bool
	// Data is the data lines joined by "\n".
	Data    string
	HasData bool
	// ID is the id field, which sets the client's last event ID ("" resets it).
	ID    string
	HasID bool
	// Retry is the retry field: ASCII digits, the reconnection time in milliseconds.
	Retry    string
	HasRetry bool
	// Comment reports that the block had comment lines.
	Comment bool
}

// DefaultMaxEvent is Config.MaxEvent's default.
const DefaultMaxEvent = 1 << 20

// ErrTooLarge is returned for an event larger than MaxEvent.
var ErrTooLarge = errors.New("sse: event too large")

// Reader reads events from a stream. It is not safe for concurrent use.
type Reader struct {
	br       *bufio.Reader
	max      int
	started  bool
	afterCR  bool // the last line ended in CR: an LF next is part of that ending
	line     []byte
	data     strings.Builder
	consumed int
}

// NewReader returns a reader of r whose events may each take at most maxEvent bytes (0 for
// DefaultMaxEvent).
func NewReader(r io.Reader, maxEvent int) *Reader {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	return &Reader{br: bufio.NewReader(r), max: maxEvent}
}

// Next returns the next event. It returns io.EOF at the end of the stream (dropping an unfinished
// block), ErrTooLarge for an oversized event, or the underlying reader's error.
func (r *Reader) Next() (Event, error) {
	var e Event
	r.consumed = 0
	r.data.Reset()
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if e.HasData {
				e.Data = strings.TrimSuffix(r.data.String(), "\n")
			}
			if e.HasType || e.HasData || e.HasID || e.HasRetry || e.Comment {
				return e, nil
			}
			r.consumed = 0
			continue
		}
		if line[0] == ':' {
			e.Comment = true
			continue
		}
		name, value := string(line), ""
		if i := strings.IndexByte(name, ':'); i >= 0 {
			name, value = name[:i], strings.TrimPrefix(name[i+1:], " ")
		}
		switch name {
		case "event":
			e.Type, e.HasType = value, true
		case "data":
			r.data.WriteString(value)
			r.data.WriteByte('\n')
			e.HasData = true
		case "id":
			if strings.IndexByte(value, 0) < 0 {
				e.ID, e.HasID = value, true
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				e.Retry, e.HasRetry = value, true
			}
		}
	}
}

// readLine reads a line without its ending, counting it against the event's limit.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		c, err := r.br.ReadByte()
		if err == io.EOF {
			return nil, io.EOF // an unfinished line or block is dropped
		}
		if err != nil {
			return nil, fmt.Errorf("sse: reading the stream: %w", err)
		}
		if r.afterCR {
			r.afterCR = false
			if c == '\n' {
				continue
			}
		}
		r.consumed++
		if r.consumed > r.max {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, r.max)
		}
		switch c {
		case '\r':
			r.afterCR = true
			fallthrough
		case '\n':
			if !r.started {
				r.started = true
				r.line = trimBOM(r.line)
			}
			return r.line, nil
		}
		r.line = append(r.line, c)
		if !r.started && len(r.line) == 3 {
			r.started = true
			r.line = trimBOM(r.line)
		}
	}
}

func trimBOM(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf {
		return b[:copy(b, b[3:])]
	}
	return b
}

// AppendEvent appends e in wire form to dst, ending with the blank line that dispatches it. It
// refuses fields that cannot be written as one line each: CR or LF in Type, ID or Retry, CR in Data
// (LF separates its lines), NUL in ID, and a Retry that is not ASCII digits.
func AppendEvent(dst []byte, e Event) ([]byte, error) {
	if strings.ContainsAny(e.Type, "\r\n") || strings.ContainsAny(e.ID, "\r\n\x00") || strings.ContainsRune(e.Data, '\r') {
		return dst, errors.New("sse: an event field holds a line break (or an id holds NUL)")
	}
	if e.HasRetry && (e.Retry == "" || strings.Trim(e.Retry, "0123456789") != "") {
		return dst, errors.New("sse: retry must be ASCII digits")
	}
	if e.Comment {
		dst = append(dst, ":\n"...)
	}
	if e.HasID {
		dst = append(append(append(dst, "id: "...), e.ID...), '\n')
	}
	if e.HasType {
		dst = append(append(append(dst, "event: "...), e.Type...), '\n')
	}
	if e.HasRetry {
		dst = append(append(append(dst, "retry: "...), e.Retry...), '\n')
	}
	if e.HasData {
		for line := range strings.SplitSeq(e.Data, "\n") {
			dst = append(append(append(dst, "data: "...), line...), '\n')
		}
	}
	return append(dst, '\n'), nil
}

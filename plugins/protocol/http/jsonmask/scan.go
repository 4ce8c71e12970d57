package jsonmask

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/svidbroker/svidbroker/broker/inspect"
)

// chunk is how much of the body the scanner reads at a time.
const chunk = 32 << 10

// scanner is one Copy: a strict JSON tokenizer over a sliding window of the body. Bytes that pass
// through unchanged are written from the window in spans (emit..pos), so unmasked content is copied,
// not re-encoded; masked values are held whole (bounded by MaxToken), replaced and skipped.
type scanner struct {
	f   *Filter
	src io.Reader
	dst io.Writer // nil in Append: out is the result
	out []byte    // output not yet written to dst, at most chunk bytes unless one masked value is longer
	sc  *inspect.Scratch

	buf  []byte
	pos  int   // next byte to scan
	end  int   // end of the bytes read
	emit int   // first byte not yet written (or dropped)
	hold int   // start of a token that must stay in buf, or -1
	base int64 // offset in the body of buf[0]
	eof  bool
	drop bool // inside a masked object or array: scanned, never written
	esc  bool // the last string scanned had an escape
	werr error

	sets   [][]state // the children's states, per depth
	stack  []byte    // skip's open brackets
	key    []byte    // the decoded key being compared
	val    []byte    // the decoded string being masked
	masked int
}

func newScanner(f *Filter, dst io.Writer, src io.Reader) *scanner {
	return &scanner{f: f, src: src, dst: dst, out: make([]byte, 0, chunk), sc: f.masker.NewScratch(),
		buf: make([]byte, chunk), hold: -1}
}

func (s *scanner) errorf(format string, a ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrInvalid, s.base+int64(s.pos), fmt.Sprintf(format, a...))
}

func (s *scanner) run() error {
	c, err := s.skipWS()
	if err != nil {
		return err
	}
	if c < 0 {
		return s.errorf("the body is empty")
	}
	if err := s.value(0, s.f.root, ""); err != nil {
		return err
	}
	if c, err = s.skipWS(); err != nil {
		return err
	}
	if c >= 0 {
		return s.errorf("data after the JSON value")
	}
	s.flushTo(s.pos)
	s.drain()
	return s.werr
}

// drain writes the output held in out to dst.
func (s *scanner) drain() {
	if s.dst == nil {
		return // Append: out is the result
	}
	if len(s.out) > 0 && s.werr == nil {
		if _, err := s.dst.Write(s.out); err != nil {
			s.werr = fmt.Errorf("jsonmask: writing the body: %w", err)
		}
	}
	s.out = s.out[:0]
}

// flushTo writes (or, inside a masked value, drops) the pending bytes up to i.
func (s *scanner) flushTo(i int) {
	if i <= s.emit {
		return
	}
	if !s.drop && s.werr == nil {
		p := s.buf[s.emit:i]
		if len(s.out)+len(p) > chunk {
			s.drain()
			if len(p) >= chunk && s.werr == nil && s.dst != nil { // a long unmasked span goes as it is
				if _, err := s.dst.Write(p); err != nil {
					s.werr = fmt.Errorf("jsonmask: writing the body: %w", err)
				}
				p = nil
			}
		}
		s.out = append(s.out, p...)
	}
	s.emit = i
}

// fill reads more of the body, keeping buf[hold:] (or buf[pos:]). It reports false at the end.
func (s *scanner) fill() (bool, error) {
	if s.werr != nil {
		return false, s.werr
	}
	keep := s.pos
	if s.hold >= 0 {
		keep = s.hold
	}
	s.flushTo(keep)
	if s.eof {
		return false, nil
	}
	if keep > 0 {
		copy(s.buf, s.buf[keep:s.end])
		s.pos -= keep
		s.end -= keep
		s.emit -= keep
		if s.hold >= 0 {
			s.hold -= keep
		}
		s.base += int64(keep)
	}
	if s.hold >= 0 && s.end-s.hold > s.f.maxToken {
		return false, fmt.Errorf("%w at byte %d: a key, number or masked string longer than %d bytes", ErrLimit, s.base+int64(s.hold), s.f.maxToken)
	}
	if s.end == len(s.buf) {
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for {
		n, err := s.src.Read(s.buf[s.end:])
		s.end += n
		if err == io.EOF {
			s.eof = true
			return n > 0, nil
		}
		if err != nil {
			return false, fmt.Errorf("jsonmask: reading the body: %w", err)
		}
		if n > 0 {
			return true, nil
		}
	}
}

// peek returns the byte at pos if it is in the window and not whitespace, else -1: skipWS's common
// case, small enough to inline.
func (s *scanner) peek() int {
	if p := s.pos; p < s.end && s.buf[p] > ' ' {
		return int(s.buf[p])
	}
	return -1
}

// quoted returns the index of the closing quote of the string at pos when the string is whole in
// the window and has no escapes (and so no control characters), else -1.
func (s *scanner) quoted() int {
	b := s.buf[:s.end]
	for i := s.pos + 1; i+8 <= len(b); i += 8 {
		if m := specials(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			if j := i + bits.TrailingZeros64(m)/8; b[j] == '"' {
				return j
			}
			return -1
		}
	}
	return -1 // within eight bytes of the window's end: str takes it
}

// skipWS skips whitespace and returns the next byte, or -1 at the end of the body.
func (s *scanner) skipWS() (int, error) {
	if p := s.pos; p < s.end && s.buf[p] > ' ' {
		return int(s.buf[p]), nil
	}
	return s.skipWSSlow()
}

func (s *scanner) skipWSSlow() (int, error) {
	for {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return int(c), nil
			}
		}
		more, err := s.fill()
		if err != nil {
			return 0, err
		}
		if !more {
			return -1, nil
		}
	}
}

// ensure makes n bytes from pos available, keeping the held token; false if the body ends first.
func (s *scanner) ensure(n int) (bool, error) {
	for s.end-s.pos < n {
		more, err := s.fill()
		if err != nil || !more {
			return false, err
		}
	}
	return true, nil
}

// value scans the value at pos (not whitespace). set holds the states for its children; mask is the
// strategy that masks the value itself, or "".
func (s *scanner) value(depth int, set []state, mask inspect.Strategy) error {
	switch c := s.buf[s.pos]; {
	case c == '{' || c == '[':
		if depth >= s.f.maxDepth {
			return fmt.Errorf("%w at byte %d: nesting deeper than %d", ErrLimit, s.base+int64(s.pos), s.f.maxDepth)
		}
		if mask != "" && !s.drop {
			s.flushTo(s.pos)
			if mask == inspect.Null {
				s.writeString("null")
			} else {
				s.writeString(`"***"`)
			}
			s.masked++
			s.drop = true
			var err error
			switch {
			case !s.f.noSkip:
				err = s.skip(depth)
			case c == '{':
				err = s.object(depth+1, nil)
			default:
				err = s.array(depth+1, nil)
			}
			s.flushTo(s.pos)
			s.drop = false
			return err
		}
		if len(set) == 0 && !s.f.noSkip {
			return s.skip(depth) // no rule reaches below
		}
		if c == '{' {
			return s.object(depth+1, set)
		}
		return s.array(depth+1, set)
	case c == '"':
		j := s.quoted()
		if mask == "" || s.drop {
			if j >= 0 {
				s.pos = j + 1
				return nil
			}
			return s.str(false)
		}
		if j >= 0 && j+1-s.pos <= s.f.maxToken {
			start := s.pos
			s.pos = j + 1
			return s.replace(start, mask, s.buf[start+1:j])
		}
		s.hold = s.pos
		if err := s.str(true); err != nil {
			return err
		}
		start := s.hold // fill may have moved the window, and the held token with it
		s.hold = -1
		v := s.buf[start+1 : s.pos-1]
		if s.esc {
			s.val = decodeString(s.val[:0], s.buf[start:s.pos])
			v = s.val
		}
		return s.replace(start, mask, v)
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.pos
		if !s.numberInWindow() {
			s.hold = s.pos
			if err := s.number(); err != nil {
				return err
			}
			start = s.hold
			s.hold = -1
		}
		if mask == "" || s.drop {
			return nil
		}
		// A number is masked by its text, as a column's value is; the result is a string (or null).
		return s.replace(start, mask, s.buf[start:s.pos])
	default:
		lit, start, err := s.literal(c)
		if err != nil {
			return err
		}
		if mask == "" || s.drop || lit == "null" {
			return nil // null stays null: there is nothing to hide
		}
		// A boolean has two values: partial or hash would tell them apart.
		if mask == inspect.Null {
			return s.replace(start, inspect.Null, nil)
		}
		return s.replace(start, inspect.Redact, nil)
	}
}

// literal scans the literal at pos, whose first byte is c, returning it and where it starts.
func (s *scanner) literal(c byte) (lit string, start int, err error) {
	switch c {
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	case 'n':
		lit = "null"
	default:
		// The byte is not quoted: it may be the first of a masked value.
		return "", 0, s.errorf("unexpected character, want a value")
	}
	if s.pos+len(lit) <= s.end && string(s.buf[s.pos:s.pos+len(lit)]) == lit {
		start = s.pos
		s.pos += len(lit)
		return lit, start, nil
	}
	s.hold = s.pos
	ok, err := s.ensure(len(lit))
	if err != nil {
		return "", 0, err
	}
	start = s.hold
	s.hold = -1
	if !ok || string(s.buf[s.pos:s.pos+len(lit)]) != lit {
		return "", 0, s.errorf("invalid literal, want true, false or null")
	}
	s.pos += len(lit)
	return lit, start, nil
}

// replace writes the masked form of v in place of buf[start:pos].
func (s *scanner) replace(start int, mask inspect.Strategy, v []byte) error {
	s.flushTo(start)
	out, null, err := s.sc.Mask(mask, v)
	if err != nil {
		return fmt.Errorf("jsonmask: masking the value at byte %d: %w", s.base+int64(start), err)
	}
	if null {
		s.writeString("null")
	} else {
		s.writeQuoted(out)
	}
	s.sc.Reset()
	s.emit = s.pos
	s.masked++
	return nil
}

func (s *scanner) writeString(v string) {
	s.room(len(v))
	s.out = append(s.out, v...)
}

// room drains out when n more bytes would not fit.
func (s *scanner) room(n int) {
	if len(s.out)+n > chunk {
		s.drain()
	}
}

const hexDigits = "0123456789abcdef"

// writeQuoted writes v as a JSON string.
func (s *scanner) writeQuoted(v []byte) {
	if s.werr != nil {
		return
	}
	if plainRun(v, 0) == len(v) { // the common case: nothing to escape
		s.room(len(v) + 2)
		s.out = append(append(append(s.out, '"'), v...), '"')
		return
	}
	s.room(6*len(v) + 2)
	q := append(s.out, '"')
	for i := 0; i < len(v); i++ {
		j := plainRun(v, i)
		q = append(q, v[i:j]...)
		if i = j; i == len(v) {
			break
		}
		switch c := v[i]; {
		case c == '"' || c == '\\':
			q = append(q, '\\', c)
		default: // a control character
			q = append(q, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	s.out = append(q, '"')
}

func (s *scanner) object(depth int, set []state) error {
	s.pos++ // '{'
	c, err := s.skipWS()
	if err != nil {
		return err
	}
	if c == '}' {
		s.pos++
		return nil
	}
	for len(s.sets) <= depth {
		s.sets = append(s.sets, nil)
	}
	namesOnly := s.f.namesOnly(set) // then most keys are passed over by mayBeNamed
	for {
		if c != '"' {
			return s.errorf("want an object key or '}'")
		}
		var child []state
		var mask inspect.Strategy
		if j := s.quoted(); j >= 0 && (len(set) == 0 || j+1-s.pos <= s.f.maxToken) {
			// The common case: a key without escapes, whole in the window (and, when it is
			// compared, within MaxToken).
			key := s.buf[s.pos+1 : j]
			s.pos = j + 1
			if len(set) > 0 && (!namesOnly || s.f.mayBeNamed(key)) {
				child, mask = s.f.children(s.sets[depth], set, false, key)
				s.sets[depth] = child
			}
		} else if len(set) == 0 {
			if err := s.str(false); err != nil {
				return err
			}
		} else {
			s.hold = s.pos
			if err := s.str(true); err != nil {
				return err
			}
			key := s.buf[s.hold+1 : s.pos-1] // a key without escapes is its own value
			if s.esc {
				s.key = decodeString(s.key[:0], s.buf[s.hold:s.pos])
				key = s.key
			}
			s.hold = -1
			child, mask = s.f.children(s.sets[depth], set, false, key)
			s.sets[depth] = child
		}
		if c = s.peek(); c != ':' {
			if c, err = s.skipWS(); err != nil {
				return err
			}
			if c != ':' {
				return s.errorf("want ':' after an object key")
			}
		}
		s.pos++
		if c = s.peek(); c < 0 {
			if c, err = s.skipWS(); err != nil {
				return err
			}
		}
		if c < 0 {
			return s.errorf("the body ends inside an object")
		}
		// An unmasked string or number whole in the window, the common member, is passed over here;
		// anything else is value's.
		switch {
		case mask != "":
		case c == '"':
			if j := s.quoted(); j >= 0 {
				s.pos = j + 1
				goto next
			}
		case c == '-' || c >= '0' && c <= '9':
			if s.numberInWindow() {
				goto next
			}
		}
		if err := s.value(depth, child, mask); err != nil {
			return err
		}
	next:
		if c = s.peek(); c < 0 {
			if c, err = s.skipWS(); err != nil {
				return err
			}
		}
		switch c {
		case ',':
			s.pos++
			if c = s.peek(); c < 0 {
				if c, err = s.skipWS(); err != nil {
					return err
				}
			}
		case '}':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or '}' after an object member")
		}
	}
}

func (s *scanner) array(depth int, set []state) error {
	s.pos++ // '['
	c, err := s.skipWS()
	if err != nil {
		return err
	}
	if c == ']' {
		s.pos++
		return nil
	}
	for len(s.sets) <= depth {
		s.sets = append(s.sets, nil)
	}
	var child []state
	var mask inspect.Strategy
	if len(set) > 0 {
		child, mask = s.f.children(s.sets[depth], set, true, nil)
		s.sets[depth] = child
	}
	for {
		if c < 0 {
			return s.errorf("the body ends inside an array")
		}
		if err := s.value(depth, child, mask); err != nil {
			return err
		}
		if c = s.peek(); c < 0 {
			if c, err = s.skipWS(); err != nil {
				return err
			}
		}
		switch c {
		case ',':
			s.pos++
			if c = s.peek(); c < 0 {
				if c, err = s.skipWS(); err != nil {
					return err
				}
			}
		case ']':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or ']' after an array element")
		}
	}
}

// str scans the string at pos. With held, the whole string stays in the window from s.hold (which
// the caller sets); otherwise it streams through.
func (s *scanner) str(held bool) error {
	s.pos++ // '"'
	s.esc = false
	for {
		i := plainRun(s.buf[:s.end], s.pos)
		s.pos = i
		if i == s.end {
			more, err := s.fill()
			if err != nil {
				return err
			}
			if !more {
				return s.errorf("the body ends inside a string")
			}
			continue
		}
		switch c := s.buf[i]; {
		case c == '"':
			s.pos++
			if held {
				return s.heldLimit()
			}
			return nil
		case c < 0x20:
			return s.errorf("control character in a string")
		}
		// An escape: hold it whole while reading it.
		s.esc = true
		if !held {
			s.hold = s.pos
		}
		ok, err := s.ensure(2)
		if err != nil {
			return err
		}
		if !ok {
			return s.errorf("the body ends inside a string")
		}
		switch s.buf[s.pos+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.pos += 2
		case 'u':
			if ok, err = s.ensure(6); err != nil {
				return err
			}
			if !ok {
				return s.errorf("the body ends inside a string")
			}
			for _, h := range s.buf[s.pos+2 : s.pos+6] {
				if hexVal(h) < 0 {
					return s.errorf("invalid \\u escape in a string")
				}
			}
			s.pos += 6
		default:
			return s.errorf("invalid escape in a string")
		}
		if !held {
			s.hold = -1
		}
	}
}

// plainRun returns the index of the first byte at or after i in b that ends a run of plain string
// content: '"', '\\' or a control character, or len(b) if there is none. It tests eight bytes at a
// time.
func plainRun(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := specials(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if special[b[i]] {
			return i
		}
	}
	return i
}

// specials returns the high bit of every byte of w (little-endian) that is '"', '\\' or below 0x20.
// Flipping bit 1 maps '"' (0x22) to 0x20 and the bytes below 0x20 among themselves, and no other
// byte below 0x21, so one less-than test on w^0x02… finds both, and the usual zero-byte test on
// w^'\\' finds the backslashes. A borrow can set a false bit only above a special byte, so the
// lowest bit set is the first special byte.
func specials(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, bs := w^(ones*0x02), w^(ones*'\\')
	return ((q-ones*0x21)&^q | (bs-ones)&^bs) & highs
}

// special marks the bytes that end plain string content.
var special = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// number scans a number at pos, strictly: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	i := s.pos
	for {
		for i < s.end {
			c := s.buf[i]
			if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
				break
			}
			i++
		}
		if i < s.end {
			break
		}
		off := i - s.pos
		more, err := s.fill()
		if err != nil {
			return err
		}
		i = s.pos + off
		if !more {
			break
		}
	}
	if !validNumber(s.buf[s.pos:i]) {
		return s.errorf("invalid number")
	}
	s.pos = i
	return s.heldLimit()
}

// numberInWindow scans a valid number at pos that ends inside the window within MaxToken, as number
// would, and reports whether it did; if not, pos is unchanged and number must scan it.
func (s *scanner) numberInWindow() bool {
	if j := numberEnd(s.buf[:s.end], s.pos); j >= 0 && j-s.pos <= s.f.maxToken {
		s.pos = j
		return true
	}
	return false
}

// numberEnd returns the end of the number at b[i:] when its text, every byte number takes into one
// from i on, is a valid number and a byte follows it in b; else -1. It is numByte's run and
// validNumber in one pass: the grammar is deterministic, so its longest match is the run exactly when
// the byte after the match is not a number byte.
func numberEnd(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i++
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
		if i == d {
			return -1
		}
	}
	if i < len(b) && b[i]|0x20 == 'e' {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
		if i == d {
			return -1
		}
	}
	if i >= len(b) || numByte[b[i]] {
		return -1
	}
	return i
}

// numByte marks the bytes number takes into a number's text.
var numByte = func() (t [256]bool) {
	for _, c := range []byte("0123456789+-.eE") {
		t[c] = true
	}
	return t
}()

// heldLimit refuses a held token longer than MaxToken, even one that fit in the window.
func (s *scanner) heldLimit() error {
	if s.pos-s.hold > s.f.maxToken {
		return s.heldError()
	}
	return nil
}

func (s *scanner) heldError() error {
	return fmt.Errorf("%w at byte %d: a key, number or masked string longer than %d bytes", ErrLimit, s.base+int64(s.hold), s.f.maxToken)
}

func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	return i == len(b)
}

// decodeString appends the value of the JSON string raw (quotes included, already validated) to dst.
// Lone surrogates become U+FFFD, as encoding/json decodes them.
func decodeString(dst, raw []byte) []byte {
	raw = raw[1 : len(raw)-1]
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(raw[i+2:]))
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, rune(hex4(raw[i+2:]))); r2 != utf8.RuneError {
						dst = utf8.AppendRune(dst, r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) int {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}

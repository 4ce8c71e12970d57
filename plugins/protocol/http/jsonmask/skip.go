package jsonmask

import "fmt"

// skip scans the object or array at pos, below which no rule reaches, as object and array would with
// no states: every byte is validated exactly as they validate it, with the same errors at the same
// offsets, and copied through (or, in a masked value, dropped) as the window moves on. It walks the
// nesting with a stack of open brackets instead of recursion, and compares no keys. depth is the
// depth value was called with.
func (s *scanner) skip(depth int) error {
	stack := s.stack[:0]
	c := int(s.buf[s.pos])
	var err error
open: // c, at pos, is '{' or '['
	if depth+len(stack) >= s.f.maxDepth {
		return fmt.Errorf("%w at byte %d: nesting deeper than %d", ErrLimit, s.base+int64(s.pos), s.f.maxDepth)
	}
	stack = append(stack, byte(c))
	s.stack = stack // kept for the next skip
	s.pos++
	if c = s.peek(); c < 0 {
		if c, err = s.skipWS(); err != nil {
			return err
		}
	}
	if stack[len(stack)-1] == '[' {
		if c == ']' {
			s.pos++
			goto closed
		}
		if c < 0 {
			return s.errorf("the body ends inside an array")
		}
		goto value
	}
	if c == '}' {
		s.pos++
		goto closed
	}
key: // c, at pos, should open an object key
	if c != '"' {
		return s.errorf("want an object key or '}'")
	}
	if j := s.quoted(); j >= 0 {
		s.pos = j + 1
	} else if err = s.str(false); err != nil {
		return err
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
value: // c, at pos, should start a value
	switch {
	case c == '{' || c == '[':
		goto open
	case c == '"':
		if j := s.quoted(); j >= 0 {
			s.pos = j + 1
		} else if err = s.str(false); err != nil {
			return err
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if s.numberInWindow() {
			break
		}
		s.hold = s.pos
		if err = s.number(); err != nil {
			return err
		}
		s.hold = -1
	default:
		if _, _, err = s.literal(byte(c)); err != nil {
			return err
		}
	}
	goto after
closed: // the container on top of the stack has just been closed
	if stack = stack[:len(stack)-1]; len(stack) == 0 {
		return nil
	}
after: // a value in the container on top of the stack has just ended
	if c = s.peek(); c < 0 {
		if c, err = s.skipWS(); err != nil {
			return err
		}
	}
	if stack[len(stack)-1] == '{' {
		switch c {
		case ',':
			s.pos++
			if c = s.peek(); c < 0 {
				if c, err = s.skipWS(); err != nil {
					return err
				}
			}
			goto key
		case '}':
			s.pos++
			goto closed
		}
		return s.errorf("want ',' or '}' after an object member")
	}
	switch c {
	case ',':
		s.pos++
		if c = s.peek(); c < 0 {
			if c, err = s.skipWS(); err != nil {
				return err
			}
		}
		if c < 0 {
			return s.errorf("the body ends inside an array")
		}
		goto value
	case ']':
		s.pos++
		goto closed
	}
	return s.errorf("want ',' or ']' after an array element")
}

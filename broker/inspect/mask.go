package inspect

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Strategy is a masking strategy, as policies name it in @mask.
type Strategy string

// The strategies, weakest first.
const (
	// Partial keeps enough to recognise a value, not to use it: the first character and the domain of
	// an email address (a***@example.com), otherwise the last four letters or digits (***-**-6789).
	Partial Strategy = "partial"
	// Hash replaces the value with a keyed, deterministic pseudonym (an AES-CMAC tag, see cmac.go), so
	// equal values stay equal and joins and GROUP BY still work. Without the key the value cannot be
	// recomputed offline, but it is only as hard to guess as the value itself: whoever can get values of
	// their choosing hashed with the same key (by writing them into a hashed column, or by any path that
	// hashes an expression) can match a hash against every candidate of a small space, such as a 4-digit
	// code. The broker therefore hashes only a plain column reference, never a computed value.
	Hash Strategy = "hash"
	// Redact replaces the value with "***".
	Redact Strategy = "redact"
	// Null replaces the value with SQL NULL.
	Null Strategy = "null"
)

// MinHashKeyBytes is the shortest key the hash strategy accepts.
const MinHashKeyBytes = 32

// ErrNoHashKey is returned when a policy asks for the hash strategy and no key is configured; the
// caller must then withhold the value some other way, never send it in clear.
var ErrNoHashKey = errors.New("inspect: the hash masking strategy needs a key (policy.mask_key_file)")

// Masker masks values. It is safe for concurrent use. A goroutine that masks value after value, such
// as a session's result rows, masks faster with a Scratch of its own.
type Masker struct {
	hash *cmacKey // nil without a hash key
}

// NewMasker returns a masker; key may be nil, which leaves the hash strategy unavailable.
func NewMasker(key []byte) (*Masker, error) {
	if key == nil {
		return &Masker{}, nil
	}
	if len(key) < MinHashKeyBytes {
		return nil, fmt.Errorf("inspect: hash key of %d bytes, need at least %d", len(key), MinHashKeyBytes)
	}
	k, err := newCMACKey(key)
	if err != nil {
		return nil, fmt.Errorf("inspect: hash key: %w", err)
	}
	return &Masker{hash: k}, nil
}

// Mask masks a value in text form. null reports that the value must become SQL NULL. An unknown
// strategy is an error, so that a caller can refuse rather than leak.
func (m *Masker) Mask(s Strategy, v []byte) (out []byte, null bool, err error) {
	sc := m.scratch(make([]byte, 0, len(v)+hashLen)) // room for any strategy's output
	return sc.Mask(s, v)
}

// Scratch, made by Masker.NewScratch, masks values as its Masker does, into a buffer of its own that
// Reset reuses: once the buffer has grown, masking allocates nothing. It is not safe for concurrent use.
type Scratch struct {
	mac *cmac  // nil without a hash key
	buf []byte // the masked values since the last Reset
}

// scratch returns a scratch that masks as m does, into buf.
func (m *Masker) scratch(buf []byte) *Scratch {
	sc := &Scratch{buf: buf}
	if m.hash != nil {
		sc.mac = &cmac{key: m.hash}
	}
	return sc
}

// NewScratch returns a scratch that masks as m does.
func (m *Masker) NewScratch() *Scratch { return m.scratch([]byte{}) }

// maxScratch is the largest buffer a Scratch keeps from one Reset to the next.
const maxScratch = 64 << 10

// Reset lets the scratch reuse its buffer: the values it returned since the last Reset become
// invalid. A buffer that large values grew past maxScratch is let go.
func (sc *Scratch) Reset() {
	sc.buf = sc.buf[:0]
	if cap(sc.buf) > maxScratch {
		sc.buf = []byte{}
	}
}

// Mask is Masker.Mask, but the value it returns is only valid until the next Reset; the caller must
// not modify it.
func (sc *Scratch) Mask(s Strategy, v []byte) (out []byte, null bool, err error) {
	start := len(sc.buf)
	switch s {
	case Null:
		return nil, true, nil
	case Redact:
		sc.buf = append(sc.buf, redacted...)
	case Hash:
		if sc.mac == nil {
			return nil, false, ErrNoHashKey
		}
		sc.buf = hex.AppendEncode(append(sc.buf, "h:"...), sc.mac.sum(v)[:])
	case Partial:
		sc.buf = appendPartial(sc.buf, v)
	default:
		return nil, false, fmt.Errorf("inspect: unknown masking strategy %q", s)
	}
	// Capped, so that appending to one value cannot overwrite the next. buf is never nil, so neither
	// is an empty value: it stays distinct from NULL.
	return sc.buf[start:len(sc.buf):len(sc.buf)], false, nil
}

// redacted is what the redact strategy, and partial masking of what it cannot read, show.
const redacted = "***"

// hashLen is the length of a hashed value: "h:" and the value's AES-CMAC tag (16 bytes) in hex.
const hashLen = 2 + 2*16

// appendPartialText appends v with all letters and digits masked but a few, keeping separators so the
// shape stays readable. Invalid UTF-8 is redacted whole: what cannot be read cannot be partly shown.
// It is the partial strategy for any text, and the reference appendPartial's ASCII path must match.
func appendPartialText(dst, v []byte) []byte {
	if !utf8.Valid(v) {
		return append(dst, redacted...)
	}
	if at, ok := emailAt(v); ok {
		_, first := utf8.DecodeRune(v)
		return append(append(append(dst, v[:first]...), redacted...), v[at:]...)
	}
	alnum := 0
	for _, r := range string(v) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			alnum++
		}
	}
	keep := 4
	if alnum <= 2*keep {
		keep = alnum / 4 // short values show at most a quarter
	}
	seen := 0
	for _, r := range string(v) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			seen++
			if seen <= alnum-keep {
				r = '*'
			}
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// emailAt reports whether v looks like an email address (one "@", a local part, and a dotted domain of
// letters, digits and hyphens) and where its "@" is. Only then is the domain shown.
func emailAt(v []byte) (int, bool) {
	at := bytes.IndexByte(v, '@')
	if at <= 0 || bytes.Count(v, []byte("@")) != 1 {
		return 0, false
	}
	domain := v[at+1:]
	if !bytes.Contains(domain, []byte(".")) || bytes.HasPrefix(domain, []byte(".")) || bytes.HasSuffix(domain, []byte(".")) {
		return 0, false
	}
	for _, r := range string(domain) {
		if !(r == '.' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return 0, false
		}
	}
	return at, true
}

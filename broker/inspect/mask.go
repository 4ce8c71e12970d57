package inspect

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
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
	// Hash replaces the value with a keyed, deterministic digest (HMAC-SHA-256), so equal values stay
	// equal and joins and GROUP BY still work, but the value cannot be recovered or guessed offline.
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
var ErrNoHashKey = errors.New("inspect: the hash masking strategy needs a key (masking.hash_key_file)")

// Masker masks values. It is safe for concurrent use.
type Masker struct {
	key  []byte
	macs sync.Pool // of hash.Hash: HMAC states keyed once, reset per value
}

// NewMasker returns a masker; key may be nil, which leaves the hash strategy unavailable.
func NewMasker(key []byte) (*Masker, error) {
	if key != nil && len(key) < MinHashKeyBytes {
		return nil, fmt.Errorf("inspect: hash key of %d bytes, need at least %d", len(key), MinHashKeyBytes)
	}
	m := &Masker{key: key}
	m.macs.New = func() any { return hmac.New(sha256.New, m.key) }
	return m, nil
}

// Mask masks a value in text form. null reports that the value must become SQL NULL. An unknown
// strategy is an error, so that a caller can refuse rather than leak.
func (m *Masker) Mask(s Strategy, v []byte) (out []byte, null bool, err error) {
	switch s {
	case Null:
		return nil, true, nil
	case Redact:
		return []byte("***"), false, nil
	case Hash:
		if m.key == nil {
			return nil, false, ErrNoHashKey
		}
		mac := m.macs.Get().(hash.Hash)
		mac.Reset()
		mac.Write(v)
		var sum [sha256.Size]byte
		out := make([]byte, 2+32)
		copy(out, "h:")
		hex.Encode(out[2:], mac.Sum(sum[:0])[:16])
		m.macs.Put(mac)
		return out, false, nil
	case Partial:
		return partial(v), false, nil
	default:
		return nil, false, fmt.Errorf("inspect: unknown masking strategy %q", s)
	}
}

// partial masks all letters and digits but a few, keeping separators so the shape stays readable.
// Invalid UTF-8 is redacted whole: what cannot be read cannot be partly shown.
func partial(v []byte) []byte {
	if !utf8.Valid(v) {
		return []byte("***")
	}
	s := string(v)
	if at, ok := emailAt(s); ok {
		first, _ := utf8.DecodeRuneInString(s)
		return []byte(string(first) + "***" + s[at:])
	}
	alnum := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			alnum++
		}
	}
	keep := 4
	if alnum <= 2*keep {
		keep = alnum / 4 // short values show at most a quarter
	}
	out := make([]rune, 0, len(s))
	seen := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			seen++
			if seen <= alnum-keep {
				r = '*'
			}
		}
		out = append(out, r)
	}
	return []byte(string(out))
}

// emailAt reports whether s looks like an email address (one "@", a local part, and a dotted domain of
// letters, digits and hyphens) and where its "@" is. Only then is the domain shown.
func emailAt(s string) (int, bool) {
	at := strings.IndexByte(s, '@')
	if at <= 0 || strings.Count(s, "@") != 1 {
		return 0, false
	}
	domain := s[at+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return 0, false
	}
	for _, r := range domain {
		if !(r == '.' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return 0, false
		}
	}
	return at, true
}

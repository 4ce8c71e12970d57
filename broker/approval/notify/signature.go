package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries a webhook's signature: "t=<unix seconds>,v1=<hex HMAC-SHA256>", the HMAC
// keyed with the shared secret over the decimal timestamp, a '.', and the request body, byte for byte.
const SignatureHeader = "Svidbroker-Signature"

// DefaultTolerance is how far a signature's timestamp may be from the receiver's clock, either way,
// when Verify is given no tolerance: enough for retries' re-signing and modest clock skew, short
// enough that a captured request soon cannot be replayed.
const DefaultTolerance = 5 * time.Minute

// maxSignatureHeader bounds the header Verify reads; a real one is about 80 bytes.
const maxSignatureHeader = 1024

// Verify's outcomes, for errors.Is.
var (
	// ErrNoSignature: the header is empty or holds no v1 signature.
	ErrNoSignature = errors.New("notify: no v1 signature in the " + SignatureHeader + " header")
	// ErrMalformed: the header does not parse (see the error for what).
	ErrMalformed = errors.New("notify: malformed " + SignatureHeader + " header")
	// ErrStale: the timestamp is further from now than the tolerance (a replay, or a clock off).
	ErrStale = errors.New("notify: signature timestamp outside the tolerance")
	// ErrMismatch: no v1 signature matches the body under the secret.
	ErrMismatch = errors.New("notify: signature does not match the body")
)

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks that header (the SignatureHeader's value) signs body under secret, with a timestamp
// within tolerance of now (DefaultTolerance if tolerance <= 0). The header may carry several v1
// signatures (a sender between two secrets); one matching is enough. Elements other than t and v1
// are ignored, for later schemes. An empty secret verifies nothing.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return errors.New("notify: no secret to verify with")
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if len(header) > maxSignatureHeader {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(header), maxSignatureHeader)
	}
	var ts string
	var sigs [][]byte
	for elem := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(elem), "=")
		if !ok {
			if strings.TrimSpace(elem) == "" {
				continue
			}
			return fmt.Errorf("%w: element %q is not key=value", ErrMalformed, clip(elem))
		}
		switch key {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: two timestamps", ErrMalformed)
			}
			if value == "" {
				return fmt.Errorf("%w: empty timestamp", ErrMalformed)
			}
			ts = value
		case "v1":
			sig, err := hex.DecodeString(value)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: v1 must be %d hex digits", ErrMalformed, 2*sha256.Size)
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" {
		return fmt.Errorf("%w: no t= timestamp", ErrMalformed)
	}
	if len(sigs) == 0 {
		return ErrNoSignature
	}
	// Only plain decimal digits: "+5" or "05" would sign the same instant as another text.
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || strconv.FormatInt(unix, 10) != ts || unix < 0 {
		return fmt.Errorf("%w: t=%q is not unix seconds", ErrMalformed, clip(ts))
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %s, %s from now (tolerance %s)", ErrStale,
			time.Unix(unix, 0).UTC().Format(time.RFC3339), d.Round(time.Second), tolerance)
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrMismatch
}

// clip bounds what an error quotes of a header.
func clip(s string) string {
	const limit = 32
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}

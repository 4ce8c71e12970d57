package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"version":1,"event":"raised"}`)
	good := Sign(testSecret, body, now)
	other := Sign([]byte("another secret, another secret, another"), body, now)
	sigOf := func(h string) string { _, v1, _ := strings.Cut(h, ",v1="); return v1 }
	for _, tc := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error // nil: verified
	}{
		{"signed now", testSecret, good, body, now, nil},
		{"signed within the tolerance, in the past", testSecret, good, body, now.Add(DefaultTolerance), nil},
		{"signed within the tolerance, in the future", testSecret, good, body, now.Add(-DefaultTolerance), nil},
		{"one of two v1 signatures matches (a sender between secrets)", testSecret, "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=" + sigOf(other) + ",v1=" + sigOf(good), body, now, nil},
		{"an unknown element is ignored", testSecret, good + ",v9=zz", body, now, nil},
		{"spaces around elements", testSecret, strings.ReplaceAll(good, ",", " , "), body, now, nil},
		{"body changed", testSecret, good, []byte(`{"version":1,"event":"approved"}`), now, ErrMismatch},
		{"body with a byte more", testSecret, good, append(append([]byte{}, body...), ' '), now, ErrMismatch},
		{"other secret", []byte("another secret, another secret, another"), good, body, now, ErrMismatch},
		{"timestamp changed", testSecret, strings.Replace(good, "t=1800000000", "t=1800000001", 1), body, now, ErrMismatch},
		{"stale: replayed later", testSecret, good, body, now.Add(DefaultTolerance + time.Second), ErrStale},
		{"from the future", testSecret, good, body, now.Add(-DefaultTolerance - time.Second), ErrStale},
		{"empty header", testSecret, "", body, now, ErrMalformed},
		{"no timestamp", testSecret, "v1=" + sigOf(good), body, now, ErrMalformed},
		{"no v1", testSecret, "t=1800000000", body, now, ErrNoSignature},
		{"two timestamps", testSecret, "t=1,t=1800000000,v1=" + sigOf(good), body, now, ErrMalformed},
		{"a sign before the timestamp", testSecret, "t=+1800000000,v1=" + sigOf(good), body, now, ErrMalformed},
		{"a leading zero", testSecret, "t=01800000000,v1=" + sigOf(good), body, now, ErrMalformed},
		{"negative timestamp", testSecret, "t=-1,v1=" + sigOf(good), body, now, ErrMalformed},
		{"short v1", testSecret, "t=1800000000,v1=" + sigOf(good)[:62], body, now, ErrMalformed},
		{"v1 not hex", testSecret, "t=1800000000,v1=" + strings.Repeat("g", 64), body, now, ErrMalformed},
		{"element without =", testSecret, good + ",v1", body, now, ErrMalformed},
		{"oversized header", testSecret, good + "," + strings.Repeat("x=y,", 300), body, now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.header, tc.body, tc.now, 0)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyNeedsASecret(t *testing.T) {
	now := time.Now()
	body := []byte("{}")
	if err := Verify(nil, Sign(nil, body, now), body, now, time.Minute); err == nil {
		t.Fatal("Verify with no secret accepted a signature made with none")
	}
}

func TestVerifyToleranceIsTheCallers(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte("{}")
	h := Sign(testSecret, body, now)
	if err := Verify(testSecret, h, body, now.Add(2*time.Minute), time.Minute); !errors.Is(err, ErrStale) {
		t.Fatalf("2 minutes late with a 1-minute tolerance: %v", err)
	}
	if err := Verify(testSecret, h, body, now.Add(50*time.Second), time.Minute); err != nil {
		t.Fatalf("50 seconds late with a 1-minute tolerance: %v", err)
	}
}

// TestSignMatchesTheDocumentedScheme computes the signature as docs/notifications.md tells a
// receiver to, without this package.
func TestSignMatchesTheDocumentedScheme(t *testing.T) {
	body := []byte(`{"event":"raised"}`)
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte("1800000000." + string(body)))
	want := "t=1800000000,v1=" + hex.EncodeToString(m.Sum(nil))
	if got := Sign(testSecret, body, time.Unix(1_800_000_000, 0)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

// FuzzVerify: Verify never panics; it accepts a header only when one of its v1 elements is the
// HMAC of the header's own timestamp and the body, and that timestamp is within the tolerance, as
// a reference computed independently says; and what Sign makes, Verify accepts.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	for _, seed := range []struct {
		header string
		body   []byte
	}{
		{Sign(testSecret, []byte("{}"), now), []byte("{}")},
		{Sign(testSecret, []byte("{}"), now) + ",v1=00", []byte("{}")},
		{"t=1800000000", nil},
		{"t=1800000000,v1=" + strings.Repeat("0", 64), []byte("x")},
		{",,,t=,v1=", nil},
		{"t=99999999999999999999,v1=" + strings.Repeat("a", 64), nil},
		{"t=1800000000,v1=" + strings.Repeat("A", 64), nil},
	} {
		f.Add(seed.header, seed.body, int64(0))
	}
	f.Fuzz(func(t *testing.T, header string, body []byte, skew int64) {
		at := now.Add(time.Duration(skew%7200) * time.Second) // within two hours either way
		err := Verify(testSecret, header, body, at, time.Minute)
		if err == nil && !referenceAccepts(header, body, at, time.Minute) {
			t.Fatalf("Verify accepted %q for body %q, which the reference refuses", header, body)
		}
		if err != nil && referenceAccepts(header, body, at, time.Minute) && len(header) <= maxSignatureHeader && !hasMalformedElement(header) {
			t.Fatalf("Verify refused %q for body %q: %v", header, body, err)
		}
		signed := Sign(testSecret, body, at)
		if err := Verify(testSecret, signed, body, at, time.Minute); err != nil {
			t.Fatalf("Verify refused what Sign made: %v", err)
		}
	})
}

// referenceAccepts is the scheme as the documentation states it: some "v1=<hex>" element equals
// HMAC-SHA256(secret, t + "." + body) in lower-case hex, for the header's single "t=<decimal>" whose
// value is within tolerance of now.
func referenceAccepts(header string, body []byte, now time.Time, tolerance time.Duration) bool {
	var ts []string
	var sigs []string
	for _, e := range strings.Split(header, ",") {
		e = strings.TrimSpace(e)
		if v, ok := strings.CutPrefix(e, "t="); ok {
			ts = append(ts, v)
		}
		if v, ok := strings.CutPrefix(e, "v1="); ok {
			sigs = append(sigs, strings.ToLower(v))
		}
	}
	if len(ts) != 1 {
		return false
	}
	unix, err := strconv.ParseInt(ts[0], 10, 64)
	if err != nil || strconv.FormatInt(unix, 10) != ts[0] || unix < 0 {
		return false
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return false
	}
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte(ts[0] + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	for _, s := range sigs {
		if s == want {
			return true
		}
	}
	return false
}

// hasMalformedElement reports an element Verify refuses the whole header for: one without '=' that
// is not blank, or a v1 that is not 64 hex digits.
func hasMalformedElement(header string) bool {
	for _, e := range strings.Split(header, ",") {
		e = strings.TrimSpace(e)
		k, v, ok := strings.Cut(e, "=")
		if !ok && e != "" {
			return true
		}
		if k == "v1" {
			if b, err := hex.DecodeString(v); err != nil || len(b) != sha256.Size {
				return true
			}
		}
	}
	return false
}

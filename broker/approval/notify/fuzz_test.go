package notify

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzEscapeSlack: whatever the agent wrote, the escaped text has no markup Slack would act on,
// keeps to its limit, is valid UTF-8, and unescapes to the start of what was written.
func FuzzEscapeSlack(f *testing.F) {
	for _, s := range []string{"", "SELECT 1", "<!channel>", "a & b <https://x|y>", "\xff\xfe<", strings.Repeat("é<", 100)} {
		f.Add(s, 40)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = 8 + int(uint(max)%3000)
		got := escapeSlack(s, max)
		if len(got) > max || !utf8.ValidString(got) || strings.ContainsAny(got, "<>") {
			t.Fatalf("escapeSlack(%q, %d) = %q", s, max, got)
		}
		plain := strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(strings.TrimSuffix(got, "…"))
		if want := strings.ToValidUTF8(s, "\uFFFD"); !strings.HasPrefix(want, plain) {
			t.Fatalf("escapeSlack(%q, %d) = %q, which is not the start of the text", s, max, got)
		}
	})
}

// FuzzRetryAfter: a receiver's Retry-After never gives a negative wait, nor one beyond a day when
// it is a number of seconds.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "7", "-3", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := retryAfter(v, now)
		if d < 0 {
			t.Fatalf("retryAfter(%q) = %s", v, d)
		}
	})
}

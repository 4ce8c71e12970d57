package console

import (
	"net/url"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseDecision holds the decision form's reader to its contract: whatever is posted, an
// accepted form has a known decision, a bounded UTF-8 reason and a known scope with a duration only
// where one belongs, from 1 minute to a day.
func FuzzParseDecision(f *testing.F) {
	for _, s := range []string{
		"decision=approve&scope=once",
		"decision=deny&scope=once&reason=not+now",
		"decision=approve&scope=fingerprint&minutes=15",
		"decision=approve&scope=session&minutes=1440",
		"decision=approve&scope=session&minutes=1441",
		"decision=approve&scope=session&minutes=-1",
		"decision=maybe&scope=once",
		"decision=approve&scope=forever",
		"decision=approve&decision=deny&scope=once",
		"decision=approve&scope=once&reason=%ff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		approve, reason, scope, err := parseDecision(form)
		if err != nil {
			return
		}
		if d := form.Get("decision"); approve != (d == "approve") || (d != "approve" && d != "deny") {
			t.Fatalf("decision %q read as approve=%v", d, approve)
		}
		if len(reason) > maxReasonBytes || !utf8.ValidString(reason) {
			t.Fatalf("reason of %d bytes accepted", len(reason))
		}
		switch scope.Kind {
		case ScopeOnce:
			if scope.For != 0 {
				t.Fatalf("once with a duration %v", scope.For)
			}
		case ScopeFingerprint, ScopeSession:
			if scope.For < time.Minute || scope.For > 24*time.Hour {
				t.Fatalf("scope %v out of bounds", scope)
			}
		default:
			t.Fatalf("unknown scope %q accepted", scope.Kind)
		}
	})
}

package oidc

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// ErrRefused is what CallbackError's errors match: the provider answered the login with an error
// instead of a code.
var ErrRefused = errors.New("oidc: the provider refused the login")

// maxCallbackText bounds what of a callback's error is repeated to a person or a log.
const maxCallbackText = 200

// CallbackError returns the refusal a callback's query carries (error and error_description, RFC
// 6749 section 4.1.2.1), or nil when it carries none. Its text comes from the browser, so it is
// cut short and stripped of control characters before anyone sees it.
func CallbackError(q url.Values) error {
	code := q.Get("error")
	if code == "" {
		return nil
	}
	if d := q.Get("error_description"); d != "" {
		return fmt.Errorf("%w: %s: %s", ErrRefused, printable(code), printable(d))
	}
	return fmt.Errorf("%w: %s", ErrRefused, printable(code))
}

func printable(s string) string {
	if len(s) > maxCallbackText {
		s = s[:maxCallbackText]
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, ""))
}

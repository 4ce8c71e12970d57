package proxy

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// maskedMediaType reads how a response whose fields are masked is framed, refusing what the mask
// cannot stand for: a part of a representation (206), which the field paths of the whole do not
// describe ("123-45-6789", the bytes of one value, is a JSON document whose root no rule names);
// exactly one Content-Type, whose charset (if any) is UTF-8, since the masker reads the body's bytes
// as UTF-8 and a client that decodes another charset (UTF-7's "+AHM-sn" is "ssn") would find keys
// the masker never saw; and no content coding in any of its Content-Encoding headers (a client
// decodes the codings of all of them, in order). It returns the media type alone, which the engine
// sends as the response's only Content-Type, so that the agent decodes the body exactly as it was
// masked. A refusal's text names no value of the body.
func maskedMediaType(status int, h http.Header) (string, error) {
	if status == http.StatusPartialContent {
		return "", errors.New("the upstream answered with a part of the response (206)")
	}
	cts := h.Values("Content-Type")
	if len(cts) != 1 {
		return "", fmt.Errorf("the upstream's response carries %d Content-Type headers; it must carry one", len(cts))
	}
	mt, params, err := mime.ParseMediaType(cts[0])
	if err != nil {
		return "", fmt.Errorf("the upstream's Content-Type cannot be parsed (%v)", err)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "", fmt.Errorf("the upstream's response is in charset %q; masked responses must be UTF-8", cs)
	}
	for _, v := range h.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return "", fmt.Errorf("the upstream's response is encoded (%s) where it must be sent unencoded", c)
			}
		}
	}
	return mt, nil
}

// maskedRequestHeaders are not forwarded on a request whose response is masked: Range asks for a part
// of the representation, and the preconditions (RFC 9110 §13.1) compare validators of the unmasked
// one.
var maskedRequestHeaders = []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}

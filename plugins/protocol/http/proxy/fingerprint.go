package proxy

import (
	"crypto/sha256"
	"fmt"
)

// requestFingerprint is what an approval of a request binds: its route, and a digest of its text
// (method, path and query) and body, so that another order's ID in the path, another query or
// another body is another operation.
func requestFingerprint(route, text string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(text))
	h.Write([]byte{0})
	h.Write(body)
	return fmt.Sprintf("http:%s sha256:%x", route, h.Sum(nil))
}

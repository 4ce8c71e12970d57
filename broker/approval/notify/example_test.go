package notify_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/notify"
)

// A receiver checks each webhook's signature over the raw body before it reads the JSON.
func ExampleVerify() {
	secret := []byte("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")
	receive := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := notify.Verify(secret, r.Header.Get(notify.SignatureHeader), body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized) // not retried by the broker
			return
		}
		// Decode body as a notify.Payload; drop a Delivery already handled.
		w.WriteHeader(http.StatusNoContent)
	})

	body := `{"version":1,"event":"raised"}`
	for _, sig := range []string{notify.Sign(secret, []byte(body), time.Now()), notify.Sign([]byte("a guess"), []byte(body), time.Now())} {
		req := httptest.NewRequest(http.MethodPost, "/svidbroker", strings.NewReader(body))
		req.Header.Set(notify.SignatureHeader, sig)
		rec := httptest.NewRecorder()
		receive.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// 204
	// 401
}

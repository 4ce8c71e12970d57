package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Check is one thing the broker needs to start a new session: its SVID, its audit log, a policy set,
// SPIRE; or, optional, what one target needs: its backend, Vault. /readyz fails while any check that
// is not optional fails.
type Check struct {
	// Name is how /readyz?verbose lists it: "[+]name ok" or "[-]name failed: reason".
	Name string
	// Optional marks what only some sessions need (one target's backend or Vault): /readyz?verbose lists
	// its state, but it does not make the broker unready, which would take every target out of
	// service for one; that target's sessions are refused with their own error.
	Optional bool
	// Consequence says, for an optional check, what its failure means. Default: "its target's
	// sessions are refused".
	Consequence string
	// Check returns nil when the dependency works. It must return once ctx is done (/readyz gives
	// each check a deadline). Its error is shown on /readyz, so it must hold no secret.
	Check func(ctx context.Context) error
}

// DefaultCheckTimeout bounds each readiness check.
const DefaultCheckTimeout = 2 * time.Second

// errCheckTimeout is a check that did not answer within its deadline.
var errCheckTimeout = errors.New("no answer within the deadline")

// runChecks runs every check at once, each within timeout, and returns their errors in order.
func runChecks(ctx context.Context, checks []Check, timeout time.Duration) []error {
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Check(cctx) }()
			select {
			case errs[i] = <-done:
			case <-cctx.Done():
				errs[i] = errCheckTimeout // a check that ignores its context is not waited for
			}
		})
	}
	wg.Wait()
	return errs
}

// readyz answers /readyz in the style of Kubernetes' health endpoints: 200 and "ok" when every check
// that is not optional passes, else 503 with the failed checks; with ?verbose, every check, "[+]name
// ok" or "[-]name failed: reason", then "readyz check passed" or "readyz check failed".
func readyz(checks []Check, timeout time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, verbose := r.URL.Query()["verbose"]
		errs := runChecks(r.Context(), checks, timeout)
		var b strings.Builder
		failed := false
		for i, c := range checks {
			switch err := errs[i]; {
			case err != nil && c.Optional:
				if verbose {
					consequence := c.Consequence
					if consequence == "" {
						consequence = "its target's sessions are refused"
					}
					fmt.Fprintf(&b, "[-]%s failed: %s (optional: %s)\n", c.Name, oneLine(err.Error()), consequence)
				}
			case err != nil:
				failed = true
				fmt.Fprintf(&b, "[-]%s failed: %s\n", c.Name, oneLine(err.Error()))
			case verbose:
				fmt.Fprintf(&b, "[+]%s ok\n", c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case failed:
			w.WriteHeader(http.StatusServiceUnavailable)
			b.WriteString("readyz check failed\n")
		case verbose:
			b.WriteString("readyz check passed\n")
		default:
			b.WriteString("ok\n")
		}
		_, _ = w.Write([]byte(b.String()))
	}
}

// oneLine keeps a reason on its line of the listing.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

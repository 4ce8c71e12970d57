package shopdb

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// ServeTLS serves srv over TLS with certFile and keyFile until it fails or ctx ends, then shuts it
// down, waiting at most 10 seconds for requests in flight. It returns the command's exit status: 1
// when serving or the shutdown failed, else 0. attrs go into the "serving" log line.
func ServeTLS(ctx context.Context, srv *http.Server, certFile, keyFile string, log *slog.Logger, attrs ...any) int {
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS(certFile, keyFile) }()
	log.Info("serving", append([]any{"listen", srv.Addr}, attrs...)...)
	select {
	case err := <-errc:
		log.Error("serve", "error", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "error", err)
		return 1
	}
	return 0
}

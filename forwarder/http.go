package forwarder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// handleHTTP relays one HTTP client connection. The broker is dialed once the client has sent its
// first byte, so that a failure can be answered as a response to the client's request.
//
// The forwarder is a byte relay, not a reverse proxy: the broker is the one HTTP parser that decides
// anything (two parsers in a row are how requests get smuggled), each client connection keeps its
// own broker connection (so nothing of one client is ever sent on another's), and streamed bodies,
// server-sent events and upgrades pass as they are.
func (f *Forwarder) handleHTTP(ctx context.Context, log *slog.Logger, c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(f.cfg.ClientTimeout))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		if err != io.EOF {
			log.Info("client sent nothing", "error", err)
		}
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if first[0] == 0x16 {
		log.Warn("client refused: it opened with TLS; use http://, the forwarder does the TLS")
		return
	}
	broker, err := f.dialBroker(ctx)
	if err != nil {
		log.Error("client closed: no connection to the broker", "broker", f.cfg.Broker, "error", err)
		writeHTTPError(c, 502, "svidbroker connect: "+dialFailure(err))
		drain(c)
		return
	}
	defer broker.Close()
	if _, err := broker.Write(first[:]); err != nil {
		log.Error("client closed: write to the broker failed", "error", err)
		return
	}
	log.Debug("relaying", "broker", f.cfg.Broker)
	stats := relay(ctx, c, broker, f.cfg.IdleTimeout)
	log.Info("connection closed", "to_broker_bytes", stats.up+1, "from_broker_bytes", stats.down, "reason", stats.reason)
}

// writeHTTPError writes a complete HTTP/1.1 response that closes the connection.
func writeHTTPError(c net.Conn, status int, msg string) {
	body := msg + "\n"
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), strconv.Itoa(len(body)), body)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(b.Bytes())
}

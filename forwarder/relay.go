package forwarder

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// relayStats is what one relay moved, and why it ended.
type relayStats struct {
	up, down int64 // bytes client→broker, broker→client
	reason   string
}

// halfCloser is a connection whose sending side can be closed alone (TCP and Unix sockets' FIN, TLS's
// close_notify), so that a client that finished sending still reads the answer.
type halfCloser interface {
	CloseWrite() error
}

// lingerAfterHalfClose bounds how long the other direction may go without a byte once one direction
// has ended: a peer that never closes its side would otherwise hold the connection open.
const lingerAfterHalfClose = 30 * time.Second

// relay copies bytes both ways between client and broker until both directions end, ctx ends, or
// neither side sends anything for idle. When one direction ends, its write side is half-closed on
// the other connection. relay closes neither connection; the caller does.
func relay(ctx context.Context, client, broker net.Conn, idle time.Duration) relayStats {
	var last atomic.Int64 // unix nanos of the last byte in either direction
	last.Store(time.Now().UnixNano())
	var reason atomic.Value
	closeBoth := func(why string) {
		reason.CompareAndSwap(nil, why)
		_ = client.Close() // unblocks both readers; Close is safe to call concurrently and twice
		_ = broker.Close()
	}
	stopCtx := context.AfterFunc(ctx, func() { closeBoth("shutdown") })
	defer stopCtx()

	// The idle watchdog re-arms itself until nothing has moved for idle.
	var watch *time.Timer
	var mu sync.Mutex
	check := func() {}
	check = func() {
		since := time.Since(time.Unix(0, last.Load()))
		if since >= idle {
			closeBoth("idle")
			return
		}
		mu.Lock()
		watch = time.AfterFunc(idle-since, check)
		mu.Unlock()
	}
	mu.Lock()
	watch = time.AfterFunc(idle, check)
	mu.Unlock()
	defer func() {
		mu.Lock()
		watch.Stop()
		mu.Unlock()
	}()

	var up, down int64
	var wg sync.WaitGroup
	var ended atomic.Int32
	pipe := func(dst, src net.Conn, n *int64, name string) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				last.Store(time.Now().UnixNano())
				if ended.Load() > 0 {
					_ = src.SetReadDeadline(time.Now().Add(lingerAfterHalfClose))
				}
				if _, werr := dst.Write(buf[:k]); werr != nil {
					closeBoth(name + " write failed")
					return
				}
				*n += int64(k)
			}
			if err != nil {
				switch {
				case errors.Is(err, io.EOF):
				case errors.Is(err, os.ErrDeadlineExceeded):
					closeBoth("the other side closed and " + name + " did not within " + lingerAfterHalfClose.String())
				default:
					closeBoth(name + " read failed")
				}
				break
			}
		}
		// This direction is done: pass the end on, and give the other direction a bounded time.
		if hc, ok := dst.(halfCloser); ok {
			_ = hc.CloseWrite()
		}
		if ended.Add(1) == 1 {
			reason.CompareAndSwap(nil, name+" closed")
			// The other direction's reader, which may be waiting now; it extends this as bytes arrive.
			_ = dst.SetReadDeadline(time.Now().Add(lingerAfterHalfClose))
		}
	}
	wg.Add(2)
	go pipe(broker, client, &up, "client")
	go pipe(client, broker, &down, "broker")
	wg.Wait()
	r, _ := reason.Load().(string)
	return relayStats{up: up, down: down, reason: r}
}

package forwarder

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrRemoteListen is a listen address that other hosts could reach. Anything that connects to the
// forwarder acts with its identity, so it listens on loopback (or a Unix socket) unless told otherwise.
var ErrRemoteListen = errors.New("forwarder: listen address is not loopback")

// ListenAddr is a parsed listen address: TCP host:port, or a Unix socket path.
type ListenAddr struct {
	Network string // "tcp" or "unix"
	Address string
	// Remote is true for a TCP address that is not loopback-only (another IP, a host name other than
	// localhost, or an empty host, which is every interface).
	Remote bool
}

// ParseListenAddr parses "127.0.0.1:PORT", "[::1]:PORT", "localhost:PORT", "unix:/path" or "/path".
func ParseListenAddr(s string) (ListenAddr, error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok || strings.HasPrefix(s, "/") {
		if !ok {
			p = s
		}
		if !strings.HasPrefix(p, "/") {
			return ListenAddr{}, fmt.Errorf("forwarder: Unix socket %q: give an absolute path", p)
		}
		return ListenAddr{Network: "unix", Address: p}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return ListenAddr{}, fmt.Errorf("forwarder: listen address %q: %w (want 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or unix:/path)", s, err)
	}
	if port == "" {
		return ListenAddr{}, fmt.Errorf("forwarder: listen address %q has no port", s)
	}
	remote := true
	if host == "localhost" {
		remote = false
	} else if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		remote = false
	}
	return ListenAddr{Network: "tcp", Address: s, Remote: remote}, nil
}

// Listen opens the listener. A remote TCP address is refused with ErrRemoteListen unless allowRemote.
// A Unix socket is created with mode 0600, so only the forwarder's own uid (and root) can use it; a
// stale socket at the path is replaced, any other file is not.
func Listen(a ListenAddr, allowRemote bool) (net.Listener, error) {
	switch a.Network {
	case "tcp":
		if a.Remote && !allowRemote {
			return nil, fmt.Errorf("%w: %s; listen on 127.0.0.1, [::1], localhost or a Unix socket, or allow it explicitly", ErrRemoteListen, a.Address)
		}
		host, port, _ := net.SplitHostPort(a.Address)
		if host == "localhost" {
			// Bind loopback itself, not whatever the resolver says localhost is.
			return net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
		}
		return net.Listen("tcp", a.Address)
	case "unix":
		if fi, err := os.Lstat(a.Address); err == nil {
			if fi.Mode().Type() != fs.ModeSocket {
				return nil, fmt.Errorf("forwarder: %s exists and is not a socket; not replacing it", a.Address)
			}
			if err := os.Remove(a.Address); err != nil {
				return nil, fmt.Errorf("forwarder: removing the stale socket: %w", err)
			}
		}
		// The socket is born 0600: no window in which another uid could connect.
		old := unix.Umask(0o177)
		ln, err := net.Listen("unix", a.Address)
		unix.Umask(old)
		if err != nil {
			return nil, fmt.Errorf("forwarder: %w", err)
		}
		return ln, nil
	}
	return nil, fmt.Errorf("forwarder: unknown network %q", a.Network)
}

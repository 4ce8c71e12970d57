package forwarder

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestParseListenAddr(t *testing.T) {
	cases := []struct {
		in      string
		network string
		remote  bool
		bad     bool
	}{
		{"127.0.0.1:6432", "tcp", false, false},
		{"127.0.0.2:6432", "tcp", false, false},
		{"[::1]:6432", "tcp", false, false},
		{"localhost:0", "tcp", false, false},
		{"unix:/run/agent/pg.sock", "unix", false, false},
		{"/run/agent/pg.sock", "unix", false, false},
		{":6432", "tcp", true, false}, // every interface
		{"0.0.0.0:6432", "tcp", true, false},
		{"[::]:6432", "tcp", true, false},
		{"10.0.0.5:6432", "tcp", true, false},
		{"localhost.example.com:6432", "tcp", true, false},
		{"127.0.0.1", "", false, true},
		{"127.0.0.1:", "", false, true},
		{"unix:relative.sock", "", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			a, err := ParseListenAddr(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted %+v", a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Network != tc.network || a.Remote != tc.remote {
				t.Fatalf("got %+v, want network %s remote %v", a, tc.network, tc.remote)
			}
		})
	}
}

func TestRemoteListenRefusedUnlessAllowed(t *testing.T) {
	a, err := ParseListenAddr("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(a, false); !errors.Is(err, ErrRemoteListen) {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("Listen on 0.0.0.0 without allowRemote: %v, want ErrRemoteListen", err)
	}
	ln, err := Listen(a, true)
	if err != nil {
		t.Fatalf("Listen on 0.0.0.0 with allowRemote: %v", err)
	}
	ln.Close()
	// The control: loopback needs no permission, and localhost binds loopback itself.
	for _, s := range []string{"127.0.0.1:0", "localhost:0"} {
		a, _ := ParseListenAddr(s)
		ln, err := Listen(a, false)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
			t.Fatalf("%s bound %s", s, ip)
		}
		ln.Close()
	}
}

func TestUnixSocketIsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fwd.sock")
	a, _ := ParseListenAddr("unix:" + path)
	ln, err := Listen(a, false)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %v, want 0600", perm)
	}
	// A stale socket (the listener closed without removing it) is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(a, false)
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	ln.Close()
	// Any other file at the path is left alone.
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ = ParseListenAddr(file)
	if ln, err := Listen(a, false); err == nil {
		ln.Close()
		t.Fatal("replaced a regular file with a socket")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("the regular file changed")
	}
}

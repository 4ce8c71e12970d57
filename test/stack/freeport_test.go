package stack

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestFreePortAvoidsTheEphemeralRange: every port freePort returns lies outside the kernel's
// ephemeral range (where outgoing connections of any process are given ports, and could take it
// before the component binds it) and is free when returned.
func TestFreePortAvoidsTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatalf("reading the ephemeral port range: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("ephemeral port range %q: want two ports", b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("ephemeral port range %q: want two ports", b)
	}
	if lo-10000 < 1000 && 65535-hi < 1000 {
		t.Fatalf("ephemeral port range %d-%d leaves fewer than 1000 ports below it (from 10000) and above it: "+
			"freePort falls back to ephemeral ports on this machine", lo, hi)
	}
	for range 200 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		if port >= lo && port <= hi {
			t.Fatalf("freePort returned %d, inside the ephemeral range %d-%d", port, lo, hi)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("freePort returned %d, which cannot be bound: %v", port, err)
		}
		l.Close()
	}
}

package stack

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortAvoidsTheEphemeralRange: every port freePort returns lies outside the kernel's
// ephemeral range (where outgoing connections of any process are given ports, and could take it
// before the component binds it) and is free when returned.
func TestFreePortAvoidsTheEphemeralRange(t *testing.T) {
	lo, hi, err := ephemeralRange()
	if err != nil {
		t.Fatalf("reading the ephemeral port range: %v", err)
	}
	if _, _, ok := nonEphemeralPorts(); !ok {
		t.Fatalf("ephemeral port range %d-%d leaves fewer than %d ports below it (from %d) and above it: "+
			"freePort falls back to ephemeral ports on this machine", lo, hi, minPortRange, lowestPort)
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

package stack

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

const (
	// ephemeralRangeFile holds the kernel's ephemeral port range: two integers, low and high.
	ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"
	// lowestPort is the lowest port freePort picks below the ephemeral range.
	lowestPort = 10000
	// highestPort is the highest TCP port.
	highestPort = 65535
	// minPortRange is the fewest ports a range outside the ephemeral one must hold to be picked from.
	minPortRange = 1000
	// portCandidates bounds how many ports outside the ephemeral range freePort tries.
	portCandidates = 100
)

// freePort returns a TCP port that is free on 127.0.0.1 when it looks (it listens on it and closes),
// for a component to bind afterwards.
//
// Between freePort's close and the component's bind another process can take the port. The usual
// taker is any outgoing TCP connection of any process on the machine: the kernel gives those a port
// from its ephemeral range (ip_local_port_range), the very range a listen on port 0 picks from. So
// freePort picks at random from a range outside the ephemeral one (below it, or above it when there is
// no room below), where no outgoing connection is given a port: such a port can only be taken by another
// process choosing it on purpose, which other test packages using this one do, at random over thousands
// of ports. When the ephemeral range leaves no room outside it, its file cannot be read, or none of
// portCandidates ports is free, freePort falls back to asking the kernel for a port (port 0).
func freePort() (int, error) {
	if lo, hi, ok := nonEphemeralPorts(); ok {
		for range portCandidates {
			port := lo + rand.IntN(hi-lo+1)
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				continue
			}
			l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("stack: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// nonEphemeralPorts returns the range of ports [lo, hi] freePort picks from: lowestPort up to just
// below the kernel's ephemeral range or, when that holds fewer than minPortRange ports, just above the
// ephemeral range up to highestPort. ok is false when neither holds minPortRange ports or the
// ephemeral range cannot be read.
func nonEphemeralPorts() (lo, hi int, ok bool) {
	elo, ehi, err := ephemeralRange()
	if err != nil {
		return 0, 0, false
	}
	if elo-lowestPort >= minPortRange {
		return lowestPort, elo - 1, true
	}
	if highestPort-ehi >= minPortRange {
		return ehi + 1, highestPort, true
	}
	return 0, 0, false
}

// ephemeralRange reads the kernel's ephemeral port range [lo, hi] from ephemeralRangeFile.
func ephemeralRange() (lo, hi int, err error) {
	b, err := os.ReadFile(ephemeralRangeFile)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("stack: %s: want two ports, got %q", ephemeralRangeFile, b)
	}
	if lo, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, fmt.Errorf("stack: %s: %w", ephemeralRangeFile, err)
	}
	if hi, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("stack: %s: %w", ephemeralRangeFile, err)
	}
	if lo < 1 || lo > hi || hi > highestPort {
		return 0, 0, fmt.Errorf("stack: %s: bad range %d-%d", ephemeralRangeFile, lo, hi)
	}
	return lo, hi, nil
}

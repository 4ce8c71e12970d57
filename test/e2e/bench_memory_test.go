package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
)

// BenchmarkIdleSessionMemory opens idle sessions through a broker and reports the broker's resident
// memory per session (target: at most 64 KiB), against the same count measured before any session.
func BenchmarkIdleSessionMemory(b *testing.B) {
	s, br := shared(b)
	cfg := pgxConfig(b, br, clientFiles(b, s, stack.PersonaAnalyst))
	const sessions = 60 // the stack's PostgreSQL allows 100 connections
	ctx := context.Background()
	for range b.N {
		before := rssKiB(b, br.PID())
		conns := make([]*pgx.Conn, 0, sessions)
		for range sessions {
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			// One statement each, so that every session has been through the statement path once.
			if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		time.Sleep(time.Second) // let the broker settle (GC)
		after := rssKiB(b, br.PID())
		for _, c := range conns {
			c.Close(ctx)
		}
		b.ReportMetric(float64(after-before)/sessions, "KiB/idle-session")
	}
}

// rssKiB reads a process's resident set size.
func rssKiB(b *testing.B, pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

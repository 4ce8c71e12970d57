package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
)

// BenchmarkIdleSessionMemory opens idle sessions through a broker and reports the broker's memory per
// session (target: at most 64 KiB), each against the same measure taken before the sessions: resident
// memory (what the machine sees, including what the Go runtime keeps after freeing it), and live heap
// plus goroutine stacks.
func BenchmarkIdleSessionMemory(b *testing.B) {
	s, br := shared(b)
	cfg := pgxConfig(b, br, clientFiles(b, s, stack.PersonaAnalyst))
	const sessions = 60 // the stack's PostgreSQL allows 100 connections
	ctx := context.Background()
	// One session first, closed before the measure: what the first session through a broker sets up
	// once (the SQL parser's descriptors, the target's catalog, pools) is not per-session memory.
	warm, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := warm.Exec(ctx, "SELECT 1"); err != nil {
		b.Fatal(err)
	}
	warm.Close(ctx)
	for range b.N {
		before, liveBefore := rssKiB(b, br.PID()), liveKiB(b, br)
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
		after, liveAfter := rssKiB(b, br.PID()), liveKiB(b, br)
		for _, c := range conns {
			c.Close(ctx)
		}
		b.ReportMetric(float64(after-before)/sessions, "RSS-KiB/idle-session")
		b.ReportMetric(float64(liveAfter-liveBefore)/sessions, "live-KiB/idle-session")
	}
}

// liveKiB is the broker's heap and stack in use (runtime.MemStats HeapInuse + StackInuse, from its
// pprof endpoint, after a forced GC): memory the sessions hold, without what the Go runtime keeps
// around after freeing it.
func liveKiB(b *testing.B, br *stack.Broker) int {
	resp, err := http.Get("http://" + br.AdminAddr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(string(body), "\n") {
		for _, field := range []string{"# HeapInuse = ", "# StackInuse = "} {
			if v, ok := strings.CutPrefix(line, field); ok {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					b.Fatal(err)
				}
				total += n / 1024
			}
		}
	}
	if total == 0 {
		b.Fatal("no MemStats in the heap profile")
	}
	return total
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

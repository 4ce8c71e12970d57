package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopTimeout bounds how long a component gets to exit after SIGTERM before it is killed.
const stopTimeout = 15 * time.Second

// process is one long-running component the stack started.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stopSig syscall.Signal
	done    chan struct{}
	err     error // valid after done is closed
}

// startProcess starts cmd with its output appended to logPath. The child gets its own process group so
// that a terminal's Ctrl-C reaches only the stack's owner, which then stops the children in order.
func startProcess(name string, cmd *exec.Cmd, logPath string, stopSig syscall.Signal) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stack: %s: open log: %w", name, err)
	}
	defer logf.Close()
	cmd.Stdout = logf
	cmd.Stderr = logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("stack: %s: start %s: %w", name, cmd.Path, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, stopSig: stopSig, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// failure describes a component that did not become ready: its name, the cause, and its log's tail.
func (p *process) failure(cause error) error {
	if ok, werr := p.exited(); ok {
		cause = fmt.Errorf("%w (process exited: %v)", cause, werr)
	}
	return fmt.Errorf("stack: %s did not start: %w\n--- last lines of %s ---\n%s", p.name, cause, p.logPath, tail(p.logPath, 25))
}

// stop signals the process and waits for it, killing it (and its process group) after stopTimeout.
func (p *process) stop() error {
	if ok, _ := p.exited(); ok {
		return nil
	}
	_ = p.cmd.Process.Signal(p.stopSig)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("stack: %s did not exit within %s of %s and was killed", p.name, stopTimeout, p.stopSig)
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return lastLines(string(b), n)
}

// waitFor polls check until it succeeds, the process exits, or ctx ends.
func waitFor(ctx context.Context, p *process, what string, check func(context.Context) error) error {
	var last error
	for {
		if ok, _ := p.exited(); ok {
			return p.failure(fmt.Errorf("waiting for %s", what))
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.failure(fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Descendants lists the PIDs of every live process whose parent chain leads to one of roots, including
// the roots themselves. It reads /proc, so it works only on Linux.
func Descendants(roots []int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// The command name is in parentheses and may hold spaces; fields after it are fixed.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parent[pid] = ppid
	}
	inSet := map[int]bool{}
	for _, r := range roots {
		if _, ok := parent[r]; ok {
			inSet[r] = true
		}
	}
	var out []int
	for pid := range parent {
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if inSet[p] {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}

// ErrNotRoot is returned when the stack cannot run personas as distinct uids.
var ErrNotRoot = errors.New("stack: personas run as distinct uids, so the stack must run as root")

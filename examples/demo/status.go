package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// statusFile is where the background process records what it started, for `status`.
const statusFile = "status.json"

// runStatus is what a running demo is made of.
type runStatus struct {
	PID        int         `json:"pid"`
	Started    time.Time   `json:"started"`
	Components []component `json:"components"`
}

type component struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Address string `json:"address"`
	Log     string `json:"log"`
}

func (d *demo) writeStatus(st runStatus) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(d.path(statusFile), b, 0o644)
}

// status prints whether the demo runs, each component with its pid, address and log, and what an
// earlier run kept.
func (d *demo) status(w io.Writer) error {
	pid := d.running()
	b, err := os.ReadFile(d.path(statusFile))
	var st runStatus
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	switch {
	case pid == 0:
		fmt.Fprintln(w, "The demo is not running. Start it with: make demo")
	case err != nil:
		fmt.Fprintf(w, "The demo is starting (pid %d); its log: %s\n", pid, d.rel(d.path("logs", "demo.log")))
	default:
		fmt.Fprintf(w, "The demo is running (pid %d, up %s).\n\n", pid, time.Since(st.Started).Round(time.Second))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  COMPONENT\tPID\tSTATE\tADDRESS\tLOG")
		for _, c := range st.Components {
			state := "running"
			if !alive(c.PID) {
				state = "EXITED"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\n", c.Name, c.PID, state, c.Address, d.rel(c.Log))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nLogs: %s/   Guide: %s   Stop: make demo-down\n", d.rel(d.path("logs")), d.rel(d.path("README.txt")))
	}
	var keptParts []string
	for _, name := range []string{keptAudit, keptPolicies, keptConfig} {
		st, err := os.Lstat(d.path(name))
		if err != nil || st.Mode()&os.ModeSymlink != 0 {
			continue // absent, or a link into the running stack
		}
		keptParts = append(keptParts, d.rel(d.path(name)))
	}
	if pid == 0 && len(keptParts) > 0 {
		fmt.Fprintf(w, "\nKept from the last run: %s\n", strings.Join(keptParts, ", "))
		fmt.Fprintf(w, "  .bin/svidbroker audit verify --config %s\n", d.rel(d.path(keptConfig)))
		fmt.Fprintln(w, "Remove them with: make demo-down WIPE=1")
	}
	return nil
}

// alive reports whether process pid exists. kill(pid, 0) answers EPERM for a process that exists but
// belongs to another user: the personas run as uids of their own, and status may run as anyone.
func alive(pid int) bool {
	return pid > 0 && exists(syscall.Kill(pid, 0))
}

// exists reads kill(pid, 0)'s answer: only an error other than EPERM (ESRCH) means no such process.
func exists(err error) bool {
	return err == nil || errors.Is(err, syscall.EPERM)
}

// rel shows p relative to the working directory when it lies below it.
func (d *demo) rel(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

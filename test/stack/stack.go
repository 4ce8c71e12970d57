package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Config says what to start. The zero value starts everything with defaults.
type Config struct {
	// Dir holds all state. Empty means a new temporary directory, removed by Close.
	Dir string
	// LogDir receives one log file per component. Empty means Dir/logs.
	LogDir string
	// BinDir holds spire-server and spire-agent. Empty means BinDir().
	BinDir string
	// SPIRE tunes SPIRE; see SPIREConfig.
	SPIRE SPIREConfig
	// Personas are registered with SPIRE before the agent starts. Nil means DefaultPersonas().
	Personas []Persona
}

// Stack is a running set of real components. Fields are set once Start returns.
type Stack struct {
	Dir      string
	LogDir   string
	SPIRE    *SPIRE
	Postgres *Postgres

	binDir   string
	ownsDir  bool
	personas []Persona
	procs    []*process // in start order

	binOnce sync.Once
	binPath string
	binErr  error

	apiIssuerPW string // APITokenIssuerRole's password, set by the first upstream started (setupAPISchema)
}

// StartTimeout bounds how long New waits for every component to be ready.
const StartTimeout = 3 * time.Minute

// New starts a stack for a test and stops it when the test ends. It fails the test if anything does
// not start.
func New(t testing.TB, cfg Config) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), StartTimeout)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stack: close: %v", err)
		}
	})
	return s
}

// Start brings up SPIRE (server, personas' entries, agent) and then PostgreSQL, whose `cert` auth
// trusts SPIRE's bundle. If any component fails, everything already started is stopped and the error
// names the component and shows the tail of its log.
func Start(ctx context.Context, cfg Config) (s *Stack, err error) {
	if cfg.Personas == nil {
		cfg.Personas = DefaultPersonas()
	}
	if len(cfg.Personas) > 0 && os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	s = &Stack{Dir: cfg.Dir, LogDir: cfg.LogDir, binDir: cfg.BinDir, personas: cfg.Personas}
	if s.binDir == "" {
		if s.binDir, err = BinDir(); err != nil {
			return nil, err
		}
	}
	if s.Dir == "" {
		// Short, because unix socket paths are limited to 107 bytes.
		if s.Dir, err = os.MkdirTemp("", "svidbroker-"); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		s.ownsDir = true
	}
	if s.Dir, err = filepath.Abs(s.Dir); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if s.LogDir == "" {
		s.LogDir = filepath.Join(s.Dir, "logs")
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
			s = nil
		}
	}()
	// Persona processes run as other uids and must reach the agent socket and the workload binary.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return s, fmt.Errorf("stack: %w", err)
	}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return s, fmt.Errorf("stack: %w", err)
	}
	if err := s.writeManifests(cfg.Personas); err != nil {
		return s, err
	}
	if err := s.startSPIRE(ctx, cfg.SPIRE, cfg.Personas); err != nil {
		return s, err
	}
	if err := s.startPostgres(ctx, PostgresConfig{ClientCAPath: s.SPIRE.BundlePath}); err != nil {
		return s, err
	}
	return s, nil
}

// launch starts a component with its log in LogDir/name.log and records it for Close.
func (s *Stack) launch(name string, cmd *exec.Cmd, stopSig syscall.Signal) (*process, error) {
	p, err := startProcess(name, cmd, filepath.Join(s.LogDir, name+".log"), stopSig)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

// AddPersona registers a persona with SPIRE while the stack runs and returns its entry IDs.
func (s *Stack) AddPersona(ctx context.Context, p Persona) ([]string, error) {
	if err := s.writeManifests([]Persona{p}); err != nil {
		return nil, err
	}
	ids, err := s.SPIRE.Register(ctx, p)
	if err != nil {
		return nil, err
	}
	s.personas = append(s.personas, p)
	return ids, nil
}

// Component is a process the stack started.
type Component struct {
	Name string
	PID  int
	// Log is the file its output goes to.
	Log string
}

// Components lists the processes the stack started, in start order.
func (s *Stack) Components() []Component {
	var out []Component
	for _, p := range s.procs {
		out = append(out, Component{Name: p.name, PID: p.cmd.Process.Pid, Log: p.logPath})
	}
	return out
}

// PIDs returns the process IDs of the components the stack started (not their children).
func (s *Stack) PIDs() []int {
	var pids []int
	for _, p := range s.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// Close stops every component in reverse start order, by PID, and waits for each to exit. It removes
// the state directory if Start created it.
func (s *Stack) Close() error {
	var errs []error
	for _, p := range slices.Backward(s.procs) {
		errs = append(errs, p.stop())
	}
	s.procs = nil
	if s.SPIRE != nil && s.SPIRE.conn != nil {
		_ = s.SPIRE.conn.Close()
	}
	if s.ownsDir {
		errs = append(errs, os.RemoveAll(s.Dir))
	}
	return errors.Join(errs...)
}

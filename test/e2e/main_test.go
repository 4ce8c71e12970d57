package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
)

var brokerBin string

func TestMain(m *testing.M) {
	stack.WorkloadMain()
	agentMain() // when this binary runs as an agent persona; see rotation_test.go
	dir, err := os.MkdirTemp("", "svidbroker-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The broker runs as its own persona's uid, so it must be able to execute the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	brokerBin = filepath.Join(dir, "svidbroker")
	if out, err := exec.Command("go", "build", "-o", brokerBin, "github.com/svidbroker/svidbroker/cmd/svidbroker").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build svidbroker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if env.stack != nil {
		if err := env.stack.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stack close:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one stack and broker shared by the tests that do not change them.
var env struct {
	once   sync.Once
	stack  *stack.Stack
	broker *stack.Broker
	files  map[string]*stack.ClientFiles
	err    error
}

func shared(t testing.TB) (*stack.Stack, *stack.Broker) {
	t.Helper()
	env.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		env.stack, env.err = stack.Start(ctx, stack.Config{})
		if env.err != nil {
			return
		}
		env.broker, env.err = env.stack.StartBroker(ctx, stack.BrokerOptions{Binary: brokerBin})
	})
	if env.err != nil {
		t.Fatal(env.err)
	}
	return env.stack, env.broker
}

// clientFiles writes a persona's SVID files once per test.
func clientFiles(t testing.TB, s *stack.Stack, persona string) *stack.ClientFiles {
	t.Helper()
	f, err := s.WriteClientFiles(t.Context(), persona, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pgxConfig is a pgx configuration that reaches broker b as the persona whose SVID files are f.
func pgxConfig(t testing.TB, b *stack.Broker, f *stack.ClientFiles) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig("host=localhost dbname=shop user=agent sslmode=verify-full port=" + portOf(b) +
		" sslcert=" + f.Cert + " sslkey=" + f.Key + " sslrootcert=" + f.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// packsWith returns a copy of the repository's policy packs with one more policy file.
func packsWith(t testing.TB, name, policy string) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "policies")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "policies", "packs"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// connect opens a pgx session through broker b as persona, closed when the test ends. configure, if
// given, adjusts the configuration first.
func connect(t *testing.T, s *stack.Stack, b *stack.Broker, persona string, configure ...func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	cfg := pgxConfig(t, b, clientFiles(t, s, persona))
	for _, f := range configure {
		f(cfg)
	}
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

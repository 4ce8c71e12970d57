package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// updatePins makes TestToolsPinFileMatchesTheServer accept the MCP shop's live definitions and write
// them to policies/tools.pins.json, as `svidbroker mcp pin tools --accept` does for an operator:
//
//	go test -count=1 -run TestToolsPinFileMatchesTheServer ./test/e2e/ -update-pins
var updatePins = flag.Bool("update-pins", false, "write the MCP shop's tool definitions to policies/tools.pins.json")

// toolsEnv is a broker with the demo's mcp target "tools" (stack.MCPShop.TargetHCL) and the real
// policy packs, on the MCP tests' stack, MCP shop and Vault: started once.
var toolsEnv struct {
	once sync.Once
	b    *stack.Broker
	err  error
}

type toolsStack struct {
	*mcpStack
	tb *stack.Broker
}

func toolsShared(t *testing.T) *toolsStack {
	t.Helper()
	m := mcpShared(t)
	toolsEnv.once.Do(func() { toolsEnv.b, toolsEnv.err = startToolsBroker(m, "svidbroker-tools", "") })
	if toolsEnv.err != nil {
		t.Fatal(toolsEnv.err)
	}
	ts := &toolsStack{mcpStack: m, tb: toolsEnv.b}
	t.Cleanup(func() { ts.logOnFailure(t) })
	return ts
}

func (ts *toolsStack) logOnFailure(t *testing.T) {
	if t.Failed() {
		b, _ := os.ReadFile(ts.tb.LogPath())
		if len(b) > 12000 {
			b = b[len(b)-12000:]
		}
		t.Logf("%s (end):\n%s", ts.tb.LogPath(), b)
	}
}

// startToolsBroker starts a broker named name with target "tools" in front of m's MCP shop, deciding
// by policyDir ("": the repository's packs), and returns once the target listens.
func startToolsBroker(m *mcpStack, name, policyDir string) (*stack.Broker, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := m.s
	if err := s.ConfigureToolsVault(ctx, m.vault, m.shop, "5m", "1h"); err != nil {
		return nil, err
	}
	block, err := s.VaultBlock("vault-journal-"+name, httpEnv.vaultAddr, httpEnv.vaultCA)
	if err != nil {
		return nil, err
	}
	port, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: name, Binary: brokerBin, VaultRoles: true, PolicyDir: policyDir,
		Extra: block + m.shop.TargetHCL(listen) + stack.JWTBlock()})
	if err != nil {
		return nil, err
	}
	if err := waitListen(listen); err != nil {
		return nil, err
	}
	return b, nil
}

// waitListen waits for a listener at addr.
func waitListen(addr string) error {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("target \"tools\" does not listen on %s: %w", addr, err)
		}
	}
}

// toolsListen is broker b's listen address of target "tools", from its configuration.
func toolsListen(t *testing.T, b *stack.Broker) string {
	t.Helper()
	cfg, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(cfg), "target \""+stack.ToolsTargetName+"\" {")
	if !ok {
		t.Fatalf("%s has no target %q", b.ConfigPath, stack.ToolsTargetName)
	}
	_, rest, ok = strings.Cut(rest, "listen   = \"")
	addr, _, ok2 := strings.Cut(rest, "\"")
	if !ok || !ok2 {
		t.Fatalf("%s: target %q has no listen", b.ConfigPath, stack.ToolsTargetName)
	}
	return addr
}

// toolsPinsPath is the copy of policies/tools.pins.json broker b's configuration names.
func toolsPinsPath(b *stack.Broker) string { return filepath.Join(b.PinsDir, "tools.pins.json") }

// mcpPinCLI runs `svidbroker mcp pin tools --config <b's>` and args as the broker persona (its SVID
// authenticates it to Vault, as the broker's sessions do), and returns its output and exit status.
func mcpPinCLI(t *testing.T, s *stack.Stack, b *stack.Broker, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd, err := s.Command(ctx, stack.PersonaBroker, brokerBin, append([]string{"mcp", "pin", stack.ToolsTargetName, "--config", b.ConfigPath}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("svidbroker mcp pin: %v\n%s", err, out.String())
	return "", -1
}

// TestToolsPinFileMatchesTheServer: policies/tools.pins.json, the pin file of the packs' target
// "tools", pins exactly the tools examples/mcpshop serves: `svidbroker mcp pin tools` through the
// broker's own configuration reports no change (exit 0). Otherwise every call of target "tools" is
// refused; -update-pins accepts the live definitions into the repository's file.
func TestToolsPinFileMatchesTheServer(t *testing.T) {
	ts := toolsShared(t)
	if *updatePins {
		out, code := mcpPinCLI(t, ts.s, ts.tb, "--accept")
		if code != 0 {
			t.Fatalf("mcp pin --accept: exit %d\n%s", code, out)
		}
		fresh, err := os.ReadFile(toolsPinsPath(ts.tb))
		if err != nil {
			t.Fatal(err)
		}
		root, err := stack.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "policies", "tools.pins.json"), fresh, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("accepted into policies/tools.pins.json:\n%s", out)
		return
	}
	out, code := mcpPinCLI(t, ts.s, ts.tb)
	if code != 0 {
		t.Fatalf("policies/tools.pins.json differs from what examples/mcpshop serves (exit %d); review and run this test with -update-pins:\n%s", code, out)
	}
	// Control: the command does report a change, on a copy whose one tool's description differs.
	pins, err := os.ReadFile(toolsPinsPath(ts.tb))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(pins, []byte(`"Read one customer`), []byte(`"Read any customer`), 1)
	if bytes.Equal(bad, pins) {
		t.Fatal("the pin file no longer describes get_customer as the test expects")
	}
	other := filepath.Join(ts.tb.PinsDir, "altered.pins.json")
	if err := os.WriteFile(other, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	broker, err := ts.s.Persona(stack.PersonaBroker)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, int(broker.UID), int(broker.UID)); err != nil {
		t.Fatal(err)
	}
	if out, code := mcpPinCLI(t, ts.s, ts.tb, "--out", other); code != 1 || !strings.Contains(out, "get_customer") {
		t.Errorf("mcp pin against an altered pin file: exit %d, want 1 naming get_customer:\n%s", code, out)
	}
}

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

const good = `{"name":"analyst","framework":"langgraph","owner":"data-team","version":"1.4.2","tools":["sql.query","http.get"]}`

// serve runs the plugin over its real gRPC interface, as spire-agent does.
func serve(t *testing.T, hclConfig string) workloadattestorv1.WorkloadAttestorClient {
	t.Helper()
	wa := new(workloadattestorv1.WorkloadAttestorPluginClient)
	cfg := new(configv1.ConfigServiceClient)
	p := new(Plugin)
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   workloadattestorv1.WorkloadAttestorPluginServer(p),
		PluginClient:   wa,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{cfg},
	})
	if _, err := cfg.Configure(t.Context(), &configv1.ConfigureRequest{HclConfiguration: hclConfig}); err != nil {
		t.Fatal(err)
	}
	return wa
}

// process starts a real process with env and returns its PID.
func process(t *testing.T, env ...string) int32 {
	t.Helper()
	return start(t, t.TempDir(), env)
}

// start starts `sleep 60` in dir with env and returns its PID once the kernel shows env as the process's
// environment. cmd.Start returns when execve has released the parent, which is before the new image's
// environment is in place: in that window /proc/PID/environ reads empty, and an attestation then would
// rightly find no manifest. A workload calling SPIRE is long past its execve, so only a test can hit it.
func start(t *testing.T, dir string, env []string) int32 {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = env
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	want := ""
	for _, kv := range env {
		want += kv + "\x00"
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err == nil && string(got) == want {
			return int32(pid)
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d's environment is %q after 10 s, want %q (%v)", pid, got, want, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func write(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttest(t *testing.T) {
	wa := serve(t, "")
	dir := t.TempDir()
	goodPath := write(t, dir, "good.json", good, 0o644)
	sum := sha256.Sum256([]byte(good))
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(goodPath, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"valid manifest", []string{"AGENT_MANIFEST=" + goodPath}, []string{
			"name:analyst", "owner:data-team", "framework:langgraph", "version:1.4.2", "tool:sql.query", "tool:http.get",
			"manifest-sha256:" + hex.EncodeToString(sum[:]),
		}},
		{"no manifest declared", []string{"PATH=/usr/bin"}, nil},
		{"missing file", []string{"AGENT_MANIFEST=" + filepath.Join(dir, "nope.json")}, nil},
		{"malformed", []string{"AGENT_MANIFEST=" + write(t, dir, "bad.json", `{"name":"x",`, 0o644)}, nil},
		{"unknown field", []string{"AGENT_MANIFEST=" + write(t, dir, "unknown.json", `{"name":"x","owner":"y","nmae":"z"}`, 0o644)}, nil},
		{"missing owner", []string{"AGENT_MANIFEST=" + write(t, dir, "noowner.json", `{"name":"x"}`, 0o644)}, nil},
		{"oversized", []string{"AGENT_MANIFEST=" + write(t, dir, "big.json", `{"name":"x","owner":"y","version":"`+strings.Repeat("1", MaxManifestBytes)+`"}`, 0o644)}, nil},
		{"writable by others", []string{"AGENT_MANIFEST=" + write(t, dir, "open.json", good, 0o666)}, nil},
		{"symlink", []string{"AGENT_MANIFEST=" + link}, nil},
		{"a directory", []string{"AGENT_MANIFEST=" + dir}, nil},
		{"control characters", []string{"AGENT_MANIFEST=" + write(t, dir, "ctl.json", `{"name":"a\u001b[31m","owner":"y"}`, 0o644)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := wa.Attest(t.Context(), &workloadattestorv1.AttestRequest{Pid: process(t, tc.env...)})
			if err != nil {
				t.Fatalf("Attest failed instead of returning no selectors: %v", err)
			}
			got := slices.Clone(resp.SelectorValues)
			want := slices.Clone(tc.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("selectors %q, want %q", got, want)
			}
		})
	}
	t.Run("relative path resolves against the process's working directory", func(t *testing.T) {
		pid := start(t, dir, []string{"AGENT_MANIFEST=good.json"})
		resp, err := wa.Attest(t.Context(), &workloadattestorv1.AttestRequest{Pid: pid})
		if err != nil || !slices.Contains(resp.SelectorValues, "name:analyst") {
			t.Fatalf("selectors %v, %v", resp.GetSelectorValues(), err)
		}
	})
	t.Run("a process that is gone", func(t *testing.T) {
		resp, err := wa.Attest(t.Context(), &workloadattestorv1.AttestRequest{Pid: 1 << 30})
		if err != nil || len(resp.SelectorValues) != 0 {
			t.Fatalf("selectors %v, %v", resp.GetSelectorValues(), err)
		}
	})
}

func TestConfigure(t *testing.T) {
	for cfg, ok := range map[string]bool{
		``:                              true,
		`manifest_env = "MY_MANIFEST"`:  true,
		`max_manifest_bytes = 1024`:     true,
		`max_manifest_bytes = -1`:       false,
		`max_manifest_bytes = 10000000`: false,
		`manifest_env = [`:              false,
		`manfest_env = "X"`:             false,
	} {
		p := new(Plugin)
		_, err := p.Configure(t.Context(), &configv1.ConfigureRequest{HclConfiguration: cfg})
		if (err == nil) != ok {
			t.Errorf("Configure(%q): err = %v, want ok=%v", cfg, err, ok)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{good, `{}`, `{"name":"a","owner":"b"}`, `{"name":"a","owner":"b"} {}`, `[]`, `{"tools":[""]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			return
		}
		for _, s := range selectors(m, data) {
			typ, value, ok := strings.Cut(s, ":")
			if !ok || typ == "" || value == "" {
				t.Fatalf("malformed selector %q", s)
			}
			if err := checkValue(value[strings.LastIndexByte(value, ':')+1:]); err != nil && typ != "manifest-sha256" {
				t.Fatalf("selector %q holds a bad value: %v", s, err)
			}
		}
	})
}

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/credential/vault"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
	"github.com/svidbroker/svidbroker/policies"
)

// demoPlugins are the plugins the demo's broker wires in.
var demoPlugins = config.Plugins{
	Protocols: map[string]config.Protocol{"postgres": postgres.ConfigValidator{}},
	Vault:     vault.ConfigValidator{},
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeRun lays out a stopped run's state directory as the stack does: a configuration naming a CA
// file, a policy directory, and an audit log with its keys, all below stateDir.
func fakeRun(t *testing.T, stateDir string) (configPath string, named map[string]string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(stateDir, "postgres"), 0o755))
	ca := filepath.Join(stateDir, "postgres", "ca.pem")
	must(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))

	policyDir := filepath.Join(stateDir, "svidbroker-policies")
	must(t, os.MkdirAll(policyDir, 0o755))
	must(t, os.WriteFile(filepath.Join(policyDir, "edited.cedar"),
		[]byte(`@id("edited") permit (principal, action == Action::"connect", resource == Target::"shop");`), 0o644))

	auditDir, keys := filepath.Join(stateDir, "svidbroker-audit"), filepath.Join(stateDir, "svidbroker-audit-keys")
	must(t, audit.GenerateKeys(keys, "svidbroker"))
	must(t, os.MkdirAll(auditDir, 0o700))
	mac, err := audit.LoadMACKey(filepath.Join(keys, audit.MACKeyFile))
	must(t, err)
	signer, err := audit.LoadSigner(filepath.Join(keys, audit.SigningKeyFile))
	must(t, err)
	l, err := audit.Open(audit.Config{Dir: auditDir, Chain: "svidbroker", MACKey: mac, Signer: signer})
	must(t, err)
	for i := range 3 {
		must(t, l.Append(audit.Record{Time: time.Now(), Kind: audit.KindSessionStart, Session: "s" + strconv.Itoa(i),
			SPIFFEID: "spiffe://example.org/agent/analyst", Target: "shop"}))
	}
	must(t, l.Close())

	cfg := `trust_domain        = "example.org"
workload_api_socket = "unix://` + stateDir + `/agent/api.sock"
policy {
  dir = "` + policyDir + `"
}
audit {
  dir              = "` + auditDir + `"
  chain            = "svidbroker"
  mac_key_file     = "` + filepath.Join(keys, audit.MACKeyFile) + `"
  signing_key_file = "` + filepath.Join(keys, audit.SigningKeyFile) + `"
}
target "shop" {
  protocol = "postgres"
  listen   = "127.0.0.1:15432"
  backend {
    address  = "127.0.0.1:5432"
    database = "shop"
    user     = "svidbroker"
    ca_file  = "` + ca + `"
  }
}
catalog "shop" {}
`
	configPath = filepath.Join(stateDir, "svidbroker.hcl")
	must(t, os.WriteFile(configPath, []byte(cfg), 0o644))
	return configPath, map[string]string{policyDir: keptPolicies, auditDir: keptAudit, keys: keptKeys}
}

// TestDownKeepsWhatTheAuditAndPolicyCommandsNeed stops a run (its state directory is removed, as the
// stack removes it) and then uses the kept configuration as `svidbroker audit verify --config` and
// `svidbroker policy validate --config` do: it loads, the chain verifies whole, and the policy edit
// is there.
func TestDownKeepsWhatTheAuditAndPolicyCommandsNeed(t *testing.T) {
	demoDir, stateDir := t.TempDir(), t.TempDir()
	configPath, named := fakeRun(t, stateDir)
	// While running, the demo directory links into the state directory.
	must(t, os.Symlink(configPath, filepath.Join(demoDir, keptConfig)))
	must(t, os.Symlink(filepath.Join(stateDir, "svidbroker-policies"), filepath.Join(demoDir, keptPolicies)))

	must(t, keep(demoDir, stateDir, configPath, named))
	must(t, os.RemoveAll(stateDir))

	cfg, err := config.Load(filepath.Join(demoDir, keptConfig), demoPlugins)
	if err != nil {
		t.Fatalf("the kept configuration does not load: %v", err)
	}
	if !strings.HasPrefix(cfg.Audit.Dir, demoDir) || !strings.HasPrefix(cfg.Policy.Dir, demoDir) {
		t.Fatalf("kept paths point outside %s: audit %s, policy %s", demoDir, cfg.Audit.Dir, cfg.Policy.Dir)
	}
	mac, err := audit.LoadMACKey(cfg.Audit.MACKeyFile)
	must(t, err)
	v, err := audit.LoadVerifier(filepath.Join(filepath.Dir(cfg.Audit.SigningKeyFile), audit.VerifierKeyFile))
	must(t, err)
	rep, err := audit.Verify(cfg.Audit.Dir, cfg.Audit.Chain, mac, v)
	must(t, err)
	if !rep.OK() || rep.Records != 4 { // the chain's start record and three sessions
		t.Fatalf("kept chain: %d records, problems %v", rep.Records, rep.Problems)
	}
	ss, err := audit.Sessions(audit.Files(cfg.Audit.Dir, cfg.Audit.Chain), audit.Filter{})
	must(t, err)
	if len(ss) != 3 {
		t.Fatalf("%d sessions in the kept log", len(ss))
	}
	schema, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	must(t, err)
	ps, err := authz.LoadDir(cfg.Policy.Dir, schema)
	if err != nil || len(ps) != 1 || ps[0].ID != "edited" {
		t.Fatalf("kept policies %v, %v", ps, err)
	}
	if st, err := os.Stat(filepath.Join(demoDir, keptKeys, audit.MACKeyFile)); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("kept MAC key %v, %v: must stay private", st, err)
	}
}

// TestUpClearsOnlyWhatARunRecreates: the kept state survives `up`; logs, pid files and personas'
// files do not. A policies link into a dead stack is not taken for kept policies.
func TestUpClearsOnlyWhatARunRecreates(t *testing.T) {
	dir := t.TempDir()
	must(t, markDemoDir(dir))
	for _, name := range []string{keptAudit, keptKeys, keptOther, "logs", "svids"} {
		must(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
	}
	for _, name := range []string{keptConfig, "analyst.env", "demo.pid", "ready", "README.txt", statusFile} {
		must(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
	}
	must(t, os.Symlink(filepath.Join(t.TempDir(), "gone"), filepath.Join(dir, keptPolicies)))
	must(t, clearRuntime(dir))
	entries, err := os.ReadDir(dir)
	must(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if got, want := strings.Join(left, " "), markerFile+" audit audit-keys broker.hcl policies state"; got != want {
		t.Fatalf("left %q, want %q", got, want)
	}
	if policies, auditDir, keys := kept(dir); policies != "" || auditDir == "" || keys == "" {
		t.Fatalf("kept() = %q %q %q", policies, auditDir, keys)
	}
	must(t, os.Remove(filepath.Join(dir, keptPolicies)))
	must(t, os.Mkdir(filepath.Join(dir, keptPolicies), 0o755))
	if policies, _, _ := kept(dir); policies == "" {
		t.Fatal("a kept policy directory is not found")
	}
}

func TestDemoCommandLine(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"--help", []string{"--help"}, 0, "svidbroker-demo status", ""},
		{"-h", []string{"-h"}, 0, "svidbroker-demo down", ""},
		{"help", []string{"help"}, 0, "Usage:", ""},
		{"up -h", []string{"up", "-h"}, 0, "Usage:", ""},
		{"down --help", []string{"down", "--help"}, 0, "--wipe", ""},
		{"status -h", []string{"status", "-h"}, 0, "Usage:", ""},
		{"no command", nil, 2, "", "Usage:"},
		{"unknown command", []string{"stat"}, 2, "", "use up, status, down or jwt"},
		{"jwt -h", []string{"jwt", "-h"}, 0, "--persona NAME", ""},
		{"jwt without a persona", []string{"jwt", "--dir", dir}, 2, "", "usage: svidbroker-demo jwt"},
		{"jwt when stopped", []string{"jwt", "--dir", dir, "--persona", "support"}, 1, "", "is the demo running?"},
		{"unknown flag", []string{"down", "--wype"}, 2, "", "Run 'svidbroker-demo --help'"},
		{"wipe is for down", []string{"up", "--wipe"}, 2, "", "--wipe is for down"},
		{"status when stopped", []string{"status", "--dir", dir}, 0, "The demo is not running", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runMain(tc.args, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tc.stdout, stderr.String(), tc.stderr)
			}
		})
	}
}

// TestJWTUnknownPersona names the personas when asked for another, before running anything.
func TestJWTUnknownPersona(t *testing.T) {
	dir := t.TempDir()
	d, err := newDemo(dir, t.TempDir())
	must(t, err)
	b, err := json.Marshal(workloads{Binary: "/nonexistent", Personas: map[string]workloadPersona{"support": {UID: 30002, GID: 30002}}})
	must(t, err)
	must(t, os.WriteFile(d.path(workloadFile), b, 0o644))
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"jwt", "--dir", dir, "--persona", "admin"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `no persona "admin"`) {
		t.Fatalf("exit %d, stderr %q; want 2 naming the persona", code, stderr.String())
	}
}

// TestStatusShowsComponents reads what a running demo recorded and checks each pid.
func TestStatusShowsComponents(t *testing.T) {
	dir := t.TempDir()
	d, err := newDemo(dir, t.TempDir())
	must(t, err)
	must(t, os.WriteFile(d.path("demo.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644))
	must(t, d.writeStatus(runStatus{PID: os.Getpid(), Started: time.Now(), Components: []component{
		{Name: "spire-server", PID: os.Getpid(), Address: "127.0.0.1:8081", Log: d.path("logs", "spire-server.log")},
		{Name: "svidbroker", PID: 1 << 22, Address: "127.0.0.1:15432 (admin 127.0.0.1:8210)", Log: d.path("logs", "svidbroker.log")},
	}}))
	var out bytes.Buffer
	must(t, d.status(&out))
	for _, want := range []string{
		"The demo is running (pid " + strconv.Itoa(os.Getpid()),
		"spire-server  " + strconv.Itoa(os.Getpid()), "running", "127.0.0.1:8081", d.path("logs", "spire-server.log"),
		"svidbroker", "EXITED", "127.0.0.1:15432 (admin 127.0.0.1:8210)",
		"Logs: " + d.path("logs"),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status does not show %q:\n%s", want, out.String())
		}
	}
}

// TestDownWipeRemovesTheKeptState: with --wipe, nothing stays.
func TestDownWipeRemovesTheKeptState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".demo")
	must(t, markDemoDir(dir))
	must(t, os.MkdirAll(filepath.Join(dir, keptAudit), 0o755))
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"down", "--dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("down: %d %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, keptAudit)); err != nil {
		t.Fatalf("down without --wipe removed the kept audit log: %v", err)
	}
	if !strings.Contains(stdout.String(), "make demo-down WIPE=1") {
		t.Errorf("down does not say how to remove what it kept:\n%s", stdout.String())
	}
	if code := runMain([]string{"down", "--dir", dir, "--wipe"}, &stdout, &stderr); code != 0 {
		t.Fatalf("down --wipe: %d %s", code, stderr.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("down --wipe left %s: %v", dir, err)
	}
}

// TestRunThatDiesWithoutKeepingLosesNothingKept: while a run links broker.hcl and policies into its
// stack, the copies the previous run kept are set aside, not deleted; if the run dies without keeping
// (SIGKILL, out of memory, a reboot), the next up restores them, whether the stack's directory went
// with it or was left behind.
func TestRunThatDiesWithoutKeepingLosesNothingKept(t *testing.T) {
	cases := []struct {
		name      string
		stackGone bool
	}{
		{"stack removed", true},
		{"stack left behind", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			demoDir, state1 := t.TempDir(), t.TempDir()
			must(t, markDemoDir(demoDir))
			configPath, named := fakeRun(t, state1)
			must(t, keep(demoDir, state1, configPath, named)) // the first run's down
			must(t, os.RemoveAll(state1))

			// The second run links into its own stack.
			stack2 := t.TempDir()
			config2, _ := fakeRun(t, stack2)
			policies2 := filepath.Join(stack2, "svidbroker-policies")
			must(t, os.WriteFile(filepath.Join(policies2, "second.cedar"), []byte(`@id("second") forbid (principal, action, resource);`), 0o644))
			must(t, linkLive(demoDir, map[string]string{keptConfig: config2, keptPolicies: policies2}))
			if _, err := os.Stat(filepath.Join(demoDir, keptPolicies, "second.cedar")); err != nil {
				t.Fatalf("policies do not link to the running stack's: %v", err)
			}

			// It dies without keeping.
			if tc.stackGone {
				must(t, os.RemoveAll(stack2))
			}
			restored, err := recoverKept(demoDir) // the next up
			must(t, err)
			if got := strings.Join(restored, " "); got != keptConfig+" "+keptPolicies {
				t.Fatalf("restored %q", got)
			}
			must(t, clearRuntime(demoDir))
			policiesDir, auditDir, keys := kept(demoDir)
			if policiesDir == "" || auditDir == "" || keys == "" {
				t.Fatalf("kept() = %q %q %q after the crash", policiesDir, auditDir, keys)
			}
			if _, err := os.Stat(filepath.Join(policiesDir, "edited.cedar")); err != nil {
				t.Fatalf("the kept policy edit is gone: %v", err)
			}
			if _, err := os.Stat(filepath.Join(policiesDir, "second.cedar")); err == nil {
				t.Fatal("the policies are the dead run's, not the kept ones")
			}
			cfg, err := config.Load(filepath.Join(demoDir, keptConfig), demoPlugins)
			if err != nil {
				t.Fatalf("the kept configuration does not load: %v", err)
			}
			if cfg.Policy.Dir != policiesDir {
				t.Fatalf("kept configuration's policy dir %s, want %s", cfg.Policy.Dir, policiesDir)
			}
			if _, err := os.Stat(filepath.Join(demoDir, keptAside)); !os.IsNotExist(err) {
				t.Fatalf("%s left behind: %v", keptAside, err)
			}
		})
	}
}

// TestRunThatKeepsReplacesTheKeptState: a run that stops normally keeps its own state, and the copies
// set aside when it started go.
func TestRunThatKeepsReplacesTheKeptState(t *testing.T) {
	demoDir, state1 := t.TempDir(), t.TempDir()
	configPath, named := fakeRun(t, state1)
	must(t, keep(demoDir, state1, configPath, named))
	must(t, os.RemoveAll(state1))

	stack2 := t.TempDir()
	config2, named2 := fakeRun(t, stack2)
	policies2 := filepath.Join(stack2, "svidbroker-policies")
	must(t, os.WriteFile(filepath.Join(policies2, "second.cedar"), []byte(`@id("second") forbid (principal, action, resource);`), 0o644))
	must(t, linkLive(demoDir, map[string]string{keptConfig: config2, keptPolicies: policies2}))
	must(t, keep(demoDir, stack2, config2, named2))
	restored, err := recoverKept(demoDir)
	must(t, err)
	if len(restored) != 0 {
		t.Fatalf("restored %v over what the run kept", restored)
	}
	must(t, os.RemoveAll(stack2))
	if _, err := os.Stat(filepath.Join(demoDir, keptPolicies, "second.cedar")); err != nil {
		t.Fatalf("the run's policies were not kept: %v", err)
	}
	if _, err := config.Load(filepath.Join(demoDir, keptConfig), demoPlugins); err != nil {
		t.Fatalf("the kept configuration does not load: %v", err)
	}
	if _, err := os.Stat(filepath.Join(demoDir, keptAside)); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", keptAside, err)
	}
}

// TestUpSaysWhichPoliciesItContinuesWith names the policy directory the next run takes up.
func TestUpSaysWhichPoliciesItContinuesWith(t *testing.T) {
	cases := []struct {
		name string
		dirs []string
		want string
	}{
		{"nothing kept", nil, ""},
		{"audit log only", []string{keptAudit}, "Continuing with the demo's default policies (none were kept), and the audit log kept in "},
		{"policies and audit log", []string{keptPolicies, keptAudit}, "Continuing with the policies kept in {dir}/policies, and the audit log kept in {dir}/audit "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := newDemo(t.TempDir(), t.TempDir())
			must(t, err)
			for _, name := range tc.dirs {
				must(t, os.Mkdir(d.path(name), 0o755))
			}
			got, want := d.continuing(), strings.ReplaceAll(tc.want, "{dir}", d.dir)
			if want == "" && got != "" || !strings.HasPrefix(got, want) {
				t.Fatalf("continuing() = %q, want it to start with %q", got, want)
			}
		})
	}
}

// TestOnlyTheDemosDirectoryIsClearedOrWiped: up marks the directory it creates or finds empty, and
// neither up's clearing nor down (with or without --wipe) touches a non-empty directory without the
// mark, such as a mistyped --dir.
func TestOnlyTheDemosDirectoryIsClearedOrWiped(t *testing.T) {
	cases := []struct {
		name   string
		layout func(t *testing.T, dir string) // nil: the directory does not exist
		ok     bool
	}{
		{"absent", nil, true},
		{"empty", func(t *testing.T, dir string) { must(t, os.Mkdir(dir, 0o755)) }, true},
		{"marked by up", func(t *testing.T, dir string) {
			must(t, markDemoDir(dir))
			must(t, os.MkdirAll(filepath.Join(dir, "logs"), 0o755))
		}, true},
		{"someone's files", func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "thesis"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "thesis", "chapter1.tex"), []byte("x"), 0o644))
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			steps := []struct {
				name string
				do   func(dir string) error
			}{
				{"up's clearing", clearRuntime},
				{"up's marking", markDemoDir},
				{"down", func(dir string) error { return runCode([]string{"down", "--dir", dir}) }},
				{"down --wipe", func(dir string) error { return runCode([]string{"down", "--dir", dir, "--wipe"}) }},
			}
			for _, step := range steps {
				dir := filepath.Join(t.TempDir(), "demo")
				if tc.layout != nil {
					tc.layout(t, dir)
				}
				err := step.do(dir)
				if tc.ok && err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if !tc.ok {
					if err == nil || !strings.Contains(err.Error(), "has no "+markerFile+" file") {
						t.Fatalf("%s: %v, want a refusal naming %s", step.name, err, markerFile)
					}
					if _, err := os.Stat(filepath.Join(dir, "thesis", "chapter1.tex")); err != nil {
						t.Fatalf("%s removed someone's files: %v", step.name, err)
					}
				}
			}
		})
	}
}

// runCode runs the command line and returns its standard error as an error when it fails.
func runCode(args []string) error {
	var stdout, stderr bytes.Buffer
	if code := runMain(args, &stdout, &stderr); code != 0 {
		return fmt.Errorf("exit %d: %s", code, stderr.String())
	}
	return nil
}

// TestMakeDemoDownWipesOnlyWhenWIPEIs1: make demo-down WIPE=0 (or any value but 1) keeps .demo/,
// whether the demo launcher is built (down --wipe) or not (rm -rf).
func TestMakeDemoDownWipesOnlyWhenWIPEIs1(t *testing.T) {
	cases := []struct {
		wipe  string // "-": unset
		wipes bool
	}{
		{"-", false}, {"", false}, {"0", false}, {"no", false}, {"1", true},
	}
	for _, tc := range cases {
		t.Run("WIPE="+tc.wipe, func(t *testing.T) {
			args := []string{"-n", "--no-print-directory", "-C", "../..", "demo-down", "BIN=" + t.TempDir()}
			if tc.wipe != "-" {
				args = append(args, "WIPE="+tc.wipe)
			}
			cmd := exec.Command("make", args...) // -n: prints the recipe, runs nothing
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "WIPE=") && !strings.HasPrefix(kv, "MAKEFLAGS=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("make: %v\n%s", err, out)
			}
			recipe := string(out)
			if !strings.Contains(recipe, "svidbroker-demo down --dir .demo") || !strings.Contains(recipe, "The demo is not running.") {
				t.Fatalf("unexpected recipe:\n%s", recipe)
			}
			// The recipe is one shell line: both branches show.
			if got := []bool{strings.Contains(recipe, "--wipe"), strings.Contains(recipe, "rm -rf .demo")}; got[0] != tc.wipes || got[1] != tc.wipes {
				t.Fatalf("--wipe %v, rm -rf %v; want both %v:\n%s", got[0], got[1], tc.wipes, recipe)
			}
		})
	}
}

// TestProcessOfAnotherUserCountsAsRunning: kill(pid, 0) answers EPERM for a process that exists but
// belongs to another user (a persona's, when status runs unprivileged): it is running, not exited.
func TestProcessOfAnotherUserCountsAsRunning(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"signal allowed", nil, true},
		{"another user's process (EPERM)", syscall.EPERM, true},
		{"no such process (ESRCH)", syscall.ESRCH, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := exists(tc.err); got != tc.want {
				t.Fatalf("exists(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if !alive(os.Getpid()) || !alive(1) {
		t.Fatal("this process or init is not alive")
	}
	if alive(0) || alive(-1) {
		t.Fatal("pid 0 or -1 taken for a process")
	}
}

// Command svidbroker-demo runs svidbroker's local demo: real SPIRE, PostgreSQL and the broker, with one
// agent persona per uid, each holding only its SPIFFE identity.
//
//	svidbroker-demo up            start everything in the background; return when it is ready
//	svidbroker-demo status        which components run, their pids, addresses and logs
//	svidbroker-demo down [--wipe] stop everything the demo started; keep the audit log and policies
//	                              in .demo/ unless --wipe
//	svidbroker-demo jwt --persona NAME   print a JWT-SVID fetched from the Workload API as the persona
//
// `make demo`, `make demo-down` and `make demo-down WIPE=1` call these. State and outputs go to .demo/
// (see README.md).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
	"github.com/svidbroker/svidbroker/test/vault"
)

const usage = `svidbroker-demo: svidbroker's local demo (real SPIRE, PostgreSQL, a Vault-API server and the broker)

Usage:
  svidbroker-demo up     [--dir .demo] [--bin .bin]   start everything in the background; return when ready
  svidbroker-demo status [--dir .demo]                which components run: pids, addresses, logs
  svidbroker-demo down   [--dir .demo] [--wipe]       stop everything; the audit log, its keys, the policies
                                                      and the configuration stay in the directory unless --wipe
  svidbroker-demo jwt    --persona NAME [--audience svidbroker] [--dir .demo]
                                                      print a JWT-SVID the persona's uid fetches from the
                                                      Workload API, for curl -H "Authorization: Bearer ..."

make demo, make demo-down and make demo-down WIPE=1 run these.
`

func main() {
	stack.WorkloadMain() // the demo is also the workload that fetches personas' SVIDs
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "jwt":
		return jwtCmd(args[1:], stdout, stderr)
	case "jwt-fetch": // what jwt runs as the persona
		return jwtFetch(args[1:], stdout, stderr)
	case "up", "down", "status", "run": // run is the background process that up starts
	default:
		fmt.Fprintf(stderr, "svidbroker-demo: unknown command %q: use up, status, down or jwt.\nRun 'svidbroker-demo --help' for their flags.\n", cmd)
		return 2
	}
	fs := flag.NewFlagSet("svidbroker-demo "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", ".demo", "directory for the demo's state and outputs")
	bin := fs.String("bin", ".bin", "directory holding svidbroker, spire-server and spire-agent")
	wipe := fs.Bool("wipe", false, "down: also remove the kept audit log, keys, policies and configuration")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "svidbroker-demo %s: %v\nRun 'svidbroker-demo --help' for the flags.\n", cmd, err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "svidbroker-demo %s: unexpected argument %q\nRun 'svidbroker-demo --help' for the flags.\n", cmd, fs.Arg(0))
		return 2
	}
	if *wipe && cmd != "down" {
		fmt.Fprintf(stderr, "svidbroker-demo %s: --wipe is for down\n", cmd)
		return 2
	}
	d, err := newDemo(*dir, *bin)
	if err == nil {
		switch cmd {
		case "up":
			err = d.up()
		case "down":
			err = d.down(stdout, *wipe)
		case "status":
			err = d.status(stdout)
		case "run":
			err = d.run()
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "svidbroker-demo:", err)
		return 1
	}
	return 0
}

type demo struct {
	dir, bin string
	// api is the shop's HTTPS API; apiListen the broker's http target "api" in front of it. Set by run.
	api       *stack.ShopAPI
	apiListen string
	// mcp is the shop's MCP server; toolsListen the broker's mcp target "tools" in front of it.
	mcp         *stack.MCPShop
	toolsListen string
	// ownPolicies: the policies kept from an earlier run are not this checkout's packs.
	ownPolicies bool
	connects    []*connectProc
	// oidc and console are the approvers' OpenID provider and the broker's console; held is the
	// migrator's psql whose DDL waits for a person. Set by run.
	oidc    *stack.OIDC
	console *stack.Console
	held    *heldProc
	// heldNote tells, at the end of the tour, where the held DDL waits and how to approve it.
	heldNote string
}

func newDemo(dir, bin string) (*demo, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	return &demo{dir: dir, bin: bin}, nil
}

func (d *demo) path(parts ...string) string {
	return filepath.Join(append([]string{d.dir}, parts...)...)
}

// running returns the PID of a live demo process, or 0.
func (d *demo) running() int {
	b, err := os.ReadFile(d.path("demo.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) {
		return 0
	}
	return pid
}

// up starts `run` in the background, in its own session so it outlives make, and waits until it
// reports ready or fails.
func (d *demo) up() error {
	if pid := d.running(); pid != 0 {
		fmt.Printf("The demo is already running (pid %d).\n\n", pid)
		return d.printGuide()
	}
	for _, name := range []string{"svidbroker", "spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(d.bin, name)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make tools build` (or just `make demo`)", name, d.bin)
		}
	}
	if err := markDemoDir(d.dir); err != nil {
		return err
	}
	// What an earlier run kept (the audit log, its keys, the policies) carries into this one.
	restored, err := recoverKept(d.dir)
	if err != nil {
		return err
	}
	if len(restored) > 0 {
		fmt.Printf("The last run ended without keeping its state (killed, or the machine restarted): %s are as the run before it kept them.\n",
			strings.Join(restored, " and "))
	}
	if err := clearRuntime(d.dir); err != nil {
		return err
	}
	if msg := d.continuing(); msg != "" {
		fmt.Println(msg)
	}
	if err := os.MkdirAll(d.path("logs"), 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(d.path("logs", "demo.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "run", "--dir", d.dir, "--bin", d.bin)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	start := time.Now()
	fmt.Println("Starting SPIRE, PostgreSQL and svidbroker ...")
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(d.path("logs", "demo.log"))
			return fmt.Errorf("the demo stopped during start-up (%v):\n%s", err, log)
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := os.Stat(d.path("ready")); err == nil {
			fmt.Printf("Ready in %s.\n\n", time.Since(start).Round(100*time.Millisecond))
			if err := d.printGuide(); err != nil {
				return err
			}
			return d.showReplay()
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	return fmt.Errorf("the demo was not ready within 3 minutes; see %s", d.path("logs"))
}

// continuing says what of an earlier run's kept state the next run takes up, naming the policy
// directory it will run; "" when there is nothing.
func (d *demo) continuing() string {
	policies, auditDir, _ := kept(d.dir)
	if policies == "" && auditDir == "" {
		return ""
	}
	what := "the demo's default policies (none were kept)"
	if policies != "" {
		what = "the policies kept in " + d.rel(policies)
	}
	if auditDir != "" {
		what += ", and the audit log kept in " + d.rel(auditDir)
	}
	return "Continuing with " + what + " (start afresh with: make demo-down WIPE=1)."
}

func (d *demo) printGuide() error {
	b, err := os.ReadFile(d.path("README.txt"))
	if err != nil {
		return err
	}
	fmt.Print(string(b))
	return nil
}

// psql runs one statement with psql as persona, with the environment the demo wrote for it.
func (d *demo) psql(persona, sql string) (string, error) {
	env, err := os.ReadFile(d.path(persona + ".env"))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("psql", "-X", "-c", sql)
	cmd.Env = os.Environ()
	for _, line := range strings.Split(string(env), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tour runs a few sessions through the broker and shows what each persona got: masking, a blocked
// statement, and a statement held for approval and approved through the admin API.
func (d *demo) tour() error {
	const query = "SELECT id, name, email, ssn FROM customers ORDER BY id LIMIT 2"
	for _, step := range []struct{ persona, sql, note string }{
		{stack.PersonaAnalyst, query, "personal data comes back as keyed hashes (joins still work)"},
		{stack.PersonaSupport, query, "personal data comes back partially masked"},
		{stack.PersonaAnalyst, "DELETE FROM orders", "a write the analyst's policies do not permit"},
		{stack.PersonaAnalyst, "SELECT pg_read_file('/etc/passwd')", "a server-side file read: an admin action the baseline forbids"},
	} {
		fmt.Printf("\nAs the %s (%s):\n  $ . .demo/%s.env && psql -c \"%s\"\n", step.persona, step.note, step.persona, step.sql)
		out, err := d.psql(step.persona, step.sql)
		fmt.Print(indent(out))
		if err != nil && !strings.Contains(out, "ERROR:  svidbroker: ") {
			return fmt.Errorf("psql: %w", err)
		}
	}
	// A real schema change: the demo's background process ran it with psql as the migrator, and it
	// waits for a person: it would run under the shop-admin role Cedar picks for the migrator's
	// sessions (the analyst's and support's run as shop-read roles, which could not).
	a, err := d.readApprovers()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The tour logs the approver in (the device flow, as `svidbroker approvals` does) to find the
	// held statement, and to approve the HTTP request it holds below.
	token, err := d.approverToken(ctx, a)
	if err != nil {
		return fmt.Errorf("log the demo approver in: %w", err)
	}
	held, err := waitPending(a.Admin, token, "migration_notes")
	if err != nil {
		return err
	}
	if err := d.httpTour(a.Admin, token); err != nil {
		return err
	}
	if err := d.mcpTour(); err != nil {
		return err
	}
	d.heldNote = fmt.Sprintf("\nAs the migrator (DDL waits for a person's approval; its sessions run as a shop-admin role):\n"+
		"  $ . .demo/migrator.env && psql -c \"%s\"\n"+
		"  The demo ran it: it is held as request %s, and waits for you (up to %s). Approve it\n"+
		"  in the console: %s  (log in as %s; password: sudo cat %s)\n"+
		"  or with the CLI (it prints a URL to log in at):\n"+
		"    .bin/svidbroker approvals approve --admin http://%s --issuer %s \\\n"+
		"        --ca-file %s --reason \"migration notes\" %s\n"+
		"  then psql's answer is in: cat %s\n",
		heldDDL, held.ID, demoApprovalTimeout, a.ConsoleURL, a.Approver, d.rel(d.path(approverPasswordFile)),
		a.Admin, a.Issuer, d.rel(d.path(oidcCAFile)), held.ID, d.rel(d.path("logs", "held-ddl.log")))
	return nil
}

// showReplay runs one session as the analyst with psql and prints its record from the audit log, as
// `svidbroker replay` shows it.
func (d *demo) showReplay() error {
	if d.ownPolicies {
		return nil // the tour shows what the packs decide
	}
	if err := d.tour(); err != nil {
		return err
	}
	const sql = "SELECT id, name, email FROM customers ORDER BY id LIMIT 2"
	b, err := os.ReadFile(d.path("audit.env"))
	if err != nil {
		return err
	}
	dir, chain, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	analyst := audit.Filter{SPIFFEID: "spiffe://example.org/agent/analyst"}
	// The chain holds the tour's sessions, and those of runs it continues: this one is the next.
	before, err := audit.Sessions(audit.Files(dir, chain), analyst)
	if err != nil {
		return err
	}
	fmt.Println("\nA session just ran through the broker as the analyst:")
	fmt.Println("  $ . .demo/analyst.env && psql -c '" + sql + "'")
	out, err := d.psql(stack.PersonaAnalyst, sql)
	fmt.Print(indent(out))
	if err != nil {
		return fmt.Errorf("psql: %w", err)
	}
	var sessions []audit.SessionSummary
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if sessions, err = audit.Sessions(audit.Files(dir, chain), analyst); err == nil &&
			len(sessions) > len(before) && sessions[len(sessions)-1].Ended {
			break
		}
	}
	if len(sessions) <= len(before) {
		return fmt.Errorf("the session is not in the audit log")
	}
	last := sessions[len(sessions)-1].Session
	fmt.Printf("\nIts record in the tamper-evident audit log:\n  $ .bin/svidbroker replay --config .demo/broker.hcl %s\n", last)
	tl, err := audit.Timeline(audit.Files(dir, chain), last)
	if err != nil {
		return err
	}
	for _, e := range tl {
		fmt.Println("  " + audit.Format(e))
	}
	fmt.Println("\nCheck the whole log: .bin/svidbroker audit verify --config .demo/broker.hcl")
	fmt.Print(d.heldNote)
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

// down stops the background process, which stops everything it started and keeps the audit log,
// its keys, the policies and the configuration in the demo directory; with wipe, it removes the
// directory. It refuses a directory that is not the demo's.
func (d *demo) down(w io.Writer, wipe bool) error {
	if err := checkDemoDir(d.dir); err != nil {
		return err
	}
	if pid := d.running(); pid == 0 {
		fmt.Fprintln(w, "The demo is not running.")
	} else {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return err
		}
		if err := waitExit(pid, time.Minute); err != nil {
			return fmt.Errorf("%w; see %s", err, d.path("logs", "demo.log"))
		}
		fmt.Fprintln(w, "The demo has stopped.")
	}
	if !wipe {
		if _, err := recoverKept(d.dir); err != nil {
			return err
		}
	}
	if wipe {
		if err := os.RemoveAll(d.dir); err != nil {
			return err
		}
		fmt.Fprintf(w, "Removed %s: the audit log, its keys, the policies and the logs.\n", d.rel(d.dir))
		return nil
	}
	if _, auditDir, _ := kept(d.dir); auditDir != "" {
		fmt.Fprintf(w, `Kept in %[1]s: the audit log (%[2]s), its keys (%[3]s), the policies with your edits (%[4]s),
and the configuration (%[5]s); the next make demo continues with them. While the demo is down:
  .bin/svidbroker audit verify   --config %[5]s
  .bin/svidbroker audit sessions --config %[5]s
  .bin/svidbroker policy test    %[4]s/analyst   (each pack with its own tests: also baseline, support, migrator)
Remove them with: make demo-down WIPE=1
`, d.rel(d.dir), d.rel(d.path(keptAudit)), d.rel(d.path(keptKeys)), d.rel(d.path(keptPolicies)), d.rel(d.path(keptConfig)))
	}
	return nil
}

// waitExit waits until process pid is gone.
func waitExit(pid int, within time.Duration) error {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !alive(pid) {
			return nil
		}
	}
	return fmt.Errorf("demo process %d did not stop within %s", pid, within)
}

// run is the background process: it owns the stack and keeps the personas' SVID files current.
func (d *demo) run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := os.WriteFile(d.path("demo.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(d.path("demo.pid"))
	defer os.Remove(d.path("ready"))

	startCtx, cancel := context.WithTimeout(ctx, 150*time.Second)
	defer cancel()
	// State lives in a short temporary path: unix socket paths are limited to 107 bytes, and every
	// persona's uid must be able to reach the agent's socket, whatever the permissions above .demo.
	s, err := stack.Start(startCtx, stack.Config{LogDir: d.path("logs"), BinDir: d.bin})
	if err != nil {
		return err
	}
	defer func() {
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop:", err)
		}
	}()
	brokerBin, err := s.Install(filepath.Join(d.bin, "svidbroker"), "svidbroker")
	if err != nil {
		return err
	}
	// Vault: the test server from test/vault, set up as a platform team would; the broker takes a
	// dynamic PostgreSQL credential from it for every session.
	v, err := vault.Start(vault.Options{})
	if err != nil {
		return err
	}
	defer v.Close()
	vcfg := vaultapi.DefaultConfig()
	vcfg.Address = v.Addr
	if err := vcfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: v.CACertPEM}); err != nil {
		return err
	}
	root, err := vaultapi.NewClient(vcfg)
	if err != nil {
		return err
	}
	root.SetToken(v.RootToken)
	if err := s.ConfigureVault(startCtx, root, "5m", "8h"); err != nil {
		return err
	}
	// The shop's HTTPS API, with its own database login, and Vault's engine for its API tokens.
	if d.api, err = s.StartShopAPI(startCtx); err != nil {
		return err
	}
	if err := s.ConfigureAPIVault(startCtx, root, d.api, "5m", "8h"); err != nil {
		return err
	}
	// The shop's MCP server, whose tokens come from the same engine, for the broker's mcp target.
	if d.mcp, err = s.StartMCPShop(startCtx); err != nil {
		return err
	}
	if err := s.ConfigureToolsVault(startCtx, root, d.mcp, "5m", "8h"); err != nil {
		return err
	}
	vaultBlock, err := s.VaultBlock("svidbroker", v.Addr, v.CACertPEM)
	if err != nil {
		return err
	}
	opts := stack.BrokerOptions{Binary: brokerBin, VaultRoles: true, Extra: vaultBlock}
	if d.apiListen, err = freeLoopbackAddr(); err != nil {
		return err
	}
	if d.toolsListen, err = freeLoopbackAddr(); err != nil {
		return err
	}
	opts.Extra += d.api.TargetHCL(d.apiListen, "") + d.mcp.TargetHCL(d.toolsListen) + stack.JWTBlock()
	if err := d.restore(s, &opts); err != nil {
		return err
	}
	if err := writeTestCatalog(d.dir, s.Dir); err != nil {
		return err
	}
	if d.oidc, d.console, err = d.setupApprovers(startCtx, s, &opts); err != nil {
		return err
	}
	defer os.Remove(d.path(approverPasswordFile))
	b, err := s.StartBroker(startCtx, opts)
	if err != nil {
		return err
	}
	// On the way out, once the broker has stopped and before the stack removes its state, the audit
	// log, the policies and the configuration are kept in the demo directory.
	defer func() {
		if err := b.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop svidbroker:", err)
		}
		named := map[string]string{b.PolicyDir: keptPolicies, b.AuditDir: keptAudit, b.AuditKeys: keptKeys}
		if err := keep(d.dir, s.Dir, b.ConfigPath, named); err != nil {
			fmt.Fprintln(os.Stderr, "keep the audit log and policies:", err)
		}
		// Copies that keep replaced go; links keep did not replace give way to the copies set aside.
		if _, err := recoverKept(d.dir); err != nil {
			fmt.Fprintln(os.Stderr, "keep the audit log and policies:", err)
		}
	}()
	// While the demo runs, broker.hcl and policies are the live ones (policy edits reload at once).
	if err := linkLive(d.dir, map[string]string{keptConfig: b.ConfigPath, keptPolicies: b.PolicyDir}); err != nil {
		return err
	}
	personas := []string{stack.PersonaAnalyst, stack.PersonaSupport, stack.PersonaMigrator, stack.PersonaIntruder}
	svidDir := d.path("svids")
	if err := os.MkdirAll(svidDir, 0o700); err != nil {
		return err
	}
	if err := d.refresh(startCtx, s, b, personas, svidDir); err != nil {
		return err
	}
	if err := d.writeWorkloads(startCtx, s, personas); err != nil {
		return err
	}
	if d.connects, err = d.startConnects(startCtx, s, brokerBin, d.apiListen, personas); err != nil {
		return err
	}
	defer func() { stopConnects(d.connects) }() // before the broker stops
	tools, err := d.startConnectsFor(startCtx, s, brokerBin, stack.ToolsTargetName, d.toolsListen, personas)
	if err != nil {
		return err
	}
	d.connects = append(d.connects, tools...)
	if err := os.WriteFile(d.path("admin.addr"), []byte(b.AdminAddr+"\n"), 0o644); err != nil {
		return err
	}
	if err := d.writeApprovers(d.oidc, d.console, b.AdminAddr); err != nil {
		return err
	}
	if !d.ownPolicies { // the packs hold the migrator's DDL; other policies may not
		if d.held, err = d.startHeldDDL(); err != nil {
			return err
		}
		defer d.held.stop()
	}
	if err := os.WriteFile(d.path("audit.env"), []byte(b.AuditDir+"\n"+b.Chain+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(d.path("README.txt"), []byte(d.guide(s, b, v.Addr)), 0o644); err != nil {
		return err
	}
	if err := d.writeStatus(d.runStatus(s, b, v.Addr)); err != nil {
		return err
	}
	defer os.Remove(d.path(statusFile))
	if err := os.WriteFile(d.path("ready"), nil, 0o644); err != nil {
		return err
	}
	fmt.Println("demo ready")

	// X.509-SVIDs live an hour; rewrite the files well before they expire, as an agent would rotate.
	tick := time.NewTicker(10 * time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("stopping")
			return nil
		case <-tick.C:
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := d.refresh(rctx, s, b, personas, svidDir); err != nil {
				fmt.Fprintln(os.Stderr, "refresh SVID files:", err)
			}
			cancel()
		}
		if ok, err := b.Exited(); ok {
			return fmt.Errorf("svidbroker exited: %v", err)
		}
	}
}

// restore has the broker continue what an earlier run kept: its policies become the broker's, and the
// audit chain goes on in a copy of the kept log, with its keys.
func (d *demo) restore(s *stack.Stack, opts *stack.BrokerOptions) error {
	policies, auditDir, auditKeys := kept(d.dir)
	if policies != "" {
		opts.PolicyDir = policies // copied into the stack, where the broker's uid can read it
		if root, err := stack.RepoRoot(); err == nil && !sameTree(policies, filepath.Join(root, "policies", "packs")) {
			d.ownPolicies = true
			fmt.Printf("Keeping the policies of an earlier run in %s: they differ from this checkout's policies/packs,\n"+
				"so the tour below is skipped. `make demo-down WIPE=1` starts again from the packs.\n", rel(policies))
		}
	}
	if auditDir == "" || auditKeys == "" {
		return nil
	}
	opts.AuditDir, opts.AuditKeys = filepath.Join(s.Dir, "kept-audit"), filepath.Join(s.Dir, "kept-audit-keys")
	if err := copyTree(auditDir, opts.AuditDir); err != nil {
		return err
	}
	return copyTree(auditKeys, opts.AuditKeys)
}

// runStatus describes the running demo for `status`.
func (d *demo) runStatus(s *stack.Stack, b *stack.Broker, vaultAddr string) runStatus {
	st := runStatus{PID: os.Getpid(), Started: time.Now(), Components: []component{
		{Name: "demo (and the Vault-API server)", PID: os.Getpid(), Address: vaultAddr, Log: d.path("logs", "demo.log")},
	}}
	addrs := map[string]string{
		"spire-server": s.SPIRE.ServerAddr,
		"spire-agent":  s.SPIRE.Endpoint(),
		"postgres":     fmt.Sprintf("%s:%d", s.Postgres.Host, s.Postgres.Port),
		"svidbroker":   b.Addr + " (admin " + b.AdminAddr + ")",
	}
	if d.api != nil {
		addrs["shopapi"] = d.api.Addr
	}
	if d.mcp != nil {
		addrs["mcpshop"] = d.mcp.URL()
	}
	if d.apiListen != "" {
		addrs["svidbroker"] = b.Addr + ", api " + d.apiListen + ", tools " + d.toolsListen + " (admin " + b.AdminAddr + ")"
	}
	if d.console != nil {
		addrs["svidbroker"] += ", console " + d.console.URL
	}
	if d.oidc != nil {
		addrs["oidc"] = d.oidc.Issuer
	}
	for _, c := range s.Components() {
		st.Components = append(st.Components, component{Name: c.Name, PID: c.PID, Address: addrs[c.Name], Log: c.Log})
	}
	for _, c := range d.connects {
		st.Components = append(st.Components, component{Name: "connect " + c.persona + " (" + c.target + ")", PID: c.cmd.Process.Pid, Address: c.url, Log: c.log})
	}
	if d.held != nil {
		st.Components = append(st.Components, component{Name: "psql as migrator (held DDL)", PID: d.held.cmd.Process.Pid, Log: d.held.log})
	}
	return st
}

// refresh writes each persona's current SVID files and its .env file.
func (d *demo) refresh(ctx context.Context, s *stack.Stack, b *stack.Broker, personas []string, svidDir string) error {
	_, port, _ := strings.Cut(b.Addr, ":")
	for _, name := range personas {
		f, err := s.WriteClientFiles(ctx, name, svidDir)
		if err != nil {
			return err
		}
		p, err := s.Persona(name)
		if err != nil {
			return err
		}
		env := fmt.Sprintf(`# svidbroker demo: the %s agent, %s.
# Source this file, then use any libpq client:  . .demo/%s.env && psql -c 'select 1'
# The only secret is the SVID's private key, issued by SPIRE to this persona's uid and rotated by the
# demo; there is no database password anywhere.
export PGHOST=localhost
export PGPORT=%s
export PGDATABASE=shop
export PGSSLMODE=verify-full
export PGSSLCERT=%s
export PGSSLKEY=%s
export PGSSLROOTCERT=%s
`, name, p.ID, name, port, f.Cert, f.Key, f.RootCert)
		if err := os.WriteFile(d.path(name+".env"), []byte(env), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) guide(s *stack.Stack, b *stack.Broker, vaultAddr string) string {
	_, port, _ := strings.Cut(b.Addr, ":")
	return fmt.Sprintf(`svidbroker demo
  broker      %s  (target "shop", PostgreSQL wire protocol; health: http://%s/readyz)
  SPIRE       trust domain example.org, Workload API %s
  PostgreSQL  %s:%d  (each session logs in with a role Vault creates for it, of the credential role
              Cedar picks for the caller: shop-read, shop-write or shop-admin; the agent never sees it)
  Vault       %s  (Vault-API-compatible test server; the broker logs in with its SVID)
  config      %s
  logs        %s/

Try it (each persona runs as its own uid with its own agent manifest; SPIRE attests both, with the unix
attestor and svidbroker's agent attestor, and the broker checks the entry with SPIRE on every connection):
  . %s/analyst.env && psql -c 'select id, name, email from customers order by id limit 3'
  . %s/support.env && psql -c 'select current_user, count(*) from orders group by 1'   # a Vault-made shop-read role
  . %s/migrator.env && psql -c 'select current_user'   # a shop-admin role: Cedar picks each caller's role
  . %s/intruder.env && psql -c 'select 1'      # refused: attested, but no policy permits it
  psql "host=localhost port=%s dbname=shop sslmode=disable" -c 'select 1'   # refused: TLS with an SVID required
  openssl x509 -in %s/svids/analyst.crt -noout -ext subjectAltName   # the agent's only credential

Policies (Cedar; %s/policies is live: edit a file and it reloads within a second):
  .bin/svidbroker policy can --config %s/broker.hcl --selectors agent:name:support spiffe://example.org/agent/support
  .bin/svidbroker policy explain --config %s/broker.hcl --principal spiffe://example.org/agent/analyst \
      --selectors agent:name:analyst --action column:read-unmasked --target shop --table public.customers --column email

Audit (every session and statement, recorded before it reaches the database):
  .bin/svidbroker audit sessions --config %s/broker.hcl
  .bin/svidbroker replay --config %s/broker.hcl SESSION
  .bin/svidbroker audit verify --config %s/broker.hcl

%s
Status (components, pids, addresses, logs): .bin/svidbroker-demo status
Stop everything with: make demo-down   (keeps the audit log and policies here; WIPE=1 removes them)
`, b.Addr, b.AdminAddr, s.SPIRE.Endpoint(), s.Postgres.Host, s.Postgres.Port, vaultAddr, rel(d.path("broker.hcl")), rel(d.path("logs")),
		rel(d.dir), rel(d.dir), rel(d.dir), rel(d.dir), port, rel(d.dir), rel(d.dir), rel(d.dir), rel(d.dir), rel(d.dir), rel(d.dir), rel(d.dir), d.apiGuide(b))
}

// apiGuide is the guide's part on the shop API, through the broker's http target "api".
func (d *demo) apiGuide(b *stack.Broker) string {
	g := d.httpGuide(d.apiListen) + d.mcpGuide()
	if d.oidc != nil && d.console != nil {
		g += d.approversGuide(approvers{Issuer: d.oidc.Issuer, ConsoleURL: d.console.URL, Admin: b.AdminAddr, Approver: stack.ApproverEmail}, d.held != nil)
	}
	return g
}

// rel is p relative to the working directory when it is below it, else p.
func rel(p string) string {
	if r, err := filepath.Rel(mustGetwd(), p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}

// sameTree reports whether directories a and b hold the same files with the same contents.
func sameTree(a, b string) bool {
	files := func(root string) map[string][]byte {
		out := map[string][]byte{}
		err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, path)
			out[rel] = data
			return err
		})
		if err != nil {
			return nil
		}
		return out
	}
	fa, fb := files(a), files(b)
	return fa != nil && fb != nil && maps.EqualFunc(fa, fb, bytes.Equal)
}

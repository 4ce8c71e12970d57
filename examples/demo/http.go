package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/test/stack"
)

// workloadFile records, for `svidbroker-demo jwt`, how each persona's processes are run: uid, gid
// and environment (the agent's socket, the agent manifest), and the demo binary they can execute.
const workloadFile = "workloads.json"

type workloads struct {
	Binary   string                     `json:"binary"`
	Personas map[string]workloadPersona `json:"personas"`
}

type workloadPersona struct {
	UID uint32   `json:"uid"`
	GID uint32   `json:"gid"`
	Env []string `json:"env"`
}

// writeWorkloads installs the demo binary where every persona's uid can run it and records how
// `svidbroker-demo jwt` runs it as each persona.
func (d *demo) writeWorkloads(ctx context.Context, s *stack.Stack, personas []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin, err := s.Install(self, "svidbroker-demo")
	if err != nil {
		return err
	}
	w := workloads{Binary: bin, Personas: map[string]workloadPersona{}}
	for _, name := range personas {
		cmd, err := s.Command(ctx, name, bin)
		if err != nil {
			return err
		}
		var env []string
		for _, kv := range cmd.Env {
			if strings.HasPrefix(kv, "SPIFFE_ENDPOINT_SOCKET=") || strings.HasPrefix(kv, "AGENT_MANIFEST=") {
				env = append(env, kv)
			}
		}
		c := cmd.SysProcAttr.Credential
		w.Personas[name] = workloadPersona{UID: c.Uid, GID: c.Gid, Env: env}
	}
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(d.path(workloadFile), b, 0o644)
}

const jwtUsage = `usage: svidbroker-demo jwt --persona NAME [--audience svidbroker] [--dir .demo]

Prints a JWT-SVID for the persona, fetched from the SPIRE agent's Workload API by a process running
as that persona's uid (SPIRE attests it like any workload). Use it as a bearer token:
  curl -H "Authorization: Bearer $(.bin/svidbroker-demo jwt --persona support)" ...
It lives 5 minutes. Run it as the user who started the demo (root), which may switch to the uid.
`

// jwtCmd is `svidbroker-demo jwt`: it runs itself as the persona (jwt-fetch) and prints the token.
func jwtCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("svidbroker-demo jwt", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", ".demo", "the demo's directory")
	persona := fs.String("persona", "", "the persona: analyst, support, migrator or intruder (required)")
	audience := fs.String("audience", stack.JWTAudience, "the JWT-SVID's audience: the broker's jwt.audience")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *persona == "" {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, jwtUsage)
			return 0
		}
		fmt.Fprint(stderr, jwtUsage)
		return 2
	}
	b, err := os.ReadFile(filepath.Join(*dir, workloadFile))
	if err != nil {
		fmt.Fprintf(stderr, "svidbroker-demo jwt: %v (is the demo running? make demo)\n", err)
		return 1
	}
	var w workloads
	if err := json.Unmarshal(b, &w); err != nil {
		fmt.Fprintf(stderr, "svidbroker-demo jwt: %s: %v\n", workloadFile, err)
		return 1
	}
	p, ok := w.Personas[*persona]
	if !ok {
		fmt.Fprintf(stderr, "svidbroker-demo jwt: no persona %q: want analyst, support, migrator or intruder\n", *persona)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.Binary, "jwt-fetch", "--audience", *audience)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, p.Env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: p.UID, Gid: p.GID}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(stderr, "svidbroker-demo jwt: as %s: %v: %s\n", *persona, err, strings.TrimSpace(errb.String()))
		return 1
	}
	fmt.Fprint(stdout, out.String())
	return 0
}

// jwtFetch is the process jwtCmd runs as the persona: it asks the Workload API for a JWT-SVID.
func jwtFetch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("svidbroker-demo jwt-fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	audience := fs.String("audience", stack.JWTAudience, "audience")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx) // SPIFFE_ENDPOINT_SOCKET
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer client.Close()
	// The agent answers PermissionDenied until its cache holds this process's entry: retry.
	var first error
	for {
		svid, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: *audience})
		if err == nil {
			fmt.Fprintln(stdout, svid.Marshal())
			return 0
		}
		if first == nil {
			first = err
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "no JWT-SVID from the Workload API: %v\n", first)
			return 1
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// connectProc is one persona's `svidbroker connect --protocol http`, for target "api" or "tools".
type connectProc struct {
	persona, target, url, log string
	cmd                       *exec.Cmd
	done                      chan struct{}
}

// connectKinds says, per target, the file a persona's forwarder URL goes to (PERSONA.EXT) and the
// path its clients use.
var connectKinds = map[string]struct{ ext, path string }{
	stack.APITargetName:   {"http", ""},
	stack.ToolsTargetName: {"mcp", stack.MCPShopPath},
}

// startConnects runs `svidbroker connect --protocol http` as each persona, in front of the broker's
// http listener, and writes .demo/<persona>.http with the base URL it listens at.
func (d *demo) startConnects(ctx context.Context, s *stack.Stack, brokerBin, brokerAddr string, personas []string) ([]*connectProc, error) {
	return d.startConnectsFor(ctx, s, brokerBin, stack.APITargetName, brokerAddr, personas)
}

// startConnectsFor runs `svidbroker connect --protocol http` as each persona, in front of target's
// listener at brokerAddr, and writes the URL its clients use into .demo/<persona>.<ext>: the base URL
// for target "api" (.http), the MCP endpoint for target "tools" (.mcp).
func (d *demo) startConnectsFor(ctx context.Context, s *stack.Stack, brokerBin, target, brokerAddr string, personas []string) ([]*connectProc, error) {
	kind, ok := connectKinds[target]
	if !ok {
		return nil, fmt.Errorf("no forwarder for target %q", target)
	}
	broker, err := s.Persona(stack.PersonaBroker)
	if err != nil {
		return nil, err
	}
	var procs []*connectProc
	for _, name := range personas {
		p, err := d.startConnect(ctx, s, brokerBin, target, brokerAddr, broker.ID.String(), name)
		if err != nil {
			stopConnects(procs)
			return nil, err
		}
		p.url += kind.path
		procs = append(procs, p)
		if err := os.WriteFile(d.path(name+"."+kind.ext), []byte(p.url+"\n"), 0o644); err != nil {
			stopConnects(procs)
			return nil, err
		}
	}
	return procs, nil
}

func (d *demo) startConnect(ctx context.Context, s *stack.Stack, brokerBin, target, brokerAddr, brokerID, persona string) (*connectProc, error) {
	cmd, err := s.Command(context.WithoutCancel(ctx), persona, brokerBin, "connect", "--protocol", "http",
		"--listen", "127.0.0.1:0", "--broker", brokerAddr, "--broker-id", brokerID)
	if err != nil {
		return nil, err
	}
	logName := "connect-" + persona + ".log"
	if target != stack.APITargetName {
		logName = "connect-" + persona + "-" + target + ".log"
	}
	p := &connectProc{persona: persona, target: target, log: d.path("logs", logName), cmd: cmd, done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("svidbroker connect as %s: %w", persona, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	// Its first line on stdout is where it listens, once ready.
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr, ok := <-line:
		if _, _, err := net.SplitHostPort(addr); !ok || err != nil {
			stopConnects([]*connectProc{p})
			return nil, fmt.Errorf("svidbroker connect as %s did not start; see %s", persona, p.log)
		}
		p.url = "http://" + addr
		return p, nil
	case <-time.After(45 * time.Second):
	case <-ctx.Done():
	}
	stopConnects([]*connectProc{p})
	return nil, fmt.Errorf("svidbroker connect as %s was not ready in time; see %s", persona, p.log)
}

// stopConnects ends the forwarders with SIGTERM (they drain), then SIGKILL after a while.
func stopConnects(procs []*connectProc) {
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

// httpGuide is the guide's part on the http target: curl through each persona's forwarder, and with
// a JWT-SVID straight to the broker.
func (d *demo) httpGuide(brokerAddr string) string {
	_, port, _ := strings.Cut(brokerAddr, ":")
	dir := d.rel(d.dir)
	return fmt.Sprintf(`
HTTP (target "api": the shop's HTTPS API, examples/shopapi, behind the broker at %[1]s; the broker
injects an API token Vault leased for the role Cedar picks, api-read or api-write, and the agent never
sees it). Each persona runs svidbroker connect as its uid, which forwards plain HTTP on loopback with
the persona's SVID:
  curl -s $(cat %[2]s/support.http)/v1/customers/1                # email and ssn come back partially masked
  curl -s "$(cat %[2]s/analyst.http)/v1/customers?limit=3"        # the analyst's masks
  curl -s -X DELETE $(cat %[2]s/analyst.http)/v1/orders/70         # refused: the analyst may not delete
  curl -s $(cat %[2]s/intruder.http)/v1/customers/1                # refused: no policy permits it
  curl -s -X DELETE $(cat %[2]s/migrator.http)/v1/orders/71        # held until a person approves it
      (in the console, or with svidbroker approvals: see Approvals below)
With a JWT-SVID from the Workload API instead of a forwarder (svidbroker-demo jwt fetches it as the
persona's uid; it lives 5 minutes):
  curl -s --cacert %[2]s/svids/support-bundle.crt -H "Authorization: Bearer $(.bin/svidbroker-demo jwt --persona support)" \
      https://localhost:%[3]s/v1/customers/1/events
`, brokerAddr, dir, port)
}

// httpTour runs the guide's HTTP requests: a masked field, a refused route and a held request that the
// approver, logged in with token, lets through.
func (d *demo) httpTour(admin, token string) error {
	client := &http.Client{Timeout: 45 * time.Second}
	do := func(persona, method, path string) (string, error) {
		base, err := os.ReadFile(d.path(persona + ".http"))
		if err != nil {
			return "", err
		}
		req, err := http.NewRequest(method, strings.TrimSpace(string(base))+path, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Sprintf("HTTP %s\n%s", resp.Status, strings.TrimSpace(string(b))), err
	}
	for _, step := range []struct{ persona, method, path, note string }{
		{stack.PersonaSupport, "GET", "/v1/customers/1", "email and ssn come back partially masked"},
		{stack.PersonaAnalyst, "DELETE", "/v1/orders/80", "a delete the analyst's policies do not permit"},
	} {
		fmt.Printf("\nAs the %s over HTTP (%s):\n  $ curl -s -X %s $(cat .demo/%s.http)%s\n", step.persona, step.note, step.method, step.persona, step.path)
		out, err := do(step.persona, step.method, step.path)
		if err != nil {
			return fmt.Errorf("%s %s as %s: %w", step.method, step.path, step.persona, err)
		}
		fmt.Print(indent(out))
	}
	const del = "/v1/orders/81"
	fmt.Printf("\nAs the migrator over HTTP (a delete waits for a person's approval):\n  $ curl -s -X DELETE $(cat .demo/migrator.http)%s\n", del)
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := do(stack.PersonaMigrator, "DELETE", del)
		done <- result{out, err}
	}()
	req, err := waitPending(admin, token, del)
	if err != nil {
		return err
	}
	if err := approve(admin, token, req.ID, "the demo's tour"); err != nil {
		return err
	}
	fmt.Printf("  (held as request %s; %s, logged in with the device flow, approved it as\n"+
		"   .bin/svidbroker approvals approve --admin http://%s ... %s does)\n", req.ID, stack.ApproverEmail, admin, req.ID)
	r := <-done
	if r.err != nil {
		return fmt.Errorf("DELETE %s as the migrator: %w", del, r.err)
	}
	fmt.Print(indent(r.out))
	return nil
}

// freeLoopbackAddr returns a loopback address with a port free at the time of the call.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

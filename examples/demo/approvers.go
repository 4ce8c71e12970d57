package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	approveroidc "github.com/svidbroker/svidbroker/broker/approval/oidc"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
	"github.com/svidbroker/svidbroker/test/stack"
)

// Files the running demo writes for its approvers (cleared by the next up, removed by down --wipe).
const (
	// approverPasswordFile holds the demo approver's password, mode 0600: only the user who ran the
	// demo (root) reads it, not the personas' uids.
	approverPasswordFile = "approver.password"
	// approversFile records where approvers log in and decide, for the tour and the guide.
	approversFile = "approvers.json"
	// oidcCAFile is the provider's CA certificate, for `svidbroker approvals --ca-file`.
	oidcCAFile = "oidc-ca.pem"
	// heldDDL is the migrator's statement the demo leaves held for a person to approve.
	heldDDL = "CREATE TABLE IF NOT EXISTS migration_notes (note text)"
	// demoApprovalTimeout is how long a held operation waits in the demo: time to log in and decide.
	demoApprovalTimeout = "30m"
)

// approvers is what approversFile records.
type approvers struct {
	Issuer     string `json:"issuer"`
	ConsoleURL string `json:"console_url"`
	Admin      string `json:"admin"`
	Approver   string `json:"approver"`
}

// setupApprovers starts the test OpenID provider with the demo's people, and adds to opts the
// console and the approvers block (approver = "oidc", a journal in the stack): people approve held
// operations, in the console or with `svidbroker approvals`.
func (d *demo) setupApprovers(ctx context.Context, s *stack.Stack, opts *stack.BrokerOptions) (*stack.OIDC, *stack.Console, error) {
	addr, err := stack.ConsolePort()
	if err != nil {
		return nil, nil, err
	}
	o, err := s.StartOIDC(ctx, stack.OIDCOptions{RedirectURIs: []string{stack.ConsoleCallback(addr)}})
	if err != nil {
		return nil, nil, err
	}
	console, err := s.ConsoleFor("demo", addr, o)
	if err != nil {
		return nil, nil, err
	}
	state := filepath.Join(s.Dir, "approvals")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, nil, err
	}
	if os.Geteuid() == 0 {
		broker, err := s.Persona(stack.PersonaBroker)
		if err != nil {
			return nil, nil, err
		}
		if err := os.Chown(state, int(broker.UID), int(broker.UID)); err != nil {
			return nil, nil, err
		}
	}
	opts.Approver, opts.ApprovalTimeout = "oidc", demoApprovalTimeout
	opts.Extra += fmt.Sprintf(`
# People approve held operations: they log in at the OpenID provider, and Cedar's approve action
# says who may decide what. Pending requests and grants are kept in a journal.
approvers {
  store     = "journal"
  state_dir = %q
  oidc {
    issuer    = %q
    client_id = %q
    ca_file   = %q
  }
}
`, state, o.Issuer, stack.OIDCCLIClient, o.CAFile) + console.HCL
	u, err := o.User(stack.ApproverEmail)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(d.path(approverPasswordFile), []byte(u.Password+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	ca, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(d.path(oidcCAFile), ca, 0o644); err != nil {
		return nil, nil, err
	}
	return o, console, nil
}

// writeApprovers records where approvers log in and decide, once the broker runs.
func (d *demo) writeApprovers(o *stack.OIDC, c *stack.Console, admin string) error {
	b, err := json.MarshalIndent(approvers{Issuer: o.Issuer, ConsoleURL: c.URL, Admin: admin, Approver: stack.ApproverEmail}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(d.path(approversFile), b, 0o644)
}

func (d *demo) readApprovers() (approvers, error) {
	var a approvers
	b, err := os.ReadFile(d.path(approversFile))
	if err == nil {
		err = json.Unmarshal(b, &a)
	}
	return a, err
}

// heldProc is the migrator's psql whose DDL waits for a person's approval.
type heldProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startHeldDDL runs heldDDL with psql as the migrator, in the background: its statement is held
// until a person approves or denies it (or demoApprovalTimeout passes); its output goes to a log.
func (d *demo) startHeldDDL() (*heldProc, error) {
	env, err := os.ReadFile(d.path(stack.PersonaMigrator + ".env"))
	if err != nil {
		return nil, err
	}
	h := &heldProc{log: d.path("logs", "held-ddl.log"), done: make(chan struct{})}
	logf, err := os.Create(h.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	h.cmd = exec.Command("psql", "-X", "-c", heldDDL)
	h.cmd.Env = os.Environ()
	for _, line := range strings.Split(string(env), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			h.cmd.Env = append(h.cmd.Env, kv)
		}
	}
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("psql as the migrator: %w", err)
	}
	go func() { _ = h.cmd.Wait(); close(h.done) }()
	return h, nil
}

// stop ends the psql if it still waits.
func (h *heldProc) stop() {
	if h == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

// approverToken logs the demo approver in at the provider with the device flow, as
// `svidbroker approvals` does, entering the password from its file on the provider's device page,
// and returns the ID token.
func (d *demo) approverToken(ctx context.Context, a approvers) (string, error) {
	pw, err := os.ReadFile(d.path(approverPasswordFile))
	if err != nil {
		return "", err
	}
	v, err := approveroidc.New(ctx, approveroidc.Config{IssuerURL: a.Issuer, ClientID: stack.OIDCCLIClient, CAFile: d.path(oidcCAFile)})
	if err != nil {
		return "", err
	}
	login, err := v.StartDevice(ctx)
	if err != nil {
		return "", err
	}
	client, err := caClient(d.path(oidcCAFile))
	if err != nil {
		return "", err
	}
	if _, err := oidcprovider.NewBrowser(client, "").ResolveDevice(ctx, login.VerificationURIComplete, a.Approver,
		strings.TrimSpace(string(pw)), true); err != nil {
		return "", fmt.Errorf("log %s in at the provider: %w", a.Approver, err)
	}
	_, raw, err := v.PollDeviceToken(ctx, login)
	return raw, err
}

// caClient is an HTTPS client that trusts the CA in file only.
func caClient(file string) (*http.Client, error) {
	ca, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", file)
	}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// waitPending polls the approvals API with token until a pending request whose statement contains
// what appears.
func waitPending(admin, token, what string) (approval.Request, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+admin+"/approvals", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		var reqs []approval.Request
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			last = fmt.Errorf("GET /approvals: %s: %s", resp.Status, strings.TrimSpace(string(b)))
		} else {
			last = json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&reqs)
		}
		resp.Body.Close()
		for _, r := range reqs {
			if strings.Contains(r.Statement, what) {
				return r, nil
			}
		}
	}
	return approval.Request{}, fmt.Errorf("no approval request for %q appeared (last: %v)", what, last)
}

// approve approves request id through the approvals API, as the person whose ID token this is.
func approve(admin, token, id, reason string) error {
	body, _ := json.Marshal(map[string]string{"reason": reason})
	req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/approvals/"+id+"/approve", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("approve %s: %s: %s", id, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// approversGuide is the guide's part on approvals: the console, the approver's login, and the CLI.
func (d *demo) approversGuide(a approvers, held bool) string {
	dir := d.rel(d.dir)
	waits := fmt.Sprintf("The migrator's statement %q waits there now.", heldDDL)
	if !held {
		waits = "The policies kept from an earlier run decide what is held."
	}
	return fmt.Sprintf(`
Approvals (policy.approver = "oidc"): people log in at the demo's OpenID provider (%[1]s), and Cedar's
approve action decides who may decide what (the packs: the dba group approves the migrator's DDL and
API writes). %[6]s
  Console     %[2]s   (a test certificate: accept it in the browser, or curl -k)
  Approver    %[3]s, password: sudo cat %[4]s/%[5]s   (mode 0600, root's: the agents' uids cannot read it)
  CLI         .bin/svidbroker approvals list --admin http://%[7]s --issuer %[1]s --ca-file %[4]s/%[8]s
              .bin/svidbroker approvals approve --admin http://%[7]s --issuer %[1]s --ca-file %[4]s/%[8]s \
                  --reason "migration notes" REQUEST_ID
              (it prints a URL: open it, log in as the approver, allow; --token-file FILE keeps the login)
  The held psql's output: %[4]s/logs/held-ddl.log
`, a.Issuer, a.ConsoleURL, a.Approver, dir, approverPasswordFile, waits, a.Admin, oidcCAFile)
}

package stack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	approveroidc "github.com/svidbroker/svidbroker/broker/approval/oidc"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

// The test OpenID provider (test/oidc, run as svidbroker-oidc) and its demo registrations.
const (
	// OIDCUID is the uid the provider runs as when the stack runs as root: no persona's, so no agent
	// can read its users' passwords.
	OIDCUID = 30102
	// OIDCConsoleClient is the broker console's confidential client; OIDCCLIClient the public client
	// of `svidbroker approvals` (device flow).
	OIDCConsoleClient = "svidbroker-console"
	OIDCCLIClient     = "svidbroker-cli"
	// DefaultConsoleRedirect is the console's callback when OIDCOptions.RedirectURIs is empty.
	DefaultConsoleRedirect = "https://127.0.0.1:8443/oidc/callback"
)

// Demo people. Approver may approve (groups dba and security); Alice is an engineer outside the
// approving groups; Owner owns the demo's agent and so may not approve its requests.
const (
	ApproverEmail = "approver@example.com"
	AliceEmail    = "alice@example.com"
	OwnerEmail    = "owner@example.com"
)

// DemoUsers returns the demo's people, each with a fresh random password.
func DemoUsers() []oidcprovider.User {
	return []oidcprovider.User{
		{Username: ApproverEmail, Password: randomPassword(), Email: ApproverEmail, EmailVerified: true, Name: "Ada Approver", Groups: []string{"dba", "security"}},
		{Username: AliceEmail, Password: randomPassword(), Email: AliceEmail, EmailVerified: true, Name: "Alice Engineer", Groups: []string{"engineering"}},
		{Username: OwnerEmail, Password: randomPassword(), Email: OwnerEmail, EmailVerified: true, Name: "Otto Owner", Groups: []string{}},
	}
}

// OIDCOptions says how to start the provider. The zero value starts it with DemoUsers, the console
// client for DefaultConsoleRedirect and the CLI client, and 5-minute tokens.
type OIDCOptions struct {
	// Name names the component and its log (Name.log). Default "oidc"; give a second provider another.
	Name string
	// Users may log in. Nil means DemoUsers().
	Users []oidcprovider.User
	// RedirectURIs are the console client's callbacks. Empty means DefaultConsoleRedirect.
	RedirectURIs []string
	// ExtraClients are registered beside the console and CLI clients.
	ExtraClients []oidcprovider.Client
	// IDTokenLifetime is the ID token lifetime as a Go duration. Default "5m".
	IDTokenLifetime string
	// DevicePollInterval is the device flow's poll interval in whole seconds ("1s"). Default "1s".
	DevicePollInterval string
}

// OIDC is a running svidbroker-oidc.
type OIDC struct {
	// Issuer is its issuer URL, https://127.0.0.1:port.
	Issuer string
	// Addr is its host:port.
	Addr string
	// CAFile is the PEM CA that signed its certificate, for 127.0.0.1 and localhost.
	CAFile string
	// ConsoleSecretFile holds the console client's secret, readable by the stack's user only.
	ConsoleSecretFile string
	// Users are the people who may log in, with their passwords (print them for the demo).
	Users []oidcprovider.User

	proc *process
}

// StartOIDC runs svidbroker-oidc (built by `make build`) on a free loopback port with a certificate
// from a CA made for it. Its configuration, passwords and client secret included, goes into a
// directory only its uid can read. It returns once discovery answers over verified TLS.
func (s *Stack) StartOIDC(ctx context.Context, opts OIDCOptions) (*OIDC, error) {
	if opts.Name == "" {
		opts.Name = "oidc"
	}
	if opts.Users == nil {
		opts.Users = DemoUsers()
	}
	if len(opts.RedirectURIs) == 0 {
		opts.RedirectURIs = []string{DefaultConsoleRedirect}
	}
	if opts.DevicePollInterval == "" {
		opts.DevicePollInterval = "1s"
	}
	src, err := tool(s.binDir, "svidbroker-oidc", "build")
	if err != nil {
		return nil, err
	}
	bin, err := s.Install(src, "svidbroker-oidc")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	o := &OIDC{Addr: "127.0.0.1:" + strconv.Itoa(port), Users: opts.Users,
		CAFile: filepath.Join(s.Dir, opts.Name+"-ca.pem"), ConsoleSecretFile: filepath.Join(s.Dir, opts.Name+"-console-secret")}
	o.Issuer = "https://" + o.Addr
	secret := randomPassword()
	cfg := oidcprovider.Config{
		Users: opts.Users,
		Clients: append([]oidcprovider.Client{
			{ID: OIDCConsoleClient, Secret: secret, Type: "web", RedirectURIs: opts.RedirectURIs},
			{ID: OIDCCLIClient, Type: "native"},
		}, opts.ExtraClients...),
		IDTokenLifetime: opts.IDTokenLifetime, DevicePollInterval: opts.DevicePollInterval,
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	sc, err := newServerCert("localhost")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(o.CAFile, sc.caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if err := os.WriteFile(o.ConsoleSecretFile, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	dir := filepath.Join(s.Dir, opts.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	for name, b := range map[string][]byte{"server.crt": sc.certPEM, "server.key": sc.keyPEM, "config.json": cfgJSON} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	cmd := exec.Command(bin, "--listen", o.Addr, "--cert", filepath.Join(dir, "server.crt"),
		"--key", filepath.Join(dir, "server.key"), "--config", filepath.Join(dir, "config.json"))
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	if os.Geteuid() == 0 {
		if err := ChownTree(dir, OIDCUID, OIDCUID); err != nil {
			return nil, err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: OIDCUID, Gid: OIDCUID}}
	}
	if o.proc, err = s.launch(opts.Name, cmd, syscall.SIGTERM); err != nil {
		return nil, err
	}
	client, err := o.Client()
	if err != nil {
		return nil, err
	}
	discovery := o.Issuer + "/.well-known/openid-configuration"
	if err := waitFor(ctx, o.proc, "GET "+discovery, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, discovery, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("discovery: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return o, nil
}

// Client returns an HTTPS client that trusts the provider's CA only.
func (o *OIDC) Client() (*http.Client, error) {
	ca, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("stack: no certificate in %s", o.CAFile)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// ConsoleConfig is the broker's relying-party configuration for the console client, whose callback
// is redirectURL (one of OIDCOptions.RedirectURIs).
func (o *OIDC) ConsoleConfig(redirectURL string) approveroidc.Config {
	return approveroidc.Config{IssuerURL: o.Issuer, ClientID: OIDCConsoleClient, ClientSecretFile: o.ConsoleSecretFile,
		RedirectURL: redirectURL, CAFile: o.CAFile}
}

// CLIConfig is the relying-party configuration of `svidbroker approvals`: the public client, for
// the device flow.
func (o *OIDC) CLIConfig() approveroidc.Config {
	return approveroidc.Config{IssuerURL: o.Issuer, ClientID: OIDCCLIClient, CAFile: o.CAFile}
}

// User returns the user with this username (and so their password).
func (o *OIDC) User(username string) (oidcprovider.User, error) {
	for _, u := range o.Users {
		if u.Username == username {
			return u, nil
		}
	}
	return oidcprovider.User{}, errors.New("stack: the provider has no user " + username)
}

// Stop ends the provider with SIGTERM and waits for it (the stack's Close does too).
func (o *OIDC) Stop() error { return o.proc.stop() }

// LogPath is the file the provider's output goes to.
func (o *OIDC) LogPath() string { return o.proc.logPath }

// PID is the provider process's ID.
func (o *OIDC) PID() int { return o.proc.cmd.Process.Pid }

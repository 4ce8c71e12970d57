package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BrokerOptions configure a broker run against the stack.
type BrokerOptions struct {
	// Name tells brokers on one stack apart: it names the log file (LogDir/Name.log) and the default
	// configuration file (Dir/Name.hcl). Default "svidbroker".
	Name string
	// Binary is the svidbroker executable. Required.
	Binary string
	// ConfigPath is where the generated configuration is written. Default Dir/Name.hcl.
	ConfigPath string
	// Allow lists the personas that may connect to target "shop". Nil means analyst and support.
	Allow []string
	// Extra is appended to the generated configuration, for tests of other settings.
	Extra string
}

// Broker is a running svidbroker process.
type Broker struct {
	// ConfigPath is the configuration it runs with.
	ConfigPath string
	// Addr is target "shop"'s PostgreSQL listener; AdminAddr serves /healthz and /readyz.
	Addr, AdminAddr string
	proc            *process
}

// StartBroker writes a configuration for the stack (target "shop" in front of the stack's PostgreSQL,
// with the broker's SVID as its backend credential) and runs svidbroker serve as the broker persona,
// so that SPIRE attests it like any workload. It returns once /readyz answers.
func (s *Stack) StartBroker(ctx context.Context, opts BrokerOptions) (*Broker, error) {
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("stack: svidbroker binary: %w (run `make build`)", err)
	}
	if opts.Name == "" {
		opts.Name = "svidbroker"
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(s.Dir, opts.Name+".hcl")
	}
	if opts.Allow == nil {
		opts.Allow = []string{PersonaAnalyst, PersonaSupport}
	}
	var ids []string
	for _, name := range opts.Allow {
		p, err := s.Persona(name)
		if err != nil {
			return nil, err
		}
		ids = append(ids, strconv.Quote(p.ID.String()))
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &Broker{ConfigPath: opts.ConfigPath, Addr: "127.0.0.1:" + strconv.Itoa(listen), AdminAddr: "127.0.0.1:" + strconv.Itoa(admin)}
	hcl := fmt.Sprintf(`# svidbroker configuration for the local stack, written by test/stack.
trust_domain        = %q
workload_api_socket = %q

log {
  level = "debug"
}

admin {
  listen = %q
}

# What SPIRE attested about each caller (entry selectors, node) is looked up on the server's API, with
# the broker's own SVID; the broker's entry is an admin entry.
spire_server {
  address   = %q
  cache_ttl = "2s"
}

target "shop" {
  protocol = "postgres"
  listen   = %q

  # Until Cedar policies arrive, exactly these workloads may connect.
  allow_spiffe_ids = [%s]

  backend {
    address     = "%s:%d"
    database    = "shop"
    user        = %q
    # The broker's own X.509-SVID is its credential: PostgreSQL trusts SPIRE's CA for this role.
    auth        = "svid"
    ca_file     = %q
    server_name = "localhost"
  }
}
%s`, TrustDomain.Name(), s.SPIRE.Endpoint(), b.AdminAddr, s.SPIRE.ServerAddr, b.Addr, strings.Join(ids, ", "),
		s.Postgres.Host, s.Postgres.Port, BrokerDBRole, s.Postgres.CAPath, opts.Extra)
	if err := os.WriteFile(opts.ConfigPath, []byte(hcl), 0o644); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	cmd, err := s.Command(context.WithoutCancel(ctx), PersonaBroker, opts.Binary, "serve", "--config", opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if b.proc, err = s.launch(opts.Name, cmd, syscall.SIGTERM); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if err := waitFor(ctx, b.proc, "/readyz on "+b.AdminAddr, func(ctx context.Context) error {
		resp, err := client.Get("http://" + b.AdminAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		return nil, err
	}
	return b, nil
}

// Stop ends the broker with SIGTERM (drain, then exit) and waits for it.
func (b *Broker) Stop() error { return b.proc.stop() }

// Exited reports whether the broker process has exited, and with what error.
func (b *Broker) Exited() (bool, error) { return b.proc.exited() }

// ClientFiles are a persona's SVID files as libpq reads them.
type ClientFiles struct {
	Cert, Key, RootCert string
}

// WriteClientFiles fetches the persona's current X.509-SVID through a real workload process and writes
// it for libpq: the SVID chain (sslcert), its key (sslkey, 0600) and the trust bundle (sslrootcert),
// which verifies the broker's SVID.
func (s *Stack) WriteClientFiles(ctx context.Context, persona, dir string) (*ClientFiles, error) {
	got, err := s.FetchSVIDs(ctx, persona, "")
	if err != nil {
		return nil, err
	}
	f := &ClientFiles{
		Cert:     filepath.Join(dir, persona+".crt"),
		Key:      filepath.Join(dir, persona+".key"),
		RootCert: filepath.Join(dir, persona+"-bundle.crt"),
	}
	for path, b := range map[string][]byte{f.Cert: got.CertPEM, f.Key: got.KeyPEM, f.RootCert: got.BundlePEM} {
		// Write and rename, so that a client never reads a half-written key during rotation.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	return f, nil
}

package stack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// shopServer says how to run one of the shop's upstreams (the shop API, the MCP shop): a command of
// `make build` that takes --listen, --cert, --key and --db-file, as its own uid, with its own login
// to database "shop".
type shopServer struct {
	name   string // the binary, svidbroker-<name>, and the process's and its files' name
	uid    uint32
	dbRole string
	schema string   // the upstream's own grants, run after the API schema (setupAPISchema)
	args   []string // more flags
}

// startShopServer sets up sv's schema and login, writes its certificate and its database password into
// a directory only its uid can read, runs it, and waits until /healthz answers over verified TLS. It
// returns the server's address, the CA file its certificate chains to, and its process.
func (s *Stack) startShopServer(ctx context.Context, sv shopServer) (addr, caFile string, proc *process, err error) {
	src, err := tool(s.binDir, "svidbroker-"+sv.name, "build")
	if err != nil {
		return "", "", nil, err
	}
	bin, err := s.Install(src, "svidbroker-"+sv.name)
	if err != nil {
		return "", "", nil, err
	}
	pw := randomPassword()
	if err := s.setupAPISchema(ctx, sv.schema, sv.dbRole, pw); err != nil {
		return "", "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", "", nil, err
	}
	addr, caFile = "127.0.0.1:"+strconv.Itoa(port), filepath.Join(s.Dir, sv.name+"-ca.pem")
	sc, err := newServerCert("localhost")
	if err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(caFile, sc.caPEM, 0o644); err != nil {
		return "", "", nil, fmt.Errorf("stack: %w", err)
	}
	dir := filepath.Join(s.Dir, sv.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", nil, fmt.Errorf("stack: %w", err)
	}
	pg := s.Postgres
	files := map[string][]byte{
		"server.crt": sc.certPEM, "server.key": sc.keyPEM,
		"db.conn": fmt.Appendf(nil, "host=%s port=%d dbname=shop user=%s password=%s sslmode=verify-full sslrootcert=%s\n",
			pg.Host, pg.Port, sv.dbRole, pw, pg.CAPath),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", "", nil, fmt.Errorf("stack: %w", err)
		}
	}
	if err := ChownTree(dir, int(sv.uid), int(sv.uid)); err != nil {
		return "", "", nil, err
	}
	args := append([]string{"--listen", addr, "--cert", filepath.Join(dir, "server.crt"),
		"--key", filepath.Join(dir, "server.key"), "--db-file", filepath.Join(dir, "db.conn")}, sv.args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: sv.uid, Gid: sv.uid}}
	if proc, err = s.launch(sv.name, cmd, syscall.SIGTERM); err != nil {
		return "", "", nil, err
	}
	client, err := caClient(caFile, 10*time.Second)
	if err != nil {
		return "", "", nil, err
	}
	if err := waitFor(ctx, proc, "GET https://"+addr+"/healthz", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/healthz", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return "", "", nil, err
	}
	return addr, caFile, proc, nil
}

// caClient returns an HTTPS client that trusts caFile's certificates only; timeout 0 sets none.
func caClient(caFile string, timeout time.Duration) (*http.Client, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("stack: no certificate in %s", caFile)
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

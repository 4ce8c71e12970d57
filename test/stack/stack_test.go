package stack

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestMain(m *testing.M) {
	WorkloadMain()
	code := m.Run()
	if shared.stack != nil {
		if err := shared.stack.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stack: close:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// shared is one stack for the tests that only read from it.
var shared struct {
	stack *Stack
	err   error
}

func sharedStack(t *testing.T) *Stack {
	t.Helper()
	if shared.stack == nil && shared.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.stack, shared.err = Start(ctx, Config{})
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.stack
}

func TestMissingToolSaysMakeTools(t *testing.T) {
	_, err := Start(t.Context(), Config{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make tools") || !strings.Contains(err.Error(), "spire-server") {
		t.Fatalf("want an error naming spire-server and `make tools`, got %v", err)
	}
}

func TestFailedComponentNamedWithLogTail(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("flaky", exec.Command("sh", "-c", "echo first; echo boom-line; exit 3"),
		filepath.Join(dir, "flaky.log"), syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	err = waitFor(t.Context(), p, "readiness", func(context.Context) error { return errors.New("not yet") })
	if err == nil {
		t.Fatal("waitFor succeeded for a process that exited")
	}
	for _, want := range []string{"flaky did not start", "boom-line", "exit status 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestStackStartsAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	s, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stack started in %s", time.Since(begin).Round(time.Millisecond))
	procs, err := Descendants(s.PIDs())
	if err != nil {
		t.Fatal(err)
	}
	// spire-server, spire-agent, and postgres with its background workers.
	if len(procs) < 4 {
		t.Fatalf("want at least 4 live processes under the stack, found %v", procs)
	}
	dir := s.Dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range procs {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Errorf("process %d (%s) still exists after Close: %v", pid, cmdline, err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state directory %s still exists after Close: %v", dir, err)
	}
}

func TestWorkloadGetsItsOwnX509AndJWTSVID(t *testing.T) {
	s := sharedStack(t)
	const audience = "svidbroker-test"
	for _, name := range []string{PersonaAnalyst, PersonaSupport} {
		t.Run(name, func(t *testing.T) {
			want, err := s.Persona(name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.FetchSVIDs(t.Context(), name, audience)
			if err != nil {
				t.Fatal(err)
			}
			if got.UID != int(want.UID) || got.PID == os.Getpid() {
				t.Fatalf("workload ran as uid %d pid %d, want uid %d in a separate process", got.UID, got.PID, want.UID)
			}

			svid, err := x509svid.Parse(got.CertPEM, got.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if svid.ID != want.ID {
				t.Fatalf("X.509-SVID is %s, want %s", svid.ID, want.ID)
			}
			// The SVID chains to SPIRE's CA as written at start, and to the bundle the workload got.
			roots := x509.NewCertPool()
			if b, err := os.ReadFile(s.SPIRE.BundlePath); err != nil || !roots.AppendCertsFromPEM(b) {
				t.Fatalf("read bundle: %v", err)
			}
			inter := x509.NewCertPool()
			for _, c := range svid.Certificates[1:] {
				inter.AddCert(c)
			}
			if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatalf("X.509-SVID does not verify against SPIRE's bundle: %v", err)
			}

			jb, err := jwtbundle.Parse(TrustDomain, got.JWTBundle)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwtsvid.ParseAndValidate(got.JWT, jb, []string{audience})
			if err != nil {
				t.Fatalf("JWT-SVID does not validate: %v", err)
			}
			if tok.ID != want.ID {
				t.Fatalf("JWT-SVID subject is %s, want %s", tok.ID, want.ID)
			}
			if iss, _ := tok.Claims["iss"].(string); iss != "https://oidc-discovery.example.org" {
				t.Fatalf("JWT-SVID iss = %q, want the jwt_issuer of spire-conf/dev", iss)
			}
			if _, err := jwtsvid.ParseAndValidate(got.JWT, jb, []string{"someone-else"}); err == nil {
				t.Fatal("JWT-SVID validated for an audience it was not issued for")
			}
		})
	}
}

func TestUnregisteredUIDGetsNoSVID(t *testing.T) {
	s := sharedStack(t)
	bin, err := s.workloadBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET="+s.SPIRE.Endpoint(), workloadEnv+"=", workloadWaitEnv+"=3s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 30999, Gid: 30999}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a uid with no registration entry got an SVID: %s", out)
	}
	if !strings.Contains(string(out), "PermissionDenied") && !strings.Contains(string(out), "no identity issued") {
		t.Fatalf("want the agent to refuse with no identity issued, got: %s", out)
	}
}

func TestPostgresAcceptsTLSAndSCRAMOnly(t *testing.T) {
	s := sharedStack(t)
	pg := s.Postgres
	ctx := t.Context()

	conn, err := pg.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ssl bool
	if err := conn.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Fatal("connection is not using TLS")
	}
	var n int
	var email, ssn string
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != SeedCustomers {
		t.Fatalf("customers: %d rows, %v; want %d", n, err, SeedCustomers)
	}
	if err := conn.QueryRow(ctx, "SELECT email, ssn FROM customers WHERE id = 1").Scan(&email, &ssn); err != nil {
		t.Fatal(err)
	}
	if email != "alice@example.com" || ssn != "123-45-6789" {
		t.Fatalf("seed row 1 = %q, %q", email, ssn)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id").Scan(&n); err != nil || n == 0 {
		t.Fatalf("orders: %d rows, %v", n, err)
	}

	refused := map[string]func(*pgx.ConnConfig){
		"plaintext": func(c *pgx.ConnConfig) { c.TLSConfig = nil; c.Fallbacks = nil },
		"wrong password": func(c *pgx.ConnConfig) {
			c.Password = "not-the-password"
		},
		"broker role with a password instead of a certificate": func(c *pgx.ConnConfig) {
			c.User = BrokerDBRole
			c.Password = "anything"
		},
	}
	for name, mutate := range refused {
		t.Run(name, func(t *testing.T) {
			cfg, err := pg.ConnConfig("shop")
			if err != nil {
				t.Fatal(err)
			}
			mutate(cfg)
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err == nil {
				c.Close(ctx)
				t.Fatal("connection accepted")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || !slices.Contains([]string{"28000", "28P01"}, pgErr.Code) {
				t.Fatalf("want an authentication error (28000 or 28P01), got %v", err)
			}
		})
	}
}

func TestPostgresCertAuthTrustsSPIREForTheBrokerOnly(t *testing.T) {
	s := sharedStack(t)
	ctx := t.Context()
	dir := t.TempDir()
	connectAs := func(persona string) error {
		got, err := s.FetchSVIDs(ctx, persona, "")
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, persona+".crt"), filepath.Join(dir, persona+".key")
		if err := os.WriteFile(cert, got.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, got.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := pgx.ParseConfig("host=127.0.0.1 port=" + strconv.Itoa(s.Postgres.Port) + " dbname=shop user=" + BrokerDBRole +
			" sslmode=verify-full sslrootcert=" + s.Postgres.CAPath + " sslcert=" + cert + " sslkey=" + key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}
	if err := connectAs(PersonaBroker); err != nil {
		t.Fatalf("broker's SVID was refused: %v", err)
	}
	// The analyst's SVID chains to the same CA but its common name is not the role's.
	if err := connectAs(PersonaAnalyst); err == nil {
		t.Fatal("analyst's SVID logged in as the broker's role")
	}
}

func TestSPIFFEIDsAreDistinct(t *testing.T) {
	seen := map[spiffeid.ID]string{}
	uids := map[uint32]string{}
	for _, p := range DefaultPersonas() {
		if other, ok := seen[p.ID]; ok {
			t.Errorf("%s and %s share %s", p.Name, other, p.ID)
		}
		if other, ok := uids[p.UID]; ok {
			t.Errorf("%s and %s share uid %d", p.Name, other, p.UID)
		}
		seen[p.ID], uids[p.UID] = p.Name, p.Name
	}
}

// TestAgentSelectorsFromTheAttestorPlugin runs processes as the analyst's uid with different manifests.
// The analyst's entry selects unix:uid, agent:name and the manifest's hash, so only the real manifest
// gets the SVID; bad manifests yield no agent selectors and leave spire-agent running.
func TestAgentSelectorsFromTheAttestorPlugin(t *testing.T) {
	s := sharedStack(t)
	bin, err := s.workloadBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "test-manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	analyst, _ := s.Persona(PersonaAnalyst)
	tampered := *analyst.Manifest
	tampered.Tools = append([]string{"shell.exec"}, tampered.Tools...)
	manifests := map[string][]byte{
		"tampered.json":  tampered.JSON(),
		"malformed.json": []byte(`{"name": "analyst", `),
		"oversized.json": append([]byte(`{"name":"analyst","owner":"data-team","version":"`), append(bytes.Repeat([]byte("1"), 70<<10), `"}`...)...),
	}
	for name, b := range manifests {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(manifest string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd, err := s.Command(ctx, PersonaAnalyst, bin)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, workloadEnv+"=", workloadWaitEnv+"=3s", "AGENT_MANIFEST="+manifest)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	for _, name := range []string{"", "missing.json", "tampered.json", "malformed.json", "oversized.json"} {
		t.Run("manifest "+name, func(t *testing.T) {
			path := ""
			if name != "" {
				path = filepath.Join(dir, name)
			}
			if err := fetch(path); err == nil {
				t.Fatal("the analyst's uid got the analyst's SVID without the analyst's manifest")
			}
		})
	}
	// spire-agent survived all of the above, and the real manifest still works.
	if err := fetch(s.manifestPath(PersonaAnalyst)); err != nil {
		t.Fatalf("real manifest: %v", err)
	}
	log, err := os.ReadFile(filepath.Join(s.LogDir, "spire-agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"no such file or directory", "not valid JSON", "over the 65536-byte limit"} {
		if !bytes.Contains(log, []byte(reason)) {
			t.Errorf("spire-agent's log does not give the reason %q for a refused manifest", reason)
		}
	}
}

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
	"github.com/svidbroker/svidbroker/test/vault"
)

// httpEnv is the shared stack with the shop API, Vault's API-token engine and one broker whose http
// target "api" (with the jwt block) is in front of the API: started once, for the TestHTTP tests.
var httpEnv struct {
	once   sync.Once
	stack  *stack.Stack
	broker *stack.Broker
	api    *stack.ShopAPI
	vault  *vaultapi.Client
	listen string // the api target's TLS listener
	err    error

	vaultAddr string
	vaultCA   []byte
	vaultSrv  *vault.Server
}

type httpStack struct {
	s      *stack.Stack
	b      *stack.Broker
	api    *stack.ShopAPI
	vault  *vaultapi.Client
	listen string
}

func httpShared(t testing.TB) *httpStack {
	t.Helper()
	s, _ := shared(t)
	httpEnv.once.Do(func() {
		httpEnv.stack = s
		httpEnv.err = startHTTPEnv(s)
	})
	if httpEnv.err != nil {
		t.Fatal(httpEnv.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{httpEnv.broker.LogPath(), httpEnv.api.LogPath()} {
				b, _ := os.ReadFile(p)
				if len(b) > 12000 {
					b = b[len(b)-12000:]
				}
				t.Logf("%s (end):\n%s", p, b)
			}
		}
	})
	return &httpStack{s: s, b: httpEnv.broker, api: httpEnv.api, vault: httpEnv.vault, listen: httpEnv.listen}
}

func startHTTPEnv(s *stack.Stack) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The Vault stand-in lives as long as the test binary: the stack's processes stop with the stack.
	v, err := vault.Start(vault.Options{})
	if err != nil {
		return err
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address, cfg.MaxRetries = v.Addr, 0
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: v.CACertPEM}); err != nil {
		return err
	}
	root, err := vaultapi.NewClient(cfg)
	if err != nil {
		return err
	}
	root.SetToken(v.RootToken)
	if err := s.ConfigureVault(ctx, root, "5m", "1h"); err != nil {
		return err
	}
	api, err := s.StartShopAPI(ctx)
	if err != nil {
		return err
	}
	if err := s.ConfigureAPIVault(ctx, root, api, "5m", "1h"); err != nil {
		return err
	}
	httpEnv.api, httpEnv.vault, httpEnv.vaultAddr, httpEnv.vaultCA, httpEnv.vaultSrv = api, root, v.Addr, v.CACertPEM, v
	b, listen, err := startAPIBroker(ctx, s, "svidbroker-http", stack.BrokerOptions{})
	if err != nil {
		return err
	}
	httpEnv.broker, httpEnv.listen = b, listen
	return nil
}

// startAPIBroker starts a broker named name on the shared stack, with the api target in front of the
// shop API (credentials from the shared Vault) and the jwt block; opts may set more (Name, Binary,
// VaultRoles and Extra are set here). It returns the broker and the api target's listener.
func startAPIBroker(ctx context.Context, s *stack.Stack, name string, opts stack.BrokerOptions) (*stack.Broker, string, error) {
	block, err := s.VaultBlock("vault-journal-"+name, httpEnv.vaultAddr, httpEnv.vaultCA)
	if err != nil {
		return nil, "", err
	}
	port, err := freeTCPPort()
	if err != nil {
		return nil, "", err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	opts.Name, opts.Binary, opts.VaultRoles = name, brokerBin, true
	opts.Extra = block + httpEnv.api.TargetHCL(listen, "") + stack.JWTBlock()
	b, err := s.StartBroker(ctx, opts)
	if err != nil {
		return nil, "", err
	}
	// StartBroker waits for target "shop"; the api target listens from the same start.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			return b, listen, nil
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("the api target does not listen on %s: %w", listen, err)
		}
	}
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// base is the api target's URL, by the name the broker's SVID carries.
func (h *httpStack) base() string {
	_, port, _ := net.SplitHostPort(h.listen)
	return "https://localhost:" + port
}

// tlsFor is a TLS client configuration presenting the persona's X.509-SVID from its files (nil: no
// client certificate) and trusting the trust domain's bundle.
func tlsFor(t testing.TB, f *stack.ClientFiles, bundle string) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in the bundle")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if f != nil {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// httpClient reaches the api target as the persona (its SVID files as the client certificate).
func (h *httpStack) httpClient(t testing.TB, persona string) *http.Client {
	t.Helper()
	f := clientFiles(t, h.s, persona)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsFor(t, f, f.RootCert)}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

type httpReply struct {
	status int
	header http.Header
	body   string
}

func (r httpReply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// do sends one request and reads the whole reply.
func (h *httpStack) do(t testing.TB, c *http.Client, method, path string, header http.Header, body string) httpReply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, h.base()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpReply{resp.StatusCode, resp.Header, string(b)}
}

// customer is customer id's row as PostgreSQL holds it.
type customerRow struct{ Name, Email, SSN string }

func (h *httpStack) customer(t testing.TB, id int) customerRow {
	t.Helper()
	db, err := h.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var c customerRow
	if err := db.QueryRow(t.Context(), "SELECT name, email, ssn FROM customers WHERE id = $1", id).Scan(&c.Name, &c.Email, &c.SSN); err != nil {
		t.Fatal(err)
	}
	return c
}

// orderExists says whether order id is in PostgreSQL.
func (h *httpStack) orderExists(t testing.TB, id int) bool {
	t.Helper()
	db, err := h.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var n int
	if err := db.QueryRow(t.Context(), "SELECT count(*) FROM orders WHERE id = $1", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// newOrder adds an order for customer 1 and returns its id, for a test that deletes it. The order
// is gone when the test ends, deleted or not: the stack's other tests count the seeded orders.
func (h *httpStack) newOrder(t testing.TB) int {
	t.Helper()
	db, err := h.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var id int
	if err := db.QueryRow(t.Context(), "INSERT INTO orders (id, customer_id, total, created_at) SELECT greatest(max(id), 100000) + 1, 1, 42.00, now() FROM orders RETURNING id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := h.s.Postgres.Connect(ctx, "shop")
		if err != nil {
			t.Errorf("order %d left in the shop database: %v", id, err)
			return
		}
		defer db.Close(ctx)
		if _, err := db.Exec(ctx, "DELETE FROM orders WHERE id = $1", id); err != nil {
			t.Errorf("order %d left in the shop database: %v", id, err)
		}
	})
	return id
}

// httpRecords are the broker's audit records of target "api".
func (h *httpStack) httpRecords(t testing.TB) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := audit.Read(h.b.AuditDir, h.b.Chain, func(e audit.Entry) error {
		if e.Record.Target == stack.APITargetName || (e.Record.Statement != nil && e.Record.Statement.Protocol == "http") {
			out = append(out, e.Record)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitRecord waits until a record of target "api" matches.
func (h *httpStack) waitRecord(t testing.TB, what string, match func(audit.Record) bool) audit.Record {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, r := range h.httpRecords(t) {
			if match(r) {
				return r
			}
		}
	}
	t.Fatalf("no audit record of %s", what)
	return audit.Record{}
}

// curl runs curl against the api target with extra arguments and returns the status and body.
func curl(t testing.TB, args ...string) (int, string) {
	t.Helper()
	args = append([]string{"-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"}, args...)
	out, err := exec.CommandContext(t.Context(), "curl", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("curl %s: %v %s", strings.Join(args, " "), err, stderr)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("curl: no status in %q", s)
	}
	return code, s[:i]
}

// curlAs runs curl with the persona's SVID files.
func (h *httpStack) curlAs(t testing.TB, persona string, args ...string) (int, string) {
	t.Helper()
	f := clientFiles(t, h.s, persona)
	return curl(t, append([]string{"--cert", f.Cert, "--key", f.Key, "--cacert", f.RootCert}, args...)...)
}

func jsonObject(t testing.TB, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %q", err, body)
	}
	return m
}

// TestHTTPSupportReadsACustomerMasked: support's curl, with its X.509-SVID files, reads customer 1:
// name in clear, email and ssn partially masked; neither clear value from PostgreSQL is in the body.
func TestHTTPSupportReadsACustomerMasked(t *testing.T) {
	h := httpShared(t)
	row := h.customer(t, 1)
	code, body := h.curlAs(t, stack.PersonaSupport, h.base()+"/v1/customers/1")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/customers/1 as support: %d %s", code, body)
	}
	got := jsonObject(t, body)
	if got["name"] != row.Name {
		t.Errorf("name = %v, want %q in clear", got["name"], row.Name)
	}
	for _, clear := range []string{row.Email, row.SSN} {
		if strings.Contains(body, clear) {
			t.Fatalf("the body holds the clear value %q: %s", clear, body)
		}
	}
	email, _ := got["email"].(string)
	ssn, _ := got["ssn"].(string)
	// partial keeps the email's domain and the ssn's last four digits.
	if !strings.Contains(email, "*") || !strings.HasSuffix(email, row.Email[strings.IndexByte(row.Email, '@'):]) {
		t.Errorf("email = %q, want it partially masked", email)
	}
	if !strings.Contains(ssn, "*") || !strings.HasSuffix(ssn, row.SSN[len(row.SSN)-4:]) {
		t.Errorf("ssn = %q, want it partially masked", ssn)
	}
	rec := h.waitRecord(t, "support's GET", func(r audit.Record) bool {
		return r.Kind == audit.KindStatement && r.Statement != nil && r.Statement.Text == "GET /v1/customers/1" &&
			strings.HasSuffix(r.SPIFFEID, "/agent/support")
	})
	if rec.Decision == nil || !rec.Decision.Allow {
		t.Errorf("support's GET recorded as %+v", rec)
	}
}

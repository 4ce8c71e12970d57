package e2e

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
	vaultcred "github.com/svidbroker/svidbroker/plugins/credential/vault"

	"github.com/svidbroker/svidbroker/test/stack"
)

// BenchmarkPostgres measures the broker's data path against the direct path in the same run, on the
// same machine, interleaving the two so that noise from other work hits both alike. The direct path is
// the same role (the broker's) with the same kind of credential (its SVID over TLS), so the ratio is
// what the broker's hop costs. Read "broker/direct" as the result; absolute times depend on the machine.
func BenchmarkPostgres(b *testing.B) {
	s, br := shared(b)
	agent := clientFiles(b, s, stack.PersonaAnalyst)
	brokerSelf := clientFiles(b, s, stack.PersonaBroker)
	viaBroker := "host=localhost port=" + portOf(br) + " dbname=shop user=agent sslmode=verify-full" +
		" sslcert=" + agent.Cert + " sslkey=" + agent.Key + " sslrootcert=" + agent.RootCert
	direct := "host=localhost port=" + strconv.Itoa(s.Postgres.Port) + " dbname=shop user=" + stack.BrokerDBRole +
		" sslmode=verify-full sslcert=" + brokerSelf.Cert + " sslkey=" + brokerSelf.Key + " sslrootcert=" + s.Postgres.CAPath

	connect := func(b *testing.B, dsn string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			b.Fatal(err)
		}
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	// pair runs op against the direct and the brokered connection alternately and reports both.
	pair := func(b *testing.B, op func(b *testing.B, c *pgx.Conn)) {
		d, v := connect(b, direct), connect(b, viaBroker)
		defer d.Close(context.Background())
		defer v.Close(context.Background())
		op(b, d) // warm both paths
		op(b, v)
		dt, vt := interleave(b, func() { op(b, d) }, func() { op(b, v) })
		report(b, dt, vt)
	}

	b.Run("select-1", func(b *testing.B) {
		pair(b, func(b *testing.B, c *pgx.Conn) {
			var n int
			if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("point-query", func(b *testing.B) {
		pair(b, func(b *testing.B, c *pgx.Conn) {
			var email string
			if err := c.QueryRow(context.Background(), "SELECT email FROM customers WHERE id = $1", 3).Scan(&email); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("fetch-10k-rows", func(b *testing.B) {
		pair(b, func(b *testing.B, c *pgx.Conn) {
			rows, err := c.Query(context.Background(), "SELECT g, md5(g::text) FROM generate_series(1, 10000) g")
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if rows.Err() != nil || n != 10000 {
				b.Fatalf("%d rows, %v", n, rows.Err())
			}
		})
	})
	b.Run("connect", func(b *testing.B) {
		dt, vt := interleave(b, func() { connect(b, direct).Close(context.Background()) },
			func() { connect(b, viaBroker).Close(context.Background()) })
		report(b, dt, vt)
	})
}

// interleave runs base and measured alternately, b.N times each, and returns their total times, so
// that noise from other work on the machine hits both alike.
func interleave(b *testing.B, base, measured func()) (baseT, measuredT time.Duration) {
	for b.Loop() {
		t0 := time.Now()
		base()
		t1 := time.Now()
		measured()
		baseT, measuredT = baseT+t1.Sub(t0), measuredT+time.Since(t1)
	}
	return baseT, measuredT
}

func report(b *testing.B, direct, broker time.Duration) {
	n := float64(b.N)
	b.ReportMetric(float64(direct.Nanoseconds())/n, "direct-ns/op")
	b.ReportMetric(float64(broker.Nanoseconds())/n, "broker-ns/op")
	b.ReportMetric(float64(broker)/float64(direct), "broker/direct")
}

// BenchmarkHandshake measures full mTLS handshakes with SVIDs plus peer resolution (SPIFFE ID from the
// verified chain, the exact allow-list check, and the attestation lookup against the real SPIRE server,
// cached as in production), against plain server-authenticated TLS with the same key type, in the same
// run. Session resumption is off in both, as it is in the broker.
func BenchmarkHandshake(b *testing.B) {
	s, _ := shared(b)
	up, upKey := s.SPIRE.UpstreamCA, s.SPIRE.UpstreamKey
	serverCert := mint(b, up, upKey, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }, "spiffe://example.org/svidbroker")
	clientCert := mint(b, up, upKey, nil, "spiffe://example.org/agent/analyst")
	serverSVID, err := x509svid.ParseRaw(serverCert.Certificate[0], mustPKCS8(b, serverCert.PrivateKey))
	if err != nil {
		b.Fatal(err)
	}
	bundle := x509bundle.FromX509Authorities(stack.TrustDomain, []*x509.Certificate{up})
	atts, err := identity.NewAttestations(identity.AttestationConfig{Address: "unix://" + s.SPIRE.ServerSocket}, stack.TrustDomain)
	if err != nil {
		b.Fatal(err)
	}
	defer atts.Close()
	authorize := identity.AuthorizeExact([]spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/agent/analyst")})
	roots := x509.NewCertPool()
	roots.AddCert(up)

	mtls := identity.ServerConfig(serverSVID, bundle, []spiffeid.TrustDomain{stack.TrustDomain})
	plain := &tls.Config{Certificates: []tls.Certificate{serverCert}, SessionTicketsDisabled: true, MinVersion: tls.VersionTLS12}
	clientMTLS := &tls.Config{RootCAs: roots, InsecureSkipVerify: true, Certificates: []tls.Certificate{clientCert}}
	clientPlain := &tls.Config{RootCAs: roots, InsecureSkipVerify: true}

	serve := func(cfg *tls.Config, resolve bool) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				tc := tls.Server(c, cfg)
				if err := tc.Handshake(); err == nil && resolve {
					peer, err := identity.PeerFromTLS(tc.ConnectionState())
					if err == nil {
						err = authorize(peer.ID)
					}
					if err == nil {
						_, err = atts.Lookup(context.Background(), peer.ID)
					}
					if err != nil {
						b.Error(err)
					}
				}
				_, _ = tc.Write([]byte{1}) // tell the client the server side is done
				tc.Close()
			}
		}()
		return ln.Addr().String(), func() { ln.Close() }
	}
	mtlsAddr, stopM := serve(mtls, true)
	defer stopM()
	plainAddr, stopP := serve(plain, false)
	defer stopP()
	dial := func(addr string, cfg *tls.Config) {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		var one [1]byte
		if _, err := io.ReadFull(c, one[:]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	dial(mtlsAddr, clientMTLS)
	dial(plainAddr, clientPlain)
	pt, mt := interleave(b, func() { dial(plainAddr, clientPlain) }, func() { dial(mtlsAddr, clientMTLS) })
	b.ReportMetric(float64(b.N)/pt.Seconds(), "plain-handshakes/s")
	b.ReportMetric(float64(b.N)/mt.Seconds(), "mtls+peer-handshakes/s")
	b.ReportMetric(float64(mt)/float64(pt), "mtls/plain-time")
}

func mustPKCS8(b testing.TB, key crypto.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	return der
}

// BenchmarkPgbenchAudit measures what recording costs, per audit durability level: pgbench's
// select-only (-S) and TPC-B-like scripts at 4, 16 and 48 clients, through brokers that record with
// durability "commit" (each statement's record written before it runs, commits held until their
// records are flushed), with "statement" (each statement held until its record is flushed), and not at
// all ("off"), and directly to PostgreSQL, alternating rounds in the same run (the order reversed every
// other round).
//
// Sub-benchmarks are named by script and clients ("select-only-4c", "tpcb-16c"). Read the metrics
// "commit/off" and "statement/off" (tps ratios), and "commit-added-p50-us" (and p99, and the same for
// "statement"): a mode's percentile of per-transaction latency minus direct's, per statement (a TPC-B
// transaction is seven statements; its "/stmt" figures divide by seven). Run it with -benchtime 1x.
func BenchmarkPgbenchAudit(b *testing.B) {
	s, selectCommit := shared(b)
	// Scale 16: pgbench's guidance is a scale near the number of clients, so that TPC-B's updates do
	// not all queue on a few branch rows.
	initPgbench(b, s, 16, "SELECT, INSERT, UPDATE")
	writePacks := packsWith(b, "bench-pgbench-writes.cedar", pgbenchWritePolicy)
	start := func(opts stack.BrokerOptions) *stack.Broker {
		opts.Binary = brokerBin
		br, err := s.StartBroker(b.Context(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { br.Stop() })
		return br
	}
	brokers := map[string]map[string]*stack.Broker{
		"select-only": {
			"commit":    selectCommit,
			"statement": start(stack.BrokerOptions{Name: "svidbroker-audit-statement", AuditDurability: "statement"}),
			"off":       start(stack.BrokerOptions{Name: "svidbroker-audit-off", NoAudit: true}),
		},
		"tpcb": {
			"commit":    start(stack.BrokerOptions{Name: "svidbroker-audit-writes-commit", PolicyDir: writePacks}),
			"statement": start(stack.BrokerOptions{Name: "svidbroker-audit-writes-statement", PolicyDir: writePacks, AuditDurability: "statement"}),
			"off":       start(stack.BrokerOptions{Name: "svidbroker-audit-writes-off", PolicyDir: writePacks, NoAudit: true}),
		},
	}
	self := clientFiles(b, s, stack.PersonaBroker)
	agent := clientFiles(b, s, stack.PersonaAnalyst)
	direct := pgbenchPath{name: "direct", port: strconv.Itoa(s.Postgres.Port), user: stack.BrokerDBRole,
		env: []string{"PGSSLMODE=verify-full", "PGSSLCERT=" + self.Cert, "PGSSLKEY=" + self.Key, "PGSSLROOTCERT=" + s.Postgres.CAPath}}
	viaBroker := func(name string, br *stack.Broker) pgbenchPath {
		return pgbenchPath{name: name, port: portOf(br), user: "agent",
			env: []string{"PGSSLMODE=verify-full", "PGSSLCERT=" + agent.Cert, "PGSSLKEY=" + agent.Key, "PGSSLROOTCERT=" + agent.RootCert}}
	}
	modes := []string{"commit", "statement", "off"}
	for _, script := range []struct {
		name       string
		args       []string
		statements float64 // per transaction
	}{{"select-only", []string{"-S"}, 1}, {"tpcb", nil, 7}} {
		paths := []pgbenchPath{direct}
		for _, m := range modes {
			paths = append(paths, viaBroker(m, brokers[script.name][m]))
		}
		for _, clients := range []int{4, 16, 48} {
			b.Run(fmt.Sprintf("%s-%dc", script.name, clients), func(b *testing.B) {
				args := append([]string{"-c", strconv.Itoa(clients)}, script.args...)
				// 48 clients take a second or more to connect through the broker: a longer warm-up.
				tps, lat := pgbenchRounds(b, paths, 3, args...)
				unit := "us"
				if script.statements > 1 {
					unit = "us/stmt"
				}
				for _, p := range paths {
					b.ReportMetric(tps[p.name], "tps-"+p.name)
				}
				for _, m := range []string{"commit", "statement"} {
					b.ReportMetric(tps[m]/tps["off"], m+"/off")
					for _, q := range []struct {
						name string
						q    float64
					}{{"p50", 0.50}, {"p99", 0.99}} {
						d, v := percentile(lat["direct"], q.q), percentile(lat[m], q.q)
						b.ReportMetric((v-d)/script.statements, m+"-added-"+q.name+"-"+unit)
					}
				}
			})
		}
	}
}

// shopRead is the database engine role the test stack configures.
var shopRead = credential.Source{Path: "database/creds/shop-read"}

// BenchmarkCredentialAcquisition measures a fresh lease from the test Vault (cert login done once; then
// each iteration reads database/creds, which runs CREATE ROLE in PostgreSQL, and revokes it) beside a
// direct CREATE ROLE and DROP ROLE by the same administrator in the same run.
func BenchmarkCredentialAcquisition(b *testing.B) {
	s, _ := shared(b)
	v, root := startVault(b)
	configureVault(b, s, root, "1h", "2h")
	f := clientFiles(b, s, stack.PersonaBroker)
	svid, err := x509svid.Load(f.Cert, f.Key)
	if err != nil {
		b.Fatal(err)
	}
	ca := filepath.Join(b.TempDir(), "vault-ca.pem")
	if err := os.WriteFile(ca, v.CACertPEM, 0o644); err != nil {
		b.Fatal(err)
	}
	p, err := vaultcred.New(vaultcred.Config{Address: v.Addr, CAFile: ca, Method: vaultcred.MethodCert, Role: "svidbroker", SVID: svid})
	if err != nil {
		b.Fatal(err)
	}
	admin, err := s.Postgres.Connect(b.Context(), "shop")
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(context.Background())
	ctx := b.Context()
	if l, err := p.Acquire(ctx, shopRead); err != nil || p.Revoke(ctx, l.ID) != nil { // logs in
		b.Fatal(err)
	}
	// Sessions of one caller sharing a lease within a reuse window: only the first asks Vault.
	reuse := credential.NewManager(p, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), 10*time.Second, time.Minute)
	defer reuse.Close()
	first, err := reuse.Start(ctx, "spiffe://example.org/agent/analyst", shopRead, func(error) {}) // the lease the others reuse
	if err != nil {
		b.Fatal(err)
	}
	first.End()
	var viaVault, direct, reused time.Duration
	for i := 0; b.Loop(); i++ {
		t2 := time.Now()
		rs, err := reuse.Start(ctx, "spiffe://example.org/agent/analyst", shopRead, func(error) {})
		if err != nil {
			b.Fatal(err)
		}
		rs.End()
		reused += time.Since(t2)
		t0 := time.Now()
		name := fmt.Sprintf("bench_direct_%d", i)
		if _, err := admin.Exec(ctx, `CREATE ROLE "`+name+`" WITH LOGIN PASSWORD 'x'; GRANT SELECT ON customers, orders TO "`+name+`"`); err != nil {
			b.Fatal(err)
		}
		if _, err := admin.Exec(ctx, `DROP OWNED BY "`+name+`"; DROP ROLE "`+name+`"`); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		l, err := p.Acquire(ctx, shopRead)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Revoke(ctx, l.ID); err != nil {
			b.Fatal(err)
		}
		direct, viaVault = direct+t1.Sub(t0), viaVault+time.Since(t1)
	}
	b.ReportMetric(float64(viaVault.Nanoseconds())/float64(b.N), "lease+revoke-ns/op")
	b.ReportMetric(float64(direct.Nanoseconds())/float64(b.N), "create+drop-role-ns/op")
	b.ReportMetric(float64(viaVault)/float64(direct), "vault/direct")
	b.ReportMetric(float64(reused.Nanoseconds())/float64(b.N), "reused-lease-ns/op")
	b.ReportMetric(float64(reused)/float64(direct), "reused/direct")
}

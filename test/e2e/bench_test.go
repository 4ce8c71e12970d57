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
	"os/exec"
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

// BenchmarkPgbenchAudit runs pgbench (select-only, 4, 16 and 48 clients) through two brokers on the same stack,
// one recording every statement durably and one not, alternating rounds in the same run. Read
// "audit-on/off" (the goal is at least 0.85). Run it with -benchtime 1x: each round lasts seconds.
func BenchmarkPgbenchAudit(b *testing.B) {
	s, withAudit := shared(b)
	without, err := s.StartBroker(b.Context(), stack.BrokerOptions{Name: "svidbroker-noaudit", Binary: brokerBin, NoAudit: true})
	if err != nil {
		b.Fatal(err)
	}
	defer without.Stop()
	initPgbench(b, s, 1, "SELECT")
	f := clientFiles(b, s, stack.PersonaAnalyst)
	run := func(br *stack.Broker, clients int) float64 {
		cmd := exec.Command("pgbench", "-n", "-S", "-c", strconv.Itoa(clients), "-j", "2", "-T", "4", "-h", "localhost", "-p", portOf(br), "-U", "agent", "shop")
		cmd.Env = append(os.Environ(), "PGSSLMODE=verify-full", "PGSSLCERT="+f.Cert, "PGSSLKEY="+f.Key, "PGSSLROOTCERT="+f.RootCert)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench: %v\n%s", err, out)
		}
		return pgbenchTPS(b, out)
	}
	// More clients let group commit share each fsync among more statements.
	for _, clients := range []int{4, 16, 48} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var on, off float64
			for b.Loop() {
				for range 2 {
					on += run(withAudit, clients)
					off += run(without, clients)
				}
			}
			b.ReportMetric(on/float64(2*b.N), "tps-audit-on")
			b.ReportMetric(off/float64(2*b.N), "tps-audit-off")
			b.ReportMetric(on/off, "audit-on/off")
		})
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

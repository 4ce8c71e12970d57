package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// pgbenchTables are the tables `pgbench -i` creates.
const pgbenchTables = "pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history"

// pgbenchWritePolicy lets the analyst run pgbench's TPC-B-like script: it updates three tables and
// inserts into a fourth, on top of the analyst pack's selects and transactions.
const pgbenchWritePolicy = `@id("bench-analyst-pgbench-writes")
permit (principal in Group::"analysts", action in [Action::"sql:insert", Action::"sql:update"], resource in Target::"shop")
when { resource in [Table::"shop/public.pgbench_accounts", Table::"shop/public.pgbench_branches",
                    Table::"shop/public.pgbench_tellers", Table::"shop/public.pgbench_history"] };
`

// pgbenchPath is one way for pgbench to reach the stack's PostgreSQL: its connection flags and the
// environment (TLS files, password) libpq reads.
type pgbenchPath struct {
	name string
	port string
	user string
	env  []string
}

// pgbenchRun is what one pgbench run measured: its throughput and every transaction's latency.
type pgbenchRun struct {
	tps     float64
	latency []float64 // microseconds, one per transaction, from pgbench's per-transaction log
}

// runPgbench runs pgbench with args (the script choice) for seconds through path, with 4 clients on 2
// threads, and reads the tps line and the per-transaction log.
func runPgbench(tb testing.TB, p pgbenchPath, seconds int, args ...string) pgbenchRun {
	tb.Helper()
	dir, err := os.MkdirTemp("", "pgbench-log-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(dir)
	prefix := filepath.Join(dir, "tx")
	all := append([]string{"-n", "-c", "4", "-j", "2", "-T", strconv.Itoa(seconds), "-l", "--log-prefix=" + prefix,
		"-h", "localhost", "-p", p.port, "-U", p.user}, args...)
	cmd := exec.Command("pgbench", append(all, "shop")...)
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("pgbench through %s: %v\n%s", p.name, err, out)
	}
	run := pgbenchRun{tps: pgbenchTPS(tb, out)}
	logs, err := filepath.Glob(prefix + ".*")
	if err != nil || len(logs) == 0 {
		tb.Fatalf("pgbench through %s wrote no transaction log (%v)", p.name, err)
	}
	for _, path := range logs {
		f, err := os.Open(path)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// client_id transaction_no time script_no time_epoch time_us: time is the transaction's
			// elapsed time in microseconds.
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseFloat(fields[2], 64)
			if err != nil {
				f.Close()
				tb.Fatalf("pgbench log %s: %q: %v", path, sc.Text(), err)
			}
			run.latency = append(run.latency, us)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			tb.Fatal(err)
		}
	}
	return run
}

// pgbenchTPS reads "tps = N (without initial connection time)" from pgbench's output.
func pgbenchTPS(tb testing.TB, out []byte) float64 {
	tb.Helper()
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "tps = "); ok {
			if v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64); err == nil {
				return v
			}
		}
	}
	tb.Fatalf("no tps in pgbench output:\n%s", out)
	return 0
}

// percentile returns the q-th quantile (0..1) of sorted, nearest rank.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// initPgbench (re)creates pgbench's tables at scale in database shop and grants them to the broker's
// database role, which every path below logs in as.
func initPgbench(tb testing.TB, s *stack.Stack, scale int, grant string) {
	tb.Helper()
	pg := s.Postgres
	init := exec.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.Superuser, "shop")
	init.Env = append(os.Environ(), "PGPASSWORD="+pg.SuperuserPassword(), "PGSSLMODE=verify-full", "PGSSLROOTCERT="+pg.CAPath)
	if out, err := init.CombinedOutput(); err != nil {
		tb.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	admin, err := pg.Connect(tb.Context(), "shop")
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(tb.Context(), "GRANT "+grant+" ON "+pgbenchTables+" TO "+stack.BrokerDBRole); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkPgbenchPaths runs pgbench, select-only (-S) and the TPC-B-like default script, through five
// paths to the same PostgreSQL in the same run, alternating rounds (the order reversed every other
// round) so that noise from other work hits all alike:
//
//   - direct: pgbench to PostgreSQL, TLS, as the broker's database role with the broker's SVID (cert
//     authentication), the same role and credential the broker itself uses;
//   - relay: a bare TCP relay in this process copying bytes both ways; TLS is end to end, so this is the
//     cost of one more userspace hop with no protocol work;
//   - pgbouncer: a peer proxy in session pool mode (one server connection per client, as the broker);
//     TLS from pgbench (scram-sha-256 with a userlist) and TLS to PostgreSQL (verify-full, the broker's
//     SVID as client certificate; PostgreSQL refuses any connection without TLS);
//   - broker: the analyst persona through svidbroker with the repository's policy packs and the audit
//     log on (for TPC-B, a second broker whose packs also permit the analyst's writes to pgbench's
//     tables);
//   - broker-noaudit: the same broker without the audit log, so that "broker/broker-noaudit" tells the
//     cost of recording from the cost of the hop, policy decisions and masking.
//
// Read the ratios of tps ("broker/direct", "broker/pgbouncer", ...); absolute numbers depend on the
// machine. "broker-added-p50-us" and "-p99-us" are the broker's percentile of per-transaction latency
// (pgbench's --log) minus direct's. A select-only transaction is one statement, so that is the added
// latency per statement; a TPC-B transaction is seven statements (BEGIN, three UPDATEs, a SELECT, an
// INSERT, END), and "/stmt" metrics divide the transaction's added latency by seven: an average over the
// transaction's statements, not a percentile of single statements. Lock waits between clients are part
// of TPC-B latency, so its added latency includes contention that a slower hop makes longer.
//
// Run it with -benchtime 1x: each iteration runs two rounds of pgbench, 4 s per path and mode.
func BenchmarkPgbenchPaths(b *testing.B) {
	s, selectBroker := shared(b)
	// Scale 4: pgbench's guidance is a scale at least the number of clients, so that TPC-B's branch
	// updates do not all queue on one row.
	initPgbench(b, s, 4, "SELECT, INSERT, UPDATE")
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
	writeBroker := start(stack.BrokerOptions{Name: "svidbroker-pgbench-writes", PolicyDir: writePacks})
	// The same brokers without the audit log, to tell the cost of recording from the cost of the hop.
	selectNoAudit := start(stack.BrokerOptions{Name: "svidbroker-pgbench-noaudit", NoAudit: true})
	writeNoAudit := start(stack.BrokerOptions{Name: "svidbroker-pgbench-writes-noaudit", PolicyDir: writePacks, NoAudit: true})

	self := clientFiles(b, s, stack.PersonaBroker)
	agent := clientFiles(b, s, stack.PersonaAnalyst)
	pgPort := strconv.Itoa(s.Postgres.Port)
	asBroker := []string{"PGSSLMODE=verify-full", "PGSSLCERT=" + self.Cert, "PGSSLKEY=" + self.Key, "PGSSLROOTCERT=" + s.Postgres.CAPath}
	relayAddr := startRelay(b, net.JoinHostPort(s.Postgres.Host, pgPort))
	_, relayPort, _ := net.SplitHostPort(relayAddr)
	bouncer := startPgbouncer(b, s, self)

	direct := pgbenchPath{name: "direct", port: pgPort, user: stack.BrokerDBRole, env: asBroker}
	relay := pgbenchPath{name: "relay", port: relayPort, user: stack.BrokerDBRole, env: asBroker}
	viaBouncer := pgbenchPath{name: "pgbouncer", port: bouncer.port, user: stack.BrokerDBRole,
		env: []string{"PGSSLMODE=verify-full", "PGSSLROOTCERT=" + bouncer.caPath, "PGPASSWORD=" + bouncer.password}}
	broker := func(name string, br *stack.Broker) pgbenchPath {
		return pgbenchPath{name: name, port: portOf(br), user: "agent",
			env: []string{"PGSSLMODE=verify-full", "PGSSLCERT=" + agent.Cert, "PGSSLKEY=" + agent.Key, "PGSSLROOTCERT=" + agent.RootCert}}
	}

	for _, mode := range []struct {
		name       string
		args       []string
		statements float64 // per transaction
		broker     *stack.Broker
		noAudit    *stack.Broker
	}{
		{"select-only", []string{"-S"}, 1, selectBroker, selectNoAudit},
		{"tpcb", nil, 7, writeBroker, writeNoAudit},
	} {
		b.Run(mode.name, func(b *testing.B) {
			paths := []pgbenchPath{direct, relay, viaBouncer, broker("broker", mode.broker), broker("broker-noaudit", mode.noAudit)}
			tps, lat := pgbenchRounds(b, paths, 1, mode.args...)
			for _, p := range paths {
				b.ReportMetric(tps[p.name], "tps-"+p.name)
			}
			for _, r := range [][2]string{{"broker", "direct"}, {"relay", "direct"}, {"pgbouncer", "direct"},
				{"broker", "relay"}, {"broker", "pgbouncer"}, {"broker-noaudit", "direct"}, {"broker-noaudit", "relay"},
				{"broker-noaudit", "pgbouncer"}, {"broker", "broker-noaudit"}} {
				b.ReportMetric(tps[r[0]]/tps[r[1]], r[0]+"/"+r[1])
			}
			unit := "us"
			if mode.statements > 1 {
				unit = "us/stmt"
			}
			for _, q := range []struct {
				name string
				q    float64
			}{{"p50", 0.50}, {"p99", 0.99}} {
				d, v := percentile(lat["direct"], q.q), percentile(lat["broker"], q.q)
				b.ReportMetric(d/mode.statements, "direct-"+q.name+"-"+unit)
				b.ReportMetric((v-d)/mode.statements, "broker-added-"+q.name+"-"+unit)
			}
		})
	}
}

// pgbenchRounds runs pgbench with args through each path for warmup seconds (so that each works
// before anything is measured), then, in each iteration of b.Loop, two rounds of 4 s per path, the
// order reversed every other round so that noise from other work hits all paths alike. It returns
// each path's mean tps and its sorted per-transaction latencies.
func pgbenchRounds(b *testing.B, paths []pgbenchPath, warmup int, args ...string) (map[string]float64, map[string][]float64) {
	for _, p := range paths {
		runPgbench(b, p, warmup, args...)
	}
	tps := map[string]float64{}
	lat := map[string][]float64{}
	rounds := 0
	for b.Loop() {
		for round := range 2 {
			order := slices.Clone(paths)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, p := range order {
				r := runPgbench(b, p, 4, args...)
				tps[p.name] += r.tps
				lat[p.name] = append(lat[p.name], r.latency...)
			}
			rounds++
		}
	}
	for _, p := range paths {
		tps[p.name] /= float64(rounds)
		slices.Sort(lat[p.name])
	}
	return tps, lat
}

// startRelay listens on a free loopback port and copies bytes both ways between each client and
// target, nothing else. It stops when the benchmark ends.
func startRelay(tb testing.TB, target string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			open[c] = true
		} else {
			delete(open, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			track(client, true)
			track(server, true)
			var both sync.WaitGroup
			pipe := func(dst, src net.Conn) {
				defer both.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.(*net.TCPConn).CloseWrite() // pass the end of the stream on
			}
			both.Add(2)
			wg.Add(1)
			go pipe(server, client)
			go pipe(client, server)
			go func() {
				defer wg.Done()
				both.Wait()
				client.Close()
				server.Close()
				track(client, false)
				track(server, false)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// bouncer is a running pgbouncer.
type bouncer struct {
	port, password, caPath string
}

// pgbouncerBinary finds pgbouncer, installing Debian's package when it is missing.
func pgbouncerBinary(tb testing.TB) string {
	tb.Helper()
	find := func() string {
		if p, err := exec.LookPath("pgbouncer"); err == nil {
			return p
		}
		if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
			return "/usr/sbin/pgbouncer"
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	tb.Log("pgbouncer is missing: apt-get install -y pgbouncer")
	install := func() ([]byte, error) {
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "pgbouncer")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	out, err := install()
	if err != nil { // perhaps the package lists are missing or stale
		if upd, uerr := exec.Command("apt-get", "update").CombinedOutput(); uerr != nil {
			out = append(out, upd...)
		} else {
			out, err = install()
		}
	}
	if p := find(); p != "" {
		return p
	}
	tb.Fatalf("pgbouncer is not installed, and installing it failed (%v); install Debian's package as root "+
		"(apt-get update && apt-get install -y pgbouncer; `make bench` does this) and run the benchmark again:\n%s", err, out)
	return ""
}

// startPgbouncer runs pgbouncer in front of the stack's PostgreSQL on a free port, in session pool mode,
// with TLS on both sides: clients log in as the broker's database role with a generated password
// (scram-sha-256, userlist), and pgbouncer logs in to PostgreSQL with the broker's SVID (cert
// authentication, verify-full). It runs as the postgres user (pgbouncer refuses root) and is stopped
// when the benchmark ends.
func startPgbouncer(tb testing.TB, s *stack.Stack, svid *stack.ClientFiles) bouncer {
	tb.Helper()
	bin := pgbouncerBinary(tb)
	u, err := user.Lookup("postgres")
	if err != nil {
		tb.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "svidbroker-pgbouncer-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		tb.Fatal(err)
	}
	bc := bouncer{password: hex.EncodeToString(pw), caPath: filepath.Join(dir, "ca.crt")}

	// A throwaway CA and a server certificate for localhost and 127.0.0.1, for pgbouncer's client side.
	ca := mint(tb, nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage, c.ExtKeyUsage = x509.KeyUsageCertSign, nil
		c.Subject.CommonName = "pgbouncer bench CA"
	})
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		tb.Fatal(err)
	}
	leaf := mint(tb, caCert, ca.PrivateKey.(*ecdsa.PrivateKey), func(c *x509.Certificate) {
		c.Subject.CommonName = "localhost"
		c.DNSNames = []string{"localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	svidCert, err := os.ReadFile(svid.Cert)
	if err != nil {
		tb.Fatal(err)
	}
	svidKey, err := os.ReadFile(svid.Key)
	if err != nil {
		tb.Fatal(err)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		tb.Fatal(err)
	}
	bc.port = strconv.Itoa(port)
	ini := fmt.Sprintf(`[databases]
shop = host=%s port=%d dbname=shop

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
logfile = %s
auth_type = scram-sha-256
auth_file = %s
pool_mode = session
max_client_conn = 64
default_pool_size = 16
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = require
client_tls_cert_file = %s
client_tls_key_file = %s
server_tls_sslmode = verify-full
server_tls_ca_file = %s
server_tls_cert_file = %s
server_tls_key_file = %s
`, s.Postgres.Host, s.Postgres.Port, port, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "userlist.txt"),
		filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), s.Postgres.CAPath,
		filepath.Join(dir, "svid.crt"), filepath.Join(dir, "svid.key"))
	files := map[string][]byte{
		"pgbouncer.ini": []byte(ini),
		"userlist.txt":  []byte(fmt.Sprintf("%q %q\n", stack.BrokerDBRole, bc.password)),
		"ca.crt":        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
		"server.crt":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}),
		"server.key":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(tb, leaf.PrivateKey)}),
		"svid.crt":      svidCert,
		"svid.key":      svidKey,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	if err := stack.ChownTree(dir, uid, gid); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Dir = dir
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("pgbouncer: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+bc.port, time.Second)
		if err == nil {
			c.Close()
			return bc
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			tb.Fatalf("pgbouncer exited: %v\n%s%s", err, out, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			tb.Fatalf("pgbouncer did not listen on %s:\n%s%s", bc.port, out, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

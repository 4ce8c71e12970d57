package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
		var dt, vt time.Duration
		b.ResetTimer()
		for b.Loop() {
			t0 := time.Now()
			op(b, d)
			t1 := time.Now()
			op(b, v)
			dt, vt = dt+t1.Sub(t0), vt+time.Since(t1)
		}
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
		var dt, vt time.Duration
		for b.Loop() {
			t0 := time.Now()
			connect(b, direct).Close(context.Background())
			t1 := time.Now()
			connect(b, viaBroker).Close(context.Background())
			dt, vt = dt+t1.Sub(t0), vt+time.Since(t1)
		}
		report(b, dt, vt)
	})
}

func report(b *testing.B, direct, broker time.Duration) {
	n := float64(b.N)
	b.ReportMetric(float64(direct.Nanoseconds())/n, "direct-ns/op")
	b.ReportMetric(float64(broker.Nanoseconds())/n, "broker-ns/op")
	b.ReportMetric(float64(broker)/float64(direct), "broker/direct")
}

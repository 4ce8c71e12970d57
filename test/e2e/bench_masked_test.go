package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
)

// maskedRows is the size of BenchmarkMaskedMillionRows's table.
const maskedRows = 1_000_000

// maskedCatalog adds customers_big to target "shop"'s catalog, email and ssn tagged as personal data.
// It is a second catalog block for the same target, appended to the generated configuration: the broker
// merges catalog blocks of one target, so its kind, environment and credential roles repeat those of
// policies/catalog.hcl.
const maskedCatalog = `
# BenchmarkMaskedMillionRows: a wide table whose personal data is masked for the caller.
catalog "shop" {
  kind        = "postgres"
  environment = "dev"
  table "public.customers_big" {
    column "id" {}
    column "name" {}
    column "email" { tags = ["pii"] }
    column "ssn" { tags = ["pii"] }
    column "note" {}
  }
  credential_role "shop-read" { covers = ["sql:select"] }
  credential_role "shop-write" { covers = ["sql:insert", "sql:update", "sql:delete"] }
  credential_role "shop-admin" { covers = ["sql:ddl"] }
}
`

// BenchmarkMaskedMillionRows reads a table of a million rows and five columns, two of them tagged "pii",
// with pgx in text format: directly (the broker's database role and SVID, as BenchmarkPostgres), and
// as the analyst through a broker that masks those two columns (the analyst pack's keyed hash, audit
// on), alternating in the same run. Read "broker/direct" (the goal is at most 1.5). Beside them, the
// analyst through a broker whose catalog does not list the table, so nothing is masked:
// "unmasked-broker/direct" is the hop, "masked/unmasked" the masking. Run it with -benchtime 1x: each
// iteration reads the table six times.
func BenchmarkMaskedMillionRows(b *testing.B) {
	s, plainBroker := shared(b)
	ctx := b.Context()
	admin, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `DROP TABLE IF EXISTS public.customers_big;
CREATE TABLE public.customers_big (id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL, ssn text NOT NULL, note text NOT NULL);
INSERT INTO public.customers_big
  SELECT g, 'Customer ' || g, 'customer' || g || '@example.com',
         lpad((g % 900 + 100)::text, 3, '0') || '-' || lpad((g % 90 + 10)::text, 2, '0') || '-' || lpad((g % 9000 + 1000)::text, 4, '0'),
         'note ' || md5(g::text)
  FROM generate_series(1, `+strconv.Itoa(maskedRows)+`) g;
ANALYZE public.customers_big;
GRANT SELECT ON public.customers_big TO `+stack.BrokerDBRole); err != nil {
		b.Fatal(err)
	}
	defer admin.Exec(context.Background(), "DROP TABLE IF EXISTS public.customers_big")
	br, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-masked", Binary: brokerBin, Extra: maskedCatalog})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Stop()

	self := clientFiles(b, s, stack.PersonaBroker)
	directCfg, err := pgx.ParseConfig("host=localhost port=" + strconv.Itoa(s.Postgres.Port) + " dbname=shop user=" + stack.BrokerDBRole +
		" sslmode=verify-full sslcert=" + self.Cert + " sslkey=" + self.Key + " sslrootcert=" + s.Postgres.CAPath)
	if err != nil {
		b.Fatal(err)
	}
	direct, err := pgx.ConnectConfig(ctx, directCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close(context.Background())
	viaBroker, err := pgx.ConnectConfig(ctx, pgxConfig(b, br, clientFiles(b, s, stack.PersonaAnalyst)))
	if err != nil {
		b.Fatal(err)
	}
	defer viaBroker.Close(context.Background())
	// The shared broker's catalog does not list customers_big, so it returns every column in clear:
	// reading through it tells the cost of the hop from the cost of masking.
	unmasked, err := pgx.ConnectConfig(ctx, pgxConfig(b, plainBroker, clientFiles(b, s, stack.PersonaAnalyst)))
	if err != nil {
		b.Fatal(err)
	}
	defer unmasked.Close(context.Background())

	// The broker must actually mask: email and ssn differ from the stored values, id and name do not.
	one := func(c *pgx.Conn) (row [4]string) {
		if err := c.QueryRow(ctx, "SELECT id::text, name, email, ssn FROM public.customers_big WHERE id = 42",
			pgx.QueryResultFormats{pgx.TextFormatCode}).Scan(&row[0], &row[1], &row[2], &row[3]); err != nil {
			b.Fatal(err)
		}
		return row
	}
	plain, masked := one(direct), one(viaBroker)
	if plain[0] != masked[0] || plain[1] != masked[1] || plain[2] == masked[2] || plain[3] == masked[3] {
		b.Fatalf("the broker did not mask exactly email and ssn: direct %q, broker %q", plain, masked)
	}
	if got := one(unmasked); got != plain {
		b.Fatalf("the broker without the catalog entry masked: direct %q, broker %q", plain, got)
	}

	// readAll reads every row in text format and touches every value, as a client copying them would.
	readAll := func(c *pgx.Conn) time.Duration {
		t0 := time.Now()
		rows, err := c.Query(ctx, "SELECT id, name, email, ssn, note FROM public.customers_big", pgx.QueryResultFormats{pgx.TextFormatCode})
		if err != nil {
			b.Fatal(err)
		}
		n, bytes := 0, 0
		for rows.Next() {
			for _, v := range rows.RawValues() {
				bytes += len(v)
			}
			n++
		}
		rows.Close()
		if rows.Err() != nil || n != maskedRows || bytes == 0 {
			b.Fatalf("%d rows, %d bytes: %v", n, bytes, rows.Err())
		}
		return time.Since(t0)
	}
	readAll(direct) // warm every path (and the page cache)
	readAll(viaBroker)
	readAll(unmasked)
	var dt, vt, ut time.Duration
	for b.Loop() {
		// Each order and its reverse: a drift in the machine's speed hits all alike.
		dt += readAll(direct)
		vt += readAll(viaBroker)
		ut += readAll(unmasked)
		ut += readAll(unmasked)
		vt += readAll(viaBroker)
		dt += readAll(direct)
	}
	n := float64(2 * b.N)
	b.ReportMetric(dt.Seconds()/n, "direct-s/read")
	b.ReportMetric(vt.Seconds()/n, "broker-s/read")
	b.ReportMetric(float64(vt)/float64(dt), "broker/direct")
	b.ReportMetric(float64(ut)/float64(dt), "unmasked-broker/direct")
	b.ReportMetric(float64(vt)/float64(ut), "masked/unmasked")
}

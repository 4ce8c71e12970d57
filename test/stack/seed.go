package stack

import (
	"context"
	"fmt"

	"strings"

	"github.com/jackc/pgx/v5"
)

// SeedCustomers is the number of rows seeded into shop.customers.
const SeedCustomers = 8

// seedSchema creates the demo database's tables. email and ssn are personal data: the catalog in the
// demo's broker config tags them "pii".
const seedSchema = `
CREATE TABLE customers (
	id    integer PRIMARY KEY,
	name  text NOT NULL,
	email text NOT NULL,
	ssn   text NOT NULL
);
CREATE TABLE orders (
	id          integer PRIMARY KEY,
	customer_id integer NOT NULL REFERENCES customers(id),
	total       numeric(10,2) NOT NULL,
	created_at  timestamptz NOT NULL
);
`

var seedNames = [SeedCustomers]string{"Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi"}

// ShopOwnerRole owns the shop's tables; shop-admin credentials from Vault are its members.
const ShopOwnerRole = "shop_owner"

// seed creates the "shop" database with customers and orders, owned by ShopOwnerRole, and the role
// that `cert` authentication maps the broker's SVID to.
func (p *Postgres) seed(ctx context.Context) error {
	admin, err := p.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer admin.Close(ctx)
	for _, q := range []string{
		"CREATE DATABASE shop",
		"CREATE ROLE " + BrokerDBRole + " LOGIN",
		"CREATE ROLE " + ShopOwnerRole + " NOLOGIN",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			return fmt.Errorf("seed: %s: %w", q, err)
		}
	}
	shop, err := p.Connect(ctx, "shop")
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer shop.Close(ctx)
	if _, err := shop.Exec(ctx, seedSchema); err != nil {
		return fmt.Errorf("seed: schema: %w", err)
	}
	b := &pgx.Batch{}
	for i, name := range seedNames {
		id := i + 1
		// SSNs look real (123-45-6789) but are made up, distinct per row.
		ssn := fmt.Sprintf("%03d-%02d-%04d", 123+i*111%900, 45+i, ((6789-i*1111)%9000+9000)%9000)
		b.Queue("INSERT INTO customers (id, name, email, ssn) VALUES ($1, $2, $3, $4)",
			id, name, strings.ToLower(name)+"@example.com", ssn)
		for j := range 2 {
			b.Queue("INSERT INTO orders (id, customer_id, total, created_at) VALUES ($1, $2, $3, now() - $4::interval)",
				id*10+j, id, fmt.Sprintf("%d.%02d", 10+id*7+j*3, (id*13+j)%100), fmt.Sprintf("%d days", id+j))
		}
	}
	b.Queue("GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders TO " + BrokerDBRole)
	// The schema's owner: Vault's shop-admin credentials are its members, so they may alter these
	// tables and create others in schema public (PostgreSQL 15 no longer lets everyone create there).
	b.Queue("ALTER TABLE customers OWNER TO " + ShopOwnerRole)
	b.Queue("ALTER TABLE orders OWNER TO " + ShopOwnerRole)
	b.Queue("GRANT CREATE ON SCHEMA public TO " + ShopOwnerRole)
	if err := shop.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("seed: rows: %w", err)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// errNotFound: the customer or order does not exist.
var errNotFound = errors.New("not found")

// dbTimeout bounds each statement.
const dbTimeout = 5 * time.Second

type customer struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	SSN   string `json:"ssn"`
}

type order struct {
	ID         int64     `json:"id"`
	CustomerID int64     `json:"customer_id"`
	Total      string    `json:"total"` // numeric(10,2) as text: no float rounding
	CreatedAt  time.Time `json:"created_at"`
}

type refundRecord struct {
	ID        int64     `json:"id"`
	OrderID   int64     `json:"order_id"`
	Amount    int64     `json:"amount"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

// store is what the tools read and write in database "shop".
type store interface {
	// Customers returns customer id (id > 0; errNotFound when absent) or the first limit customers by id.
	Customers(ctx context.Context, id int64, limit int) ([]customer, error)
	// Orders returns the first limit orders by id, of one customer when customerID > 0.
	Orders(ctx context.Context, customerID int64, limit int) ([]order, error)
	// Refund records a refund of an existing order (errNotFound when absent) in api.refunds.
	Refund(ctx context.Context, orderID, amount int64, reason string) (refundRecord, error)
	// SendEmail "sends" an email: it is queued in api.outbox, and its id returned.
	SendEmail(ctx context.Context, to, subject, body string) (int64, error)
}

// pgStore is the store on the service's own PostgreSQL login.
type pgStore struct{ db *pgxpool.Pool }

var _ store = pgStore{}

func (s pgStore) Customers(ctx context.Context, id int64, limit int) ([]customer, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	q, args := `SELECT id, name, email, ssn FROM public.customers ORDER BY id LIMIT $1`, []any{limit}
	if id > 0 {
		q, args = `SELECT id, name, email, ssn FROM public.customers WHERE id = $1`, []any{id}
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (customer, error) {
		var c customer
		err := r.Scan(&c.ID, &c.Name, &c.Email, &c.SSN)
		return c, err
	})
	if err == nil && id > 0 && len(out) == 0 {
		return nil, errNotFound
	}
	return out, err
}

func (s pgStore) Orders(ctx context.Context, customerID int64, limit int) ([]order, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	rows, err := s.db.Query(ctx, `SELECT id, customer_id, total::text, created_at FROM public.orders
		WHERE $1 = 0 OR customer_id = $1 ORDER BY id LIMIT $2`, customerID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (order, error) {
		var o order
		err := r.Scan(&o.ID, &o.CustomerID, &o.Total, &o.CreatedAt)
		return o, err
	})
}

func (s pgStore) Refund(ctx context.Context, orderID, amount int64, reason string) (refundRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	rf := refundRecord{OrderID: orderID, Amount: amount, Reason: reason}
	err := s.db.QueryRow(ctx, `INSERT INTO api.refunds (order_id, amount, reason)
		SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM public.orders WHERE id = $1) RETURNING id, created_at`,
		orderID, amount, reason).Scan(&rf.ID, &rf.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return rf, errNotFound
	}
	return rf, err
}

func (s pgStore) SendEmail(ctx context.Context, to, subject, body string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	var id int64
	err := s.db.QueryRow(ctx, `INSERT INTO api.outbox (recipient, subject, body) VALUES ($1, $2, $3) RETURNING id`,
		to, subject, body).Scan(&id)
	return id, err
}

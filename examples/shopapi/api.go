package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/svidbroker/svidbroker/examples/internal/apitoken"
)

// Limits on what a request may carry.
const (
	maxRefundBytes = 4 << 10
	maxReasonRunes = 500
	maxAmount      = 1_000_000_00 // cents
	defaultLimit   = 10
	maxLimit       = 100
	dbTimeout      = 5 * time.Second
	sseEvents      = 3
)

// roleMethods are the methods each token role allows.
var roleMethods = map[string][]string{
	"api-read":  {http.MethodGet},
	"api-write": {http.MethodGet, http.MethodPost, http.MethodDelete},
}

type server struct {
	db            *pgxpool.Pool
	log           *slog.Logger
	eventInterval time.Duration
}

// handler is the API: /healthz, and the routes behind token authentication.
func (s *server) handler() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /v1/customers/{id}", s.getCustomer)
	api.HandleFunc("GET /v1/customers", s.listCustomers)
	api.HandleFunc("GET /v1/customers/{id}/events", s.customerEvents)
	api.HandleFunc("GET /v1/orders/{id}", s.getOrder)
	api.HandleFunc("DELETE /v1/orders/{id}", s.deleteOrder)
	api.HandleFunc("POST /v1/refunds", s.createRefund)
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s: the API serves GET /v1/customers/{id}, GET /v1/customers, "+
			"GET /v1/customers/{id}/events, GET /v1/orders/{id}, DELETE /v1/orders/{id} and POST /v1/refunds", r.Method, r.URL.Path))
	})
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	root.Handle("/", s.authenticate(api))
	return root
}

// allows reports whether a token role may use the method.
func allows(role, method string) bool { return slices.Contains(roleMethods[role], method) }

// authenticate checks the request's token against api.tokens on every request (apitoken.Check):
// known by its SHA-256, not expired, of a role that allows the method.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, err := apitoken.Check(r.Context(), s.db, r.Header)
		switch {
		case errors.Is(err, apitoken.ErrUnavailable):
			s.log.Error("token lookup", "error", err)
			writeError(w, http.StatusServiceUnavailable, apitoken.Message(err))
			return
		case err != nil:
			unauthorized(w, err)
			return
		}
		if !allows(role, r.Method) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("a token of role %s may not %s: it allows %s",
				role, r.Method, strings.Join(roleMethods[role], ", ")))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter, err error) {
	apitoken.Challenge(w.Header(), "shopapi", err)
	writeError(w, http.StatusUnauthorized, apitoken.Message(err))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *server) dbError(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "error", err)
	writeError(w, http.StatusInternalServerError, what+" failed; see the API's log")
}

// pathID reads a positive integer path parameter, written in decimal digits only, without a sign or
// leading zeros: one number has one spelling, so a policy in front of the API that names an id (as
// text) names every request for it.
func pathID(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	v := r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 32)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != v {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("path parameter %s must be a positive integer below 2^31, in digits without a sign or leading zeros", name))
		return 0, false
	}
	return id, true
}

// noQuery refuses query parameters on a route that takes none.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery != "" {
		writeError(w, http.StatusBadRequest, "this route takes no query parameters")
		return false
	}
	return true
}

type customer struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	SSN   string `json:"ssn"`
}

func (s *server) customer(ctx context.Context, id int64) (*customer, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	var c customer
	err := s.db.QueryRow(ctx, `SELECT id, name, email, ssn FROM public.customers WHERE id = $1`, id).Scan(&c.ID, &c.Name, &c.Email, &c.SSN)
	return &c, err
}

func (s *server) getCustomer(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok || !noQuery(w, r) {
		return
	}
	c, err := s.customer(r.Context(), id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		writeError(w, http.StatusNotFound, fmt.Sprintf("customer %d not found", id))
	case err != nil:
		s.dbError(w, "reading the customer", err)
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// parseLimit reads the only query parameter of GET /v1/customers.
func parseLimit(rawQuery string) (int, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, errors.New("the query string is malformed")
	}
	for k := range q {
		if k != "limit" {
			return 0, fmt.Errorf("unknown query parameter %q: this route takes only limit", k)
		}
	}
	switch v := q["limit"]; len(v) {
	case 0:
		return defaultLimit, nil
	case 1:
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > maxLimit || strconv.Itoa(n) != v[0] {
			return 0, fmt.Errorf("limit must be an integer from 1 to %d, in digits without a sign or leading zeros", maxLimit)
		}
		return n, nil
	default:
		return 0, errors.New("limit is given more than once")
	}
}

func (s *server) listCustomers(w http.ResponseWriter, r *http.Request) {
	limit, err := parseLimit(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	rows, err := s.db.Query(ctx, `SELECT id, name, email, ssn FROM public.customers ORDER BY id LIMIT $1`, limit)
	if err != nil {
		s.dbError(w, "listing customers", err)
		return
	}
	items := []customer{}
	for rows.Next() {
		var c customer
		if err := rows.Scan(&c.ID, &c.Name, &c.Email, &c.SSN); err != nil {
			rows.Close()
			s.dbError(w, "listing customers", err)
			return
		}
		items = append(items, c)
	}
	if err := rows.Err(); err != nil {
		s.dbError(w, "listing customers", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// customerEvents streams a few server-sent events, each carrying the customer as read at that moment.
func (s *server) customerEvents(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok || !noQuery(w, r) {
		return
	}
	c, err := s.customer(r.Context(), id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		writeError(w, http.StatusNotFound, fmt.Sprintf("customer %d not found", id))
		return
	case err != nil:
		s.dbError(w, "reading the customer", err)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	for i := 1; ; i++ {
		data, _ := json.Marshal(c)
		if _, err := fmt.Fprintf(w, "id: %d\nevent: customer\ndata: %s\n\n", i, data); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if i == sseEvents {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(s.eventInterval):
		}
		if c, err = s.customer(r.Context(), id); err != nil {
			s.log.Error("reading the customer", "error", err)
			return // the stream ends; the client sees fewer events
		}
	}
}

func (s *server) getOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok || !noQuery(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var o struct {
		ID         int64     `json:"id"`
		CustomerID int64     `json:"customer_id"`
		Total      string    `json:"total"`
		CreatedAt  time.Time `json:"created_at"`
	}
	err := s.db.QueryRow(ctx, `SELECT id, customer_id, total::text, created_at FROM public.orders WHERE id = $1`, id).
		Scan(&o.ID, &o.CustomerID, &o.Total, &o.CreatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		writeError(w, http.StatusNotFound, fmt.Sprintf("order %d not found", id))
	case err != nil:
		s.dbError(w, "reading the order", err)
	default:
		writeJSON(w, http.StatusOK, o)
	}
}

func (s *server) deleteOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok || !noQuery(w, r) {
		return
	}
	if r.ContentLength != 0 {
		writeError(w, http.StatusBadRequest, "DELETE takes no body")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	tag, err := s.db.Exec(ctx, `DELETE FROM public.orders WHERE id = $1`, id)
	switch {
	case err != nil:
		s.dbError(w, "deleting the order", err)
	case tag.RowsAffected() == 0:
		writeError(w, http.StatusNotFound, fmt.Sprintf("order %d not found", id))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// refund is the body of POST /v1/refunds.
type refund struct {
	OrderID int64  `json:"order_id"`
	Amount  int64  `json:"amount"`
	Reason  string `json:"reason"`
}

// decodeRefund parses and checks a refund body: one JSON object with exactly the known members, of
// the right types and within bounds.
func decodeRefund(body []byte) (refund, error) {
	var rf refund
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rf); err != nil {
		var te *json.UnmarshalTypeError
		want := map[string]string{"order_id": "an integer", "amount": "an integer (cents)", "reason": "a string"}
		if errors.As(err, &te) && want[te.Field] != "" {
			return refund{}, fmt.Errorf("member %s must be %s", te.Field, want[te.Field])
		}
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			return refund{}, fmt.Errorf("%s: the members are order_id, amount and reason", strings.TrimPrefix(err.Error(), "json: "))
		}
		return refund{}, errors.New("the body is not a JSON object {\"order_id\": N, \"amount\": CENTS, \"reason\": \"...\"}")
	}
	if _, err := dec.Token(); err != io.EOF {
		return refund{}, errors.New("the body holds more than one JSON value")
	}
	switch {
	case rf.OrderID <= 0:
		return refund{}, errors.New("order_id must be a positive integer")
	case rf.Amount <= 0 || rf.Amount > maxAmount:
		return refund{}, fmt.Errorf("amount must be from 1 to %d (cents)", maxAmount)
	case rf.Reason == "" || !utf8.ValidString(rf.Reason) || utf8.RuneCountInString(rf.Reason) > maxReasonRunes:
		return refund{}, fmt.Errorf("reason must be non-empty UTF-8 text of at most %d characters", maxReasonRunes)
	}
	return rf, nil
}

func (s *server) createRefund(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "send the refund as Content-Type: application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRefundBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxRefundBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "reading the body failed")
		return
	}
	rf, err := decodeRefund(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var out struct {
		ID int64 `json:"id"`
		refund
		CreatedAt time.Time `json:"created_at"`
	}
	out.refund = rf
	err = s.db.QueryRow(ctx, `INSERT INTO api.refunds (order_id, amount, reason)
		SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM public.orders WHERE id = $1) RETURNING id, created_at`,
		rf.OrderID, rf.Amount, rf.Reason).Scan(&out.ID, &out.CreatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		writeError(w, http.StatusNotFound, fmt.Sprintf("order %d not found", rf.OrderID))
	case err != nil:
		s.dbError(w, "recording the refund", err)
	default:
		writeJSON(w, http.StatusCreated, out)
	}
}

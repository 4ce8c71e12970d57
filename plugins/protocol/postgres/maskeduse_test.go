package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/policies"
)

// reviewArchive is an inheritance child of customers, with a column of its own (note).
const reviewArchive = 16400

// maskedUsePolicies let agents read the shop with personal data hashed, and join on it by equality.
const maskedUsePolicies = `
@id("read") permit (principal in Group::"agents", action == Action::"sql:select", resource in Target::"shop");
@id("clear") permit (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop")
when { !resource.tags.contains("pii") };
@id("hashed") @mask("hash")
forbid (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop")
when { resource.tags.contains("pii") };
@id("equality-joins")
permit (principal in Group::"agents", action == Action::"column:use-masked", resource in Target::"shop")
when { context.use.clause == "join" && context.use.equality };
`

// newMaskedUseSession is a relay session deciding by maskedUsePolicies, with the catalog of
// reviewPlan: customers.email and customers.ssn are tagged pii, customers_contacts is a view over them.
func newMaskedUseSession(t *testing.T) *session {
	t.Helper()
	schema, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeVerdictPolicies(t, dir, maskedUsePolicies)
	e, err := authz.New(authz.Config{Dir: dir, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	catalog := &authz.Catalog{
		Targets: []authz.CatalogTarget{{Name: "shop", Kind: "postgres", Environment: "dev", Tables: []authz.CatalogTable{
			{Name: "public.customers", Columns: []authz.CatalogColumn{{Name: "id"}, {Name: "name"}, {Name: "email", Tags: []string{"pii"}}, {Name: "ssn", Tags: []string{"pii"}}}},
			{Name: "public.orders", Columns: []authz.CatalogColumn{{Name: "id"}, {Name: "customer_id"}, {Name: "total"}}},
		}}},
		Groups: []authz.GroupRule{{Name: "agents", IDs: []string{"spiffe://example.org/agent/*"}}},
	}
	customers := metaTable{name: "public.customers", columns: map[int16]string{reviewEmail: "email", reviewSSN: "ssn"},
		all: map[string]bool{"id": true, "name": true, "email": true, "ssn": true}}
	s := newRelaySession(t, relayIO{})
	s.insp.authz = authz.NewAuthorizer(e, catalog)
	s.insp.connect = authz.Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/a")}, Target: "shop"}
	archive := metaTable{name: "public.customers", columns: map[int16]string{reviewEmail: "email", reviewSSN: "ssn"},
		all: map[string]bool{"id": true, "name": true, "email": true, "ssn": true, "note": true}}
	s.insp.meta = &dbMeta{
		tables:      map[uint32]metaTable{reviewCustomers: customers, reviewArchive: archive},
		byName:      map[string]metaTable{"public.customers": customers},
		views:       map[uint32][]uint32{reviewContacts: {reviewCustomers}},
		maxOID:      reviewMaxOID,
		catalog:     map[string]bool{"public.customers": true, "public.orders": true},
		functions:   map[string]bool{"customer_contacts": true},
		existing:    map[string]bool{"public.customers": true, "public.orders": true, "public.customers_contacts": true, "public.customers_archive": true},
		descendants: map[string]uint32{"public.customers_archive": reviewArchive},
		viewNames:   map[string]bool{"public.customers_contacts": true},
	}
	return s
}

// TestMaskedColumnUsesAreRefused: a masked column in a predicate, a join other than an equality with
// a stored column, an ordering, a grouping, a window, a function or a set operation is refused with
// 42501, naming the column and the clause; each control (the plain column, the clause on an unmasked
// column, a permitted equality join, a count) runs.
func TestMaskedColumnUsesAreRefused(t *testing.T) {
	s := newMaskedUseSession(t)
	for _, c := range []struct {
		sql     string
		refused []string // parts of the error; nil: allowed
	}{
		{"SELECT email, ssn FROM customers", nil},
		{"SELECT email FROM customers WHERE id = 1", nil},
		{"SELECT count(email), count(*) FROM customers", nil},
		{"SELECT c.id FROM customers c JOIN customers d ON c.email = d.email", nil},
		{"SELECT o.total FROM orders o JOIN customers c ON o.customer_id = c.id ORDER BY o.total", nil},
		{"SELECT id FROM customers WHERE email = 'alice@example.com'", []string{"public.customers.email", "WHERE", "which rows match"}},
		{"SELECT id FROM customers WHERE ssn > '5'", []string{"public.customers.ssn", "WHERE"}},
		{"SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND c.ssn LIKE '1%')", []string{"public.customers.ssn"}},
		{"SELECT c.id FROM customers c JOIN (SELECT 'guess' AS x) g ON c.email = g.x", []string{"public.customers.email", "JOIN"}},
		{"SELECT c.id FROM customers c JOIN customers d ON c.email > d.email", []string{"public.customers.email", "JOIN"}},
		{"SELECT c.id FROM customers c, customers d WHERE c.email = d.email", []string{"public.customers.email", "WHERE"}},
		{"SELECT id FROM customers ORDER BY ssn", []string{"public.customers.ssn", "ORDER", "sort"}},
		{"SELECT id, ssn FROM customers ORDER BY 1", []string{"public.customers.ssn", "ORDER"}},
		{"SELECT count(*) FROM customers GROUP BY email", []string{"public.customers.email", "GROUP"}},
		{"SELECT count(*) FROM customers GROUP BY id HAVING max(ssn) > '1'", []string{"public.customers.ssn", "HAVING"}},
		{"SELECT rank() OVER (ORDER BY ssn) FROM customers", []string{"public.customers.ssn", "WINDOW"}},
		{"SELECT upper(email) FROM customers", []string{"public.customers.email", "FUNCTION"}},
		{"SELECT max(ssn) FROM customers", []string{"public.customers.ssn", "FUNCTION"}},
		{"SELECT email FROM customers INTERSECT SELECT 'alice@example.com'", []string{"public.customers.email", "SET-OPERATION"}},
		{"SELECT x FROM (SELECT email AS x FROM customers) s WHERE x LIKE 'a%'", []string{"public.customers.email", "WHERE"}},
		{"WITH c AS (SELECT ssn AS s FROM customers) SELECT 1 FROM c WHERE s = '123-45-6789'", []string{"public.customers.ssn"}},
		{"SELECT 1 FROM customers c WHERE c::text LIKE '%alice%'", []string{"public.customers.email"}},
		{"SELECT id FROM customers_contacts WHERE reference = '1'", []string{"view public.customers_contacts"}},
		{"SELECT 1 FROM orders WHERE customer_contacts() = 'x'", []string{"customer_contacts"}},
		{"SELECT 1 FROM orders o WHERE o.customer_contacts = 'x'", []string{"customer_contacts"}},
		{"SELECT 1 FROM copies WHERE email = 'x'", []string{"public.copies", "did not exist"}},
		{"SELECT id FROM orders WHERE id = 1", nil},
		{"SELECT id FROM customers_archive WHERE ssn = '1'", []string{"public.customers.ssn", "WHERE"}},
		{"SELECT id FROM customers_archive WHERE id = 1", nil},
		{"SELECT id FROM customers_archive WHERE note = 'x'", nil},
		{"SELECT 1 FROM customers NATURAL JOIN customers", []string{"JOIN"}},
	} {
		sts, resp := s.classify(c.sql)
		if resp != nil {
			t.Fatalf("%s: %s", c.sql, resp.Message)
		}
		_, _, _, r := s.decideAndPlan(c.sql, sts, authz.ApprovalState{}, false)
		switch {
		case c.refused == nil && r != nil:
			t.Errorf("%s: refused: %s", c.sql, r.resp.Message)
		case c.refused != nil && r == nil:
			t.Errorf("%s: allowed", c.sql)
		case r != nil:
			if r.resp.Code != "42501" {
				t.Errorf("%s: SQLSTATE %s", c.sql, r.resp.Code)
			}
			for _, part := range c.refused {
				if !strings.Contains(r.resp.Message, part) {
					t.Errorf("%s: %q does not say %q", c.sql, r.resp.Message, part)
				}
			}
			if strings.Contains(r.resp.Message, "alice") || strings.Contains(r.resp.Message, "123-45") {
				t.Errorf("%s: the error quotes the statement's literals: %q", c.sql, r.resp.Message)
			}
		}
	}
}

// TestComputedColumnsAreRedactedNotHashed: a result column the server does not trace, computed from a
// hashed column, is redacted; the plain column keeps its hash; a count over it is not masked at all;
// a view's columns are redacted even when their base column is hashed.
func TestComputedColumnsAreRedactedNotHashed(t *testing.T) {
	s := newMaskedUseSession(t)
	email := pgproto3.FieldDescription{TableOID: reviewCustomers, TableAttributeNumber: reviewEmail, DataTypeOID: 25}
	view := pgproto3.FieldDescription{TableOID: reviewContacts, TableAttributeNumber: 1, DataTypeOID: 25}
	for _, c := range []struct {
		sql   string
		field pgproto3.FieldDescription
		want  inspect.Strategy
	}{
		{"SELECT email FROM customers", email, inspect.Hash},
		{"SELECT email FROM customers UNION ALL SELECT 'guess'", computed, inspect.Redact},
		{"SELECT (SELECT ssn FROM customers LIMIT 1)", computed, inspect.Redact},
		{"SELECT count(email) FROM customers", computed, ""},
		{"SELECT count(*) FROM customers c JOIN customers d ON c.email = d.email", computed, ""},
		{"SELECT email FROM customers FULL JOIN customers d USING (email)", computed, inspect.Redact},
		{"SELECT email FROM customers_contacts", view, inspect.Redact},
		{"SELECT c.row_to_json FROM customers c", computed, inspect.Redact},
	} {
		sts, resp := s.classify(c.sql)
		if resp != nil {
			t.Fatalf("%s: %s", c.sql, resp.Message)
		}
		_, _, p, r := s.decideAndPlan(c.sql, sts, authz.ApprovalState{}, false)
		if r != nil {
			t.Fatalf("%s: refused: %s", c.sql, r.resp.Message)
		}
		if got := p.strategy(c.field, 0); got != c.want {
			t.Errorf("%s: strategy %q, want %q", c.sql, got, c.want)
		}
	}
}

// TestRefusedUseIsRecordedAsSuch: the record of a refused use names the action, the column and the
// clause, not a statement decision.
func TestRefusedUseIsRecordedAsSuch(t *testing.T) {
	s := newMaskedUseSession(t)
	for _, c := range []struct {
		sql, use, action, resource string
	}{
		{"SELECT id FROM customers WHERE email = 'x'", "where", authz.ActionUseMasked, `Column::"shop/public.customers.email"`},
		{"SELECT id FROM customers_contacts ORDER BY reference", "order", "", ""},
	} {
		sts, resp := s.classify(c.sql)
		if resp != nil {
			t.Fatal(resp.Message)
		}
		_, _, _, r := s.decideAndPlan(c.sql, sts, authz.ApprovalState{}, false)
		if r == nil {
			t.Fatalf("%s: allowed", c.sql)
		}
		var rec audit.Record
		r.record(&rec, "shop")
		if rec.Kind != audit.KindDenied || rec.Detail["use"] != c.use {
			t.Errorf("%s: record %+v, want a denial of use %q", c.sql, rec, c.use)
		}
		switch {
		case c.action == "" && rec.Decision != nil:
			t.Errorf("%s: a decision recorded where no policy was asked: %+v", c.sql, rec.Decision)
		case c.action != "" && (rec.Decision == nil || rec.Decision.Action != c.action || rec.Decision.Resource != c.resource || rec.Decision.Allow):
			t.Errorf("%s: decision %+v, want a denial of %s on %s", c.sql, rec.Decision, c.action, c.resource)
		}
	}
}

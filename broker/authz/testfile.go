package authz

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// TestFile is a policy test file (*.test.hcl): the catalog and groups the tests assume, and the tests.
//
//	catalog "shop" {
//	  kind = "postgres"
//	  table "public.customers" {
//	    column "email" { tags = ["pii"] }
//	  }
//	}
//	group "analysts" { selectors = ["agent:name:analyst"] }
//
//	test "the analyst may read customers" {
//	  principal = "spiffe://example.org/agent/analyst"
//	  selectors = ["agent:name:analyst"]
//	  action    = "sql:select"
//	  target    = "shop"
//	  table     = "public.customers"
//	  expect    = "allow"
//	  reasons   = ["analyst-select"]          # optional: exactly these deciding policies
//	  obligations { record = "metadata" }     # optional: exactly these obligations
//	}
type TestFile struct {
	// CatalogFile, relative to the test file, holds catalog and group blocks shared by several files.
	CatalogFile string         `hcl:"catalog_file,optional"`
	Catalogs    []CatalogBlock `hcl:"catalog,block"`
	Groups      []GroupBlock   `hcl:"group,block"`
	Tests       []TestCase     `hcl:"test,block"`
}

// TestCase is one request and the decision expected for it. The request is built exactly as the
// broker builds it, from the same catalog and entity code.
type TestCase struct {
	Name      string   `hcl:"name,label"`
	Principal string   `hcl:"principal"`
	Selectors []string `hcl:"selectors,optional"`
	// Attested is whether SPIRE was asked about the principal. Default true.
	Attested *bool  `hcl:"attested,optional"`
	Action   string `hcl:"action"`
	// The resource: the most specific of target, table, column and role that is set.
	Target string `hcl:"target"`
	Table  string `hcl:"table,optional"`
	Column string `hcl:"column,optional"`
	Role   string `hcl:"role,optional"`
	// Function is a database function for sql:call-function: the broker reads its attributes from the
	// database, so the test states them.
	Function *FunctionBlock `hcl:"function,block"`
	// Context facts.
	Approval string `hcl:"approval,optional"` // default "none"
	HourUTC  *int   `hcl:"hour_utc,optional"` // default 12
	SourceIP string `hcl:"source_ip,optional"`
	// For column:use-masked: the clause ("where", "join", ...), whether it is an equality with
	// another column, and that column ("public.orders.customer_id", of the same target).
	Use        string `hcl:"use,optional"`
	Equality   bool   `hcl:"equality,optional"`
	WithColumn string `hcl:"with_column,optional"`
	// Expectations.
	Expect      string       `hcl:"expect"` // "allow" or "deny"
	Reasons     []string     `hcl:"reasons,optional"`
	Obligations *Obligations `hcl:"obligations,block"`

	Range hcl.Range `hcl:",def_range"`
}

// FunctionBlock describes a database function in a test: name is "schema.name".
type FunctionBlock struct {
	Name            string `hcl:"name"`
	Arguments       string `hcl:"arguments,optional"`
	Volatility      string `hcl:"volatility"`
	SecurityDefiner bool   `hcl:"security_definer,optional"`
	Language        string `hcl:"language,optional"` // default "sql"
	Owner           string `hcl:"owner,optional"`
}

func (b *FunctionBlock) function() (*Function, error) {
	if b == nil {
		return nil, nil
	}
	schema, name, ok := strings.Cut(b.Name, ".")
	if !ok {
		return nil, fmt.Errorf("function %q: write its schema too (\"public.%s\")", b.Name, b.Name)
	}
	if !slices.Contains([]string{"immutable", "stable", "volatile"}, b.Volatility) {
		return nil, fmt.Errorf("function %q: volatility is %q; use immutable, stable or volatile", b.Name, b.Volatility)
	}
	f := &Function{Schema: schema, Name: name, Arguments: b.Arguments, Volatility: b.Volatility,
		SecurityDefiner: b.SecurityDefiner, Language: b.Language, Owner: b.Owner}
	if f.Language == "" {
		f.Language = "sql"
	}
	return f, nil
}

// TestResult is the outcome of one test case.
type TestResult struct {
	File, Name string
	Line       int
	Decision   Decision
	// Diff is empty when the test passed; otherwise it lists expected and actual values.
	Diff []string
}

// RunTests runs every *.test.hcl file below dir against e.
func RunTests(e *Engine, dir string) ([]TestResult, error) {
	return RunTestsWith(e, dir, nil, nil)
}

// RunTestsWith runs every *.test.hcl file below dir against e. A file that declares no catalog (no
// catalog block and no catalog_file) uses catalogs, and one that declares no group uses groups: the
// broker's own, when the tests are run against its configuration.
func RunTestsWith(e *Engine, dir string, catalogs []CatalogBlock, groups []GroupBlock) ([]TestResult, error) {
	files, err := filesBelow(dir, func(path string) bool { return strings.HasSuffix(path, ".test.hcl") })
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("authz: no test files (*.test.hcl) below %s", dir)
	}
	var results []TestResult
	for _, f := range files {
		rs, err := runFile(e, f, catalogs, groups)
		if err != nil {
			return nil, err
		}
		results = append(results, rs...)
	}
	return results, nil
}

func runFile(e *Engine, path string, catalogs []CatalogBlock, groups []GroupBlock) ([]TestResult, error) {
	p := hclparse.NewParser()
	file, diags := p.ParseHCLFile(path)
	if diags.HasErrors() {
		return nil, fmt.Errorf("authz: %s", diags.Error())
	}
	var tf TestFile
	if diags := gohcl.DecodeBody(file.Body, nil, &tf); diags.HasErrors() {
		return nil, fmt.Errorf("authz: %s", diags.Error())
	}
	if tf.CatalogFile != "" {
		shared, diags := p.ParseHCLFile(filepath.Join(filepath.Dir(path), tf.CatalogFile))
		if diags.HasErrors() {
			return nil, fmt.Errorf("authz: %s", diags.Error())
		}
		var c struct {
			Catalogs []CatalogBlock `hcl:"catalog,block"`
			Groups   []GroupBlock   `hcl:"group,block"`
		}
		if diags := gohcl.DecodeBody(shared.Body, nil, &c); diags.HasErrors() {
			return nil, fmt.Errorf("authz: %s", diags.Error())
		}
		tf.Catalogs, tf.Groups = append(tf.Catalogs, c.Catalogs...), append(tf.Groups, c.Groups...)
	}
	if len(tf.Catalogs) == 0 {
		tf.Catalogs = catalogs
	}
	if len(tf.Groups) == 0 {
		tf.Groups = groups
	}
	cat := NewCatalog(tf.Catalogs, tf.Groups)
	static := cat.Entities()
	var out []TestResult
	for _, tc := range tf.Tests {
		req, err := tc.request(cat, static)
		if err != nil {
			return nil, fmt.Errorf("authz: %s:%d: test %q: %w", path, tc.Range.Start.Line, tc.Name, err)
		}
		d := e.Decide(req)
		out = append(out, TestResult{File: path, Name: tc.Name, Line: tc.Range.Start.Line, Decision: d, Diff: tc.diff(d)})
	}
	return out, nil
}

// RequestSpec describes a request in the terms of the catalog, as test files and `svidbroker policy
// explain` give it.
type RequestSpec struct {
	Principal string
	Selectors []string
	// Unattested builds the principal as if SPIRE had not been asked.
	Unattested                  bool
	Action                      string
	Target, Table, Column, Role string
	// Function, for sql:call-function, is the function called.
	Function *Function
	Approval string
	HourUTC  int
	SourceIP string
	// Use is how a column:use-masked request uses the column.
	Use MaskedUse
}

func (tc *TestCase) request(cat *Catalog, static types.EntityMap) (Request, error) {
	spec := RequestSpec{Principal: tc.Principal, Selectors: tc.Selectors, Unattested: tc.Attested != nil && !*tc.Attested,
		Action: tc.Action, Target: tc.Target, Table: tc.Table, Column: tc.Column, Role: tc.Role,
		Approval: tc.Approval, HourUTC: 12, SourceIP: tc.SourceIP, Use: tc.maskedUse()}
	fn, err := tc.Function.function()
	if err != nil {
		return Request{}, err
	}
	spec.Function = fn
	if tc.HourUTC != nil {
		spec.HourUTC = *tc.HourUTC
	}
	return BuildRequest(cat, static, spec)
}

// BuildRequest builds a Request exactly as the broker does, from the catalog and a spec.
func BuildRequest(cat *Catalog, static types.EntityMap, tc RequestSpec) (Request, error) {
	id, err := spiffeid.FromString(tc.Principal)
	if err != nil {
		return Request{}, fmt.Errorf("principal: %w", err)
	}
	peer := identity.Peer{ID: id}
	if !tc.Unattested {
		peer.Attestation = &identity.Attestation{Selectors: tc.Selectors}
	}
	var resource types.EntityUID
	var ents types.EntityGetter = Entities{Static: static, Workload: cat.Workload(peer)}
	switch {
	case tc.Function != nil:
		ent := FunctionEntity(tc.Target, *tc.Function)
		resource, ents = ent.UID, withEntity{Entities: ents.(Entities), extra: ent}
		if _, ok := static[TargetUID(tc.Target)]; !ok {
			return Request{}, fmt.Errorf("target %q is not in the file's catalog", tc.Target)
		}
	case tc.Role != "":
		resource = RoleUID(tc.Target, tc.Role)
	case tc.Column != "":
		resource = ColumnUID(tc.Target, tc.Table, tc.Column)
	case tc.Table != "":
		resource = TableUID(tc.Target, tc.Table)
	default:
		resource = TargetUID(tc.Target)
	}
	_, known := static[resource]
	known = known || resource.Type == TypeFunction
	if !known && resource.Type == TypeTable {
		_, known = uncatalogedTable(static, resource) // as the broker sees a table the catalog omits
	}
	if !known {
		return Request{}, fmt.Errorf("resource %s is not in the file's catalog", resource)
	}
	now := time.Date(2026, 1, 5, tc.HourUTC, 0, 0, 0, time.UTC)
	src := netip.MustParseAddr("127.0.0.1")
	if tc.SourceIP != "" {
		if src, err = netip.ParseAddr(tc.SourceIP); err != nil {
			return Request{}, fmt.Errorf("source_ip: %w", err)
		}
	}
	ctx, err := requestContext(tc.Action, now, src, tc.Target, tc.Table, tc.Approval)
	if err != nil {
		return Request{}, err
	}
	if tc.Action == ActionUseMasked {
		ctx = MaskedUseContext(ctx, tc.Use, static)
	}
	return Request{Principal: WorkloadUID(id), Action: Action(tc.Action), Resource: resource, Context: ctx,
		Entities: ents}, nil
}

func (tc *TestCase) diff(d Decision) []string {
	var diff []string
	got := "deny"
	if d.Allow {
		got = "allow"
	}
	if tc.Expect != got {
		line := fmt.Sprintf("decision: expected %s, got %s", tc.Expect, got)
		if len(d.Reasons) > 0 {
			line += " by " + policyNames(d.Reasons)
		} else if !d.Allow {
			line += " because no policy permits it (default deny)"
		}
		diff = append(diff, line)
	}
	if tc.Reasons != nil {
		want, have := slices.Sorted(slices.Values(tc.Reasons)), slices.Sorted(slices.Values(d.Reasons))
		if !slices.Equal(want, have) {
			diff = append(diff, fmt.Sprintf("deciding policies: expected %s, got %s", policyNames(want), policyNames(have)))
		}
	}
	if tc.Obligations != nil {
		for _, f := range []struct{ name, want, got string }{
			{"approval", tc.Obligations.Approval, d.Obligations.Approval},
			{"record", tc.Obligations.Record, d.Obligations.Record},
			{"mask", tc.Obligations.Mask, d.Obligations.Mask},
		} {
			if f.want != f.got {
				diff = append(diff, fmt.Sprintf("obligation %s: expected %s, got %s", f.name, valueOrNone(f.want), valueOrNone(f.got)))
			}
		}
	}
	for _, e := range d.Errors {
		diff = append(diff, fmt.Sprintf("policy %q failed to evaluate: %s", e.PolicyID, e.Message))
	}
	return diff
}

// policyNames lists policy @ids for a sentence: "a", "b"; or none.
func policyNames(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = strconv.Quote(id)
	}
	return strings.Join(quoted, ", ")
}

func valueOrNone(v string) string {
	if v == "" {
		return "none"
	}
	return strconv.Quote(v)
}

// requestContext builds the context record an action's decisions get.
func requestContext(action string, now time.Time, src netip.Addr, target, table, approval string) (types.Record, error) {
	var tables []string
	if table != "" {
		tables = []string{string(TableUID(target, table).ID)}
	}
	return actionContext(action, now, src, tables, approval)
}

// actionContext builds the context record of an action on a statement touching tables (Table entity
// IDs), or of a connection-time action.
func actionContext(action string, now time.Time, src netip.Addr, tables []string, approval string) (types.Record, error) {
	switch {
	case action == "connect" || action == "credential:use":
		return ConnectionContext(now, src, "TLS1.3", "TLS_AES_128_GCM_SHA256"), nil
	case strings.HasPrefix(action, "sql:") || action == "column:read-unmasked" || action == ActionUseMasked:
		st := Statement{Kind: strings.TrimPrefix(action, "sql:"), Tables: tables}
		if action == ActionCallFunction {
			st.Kind = "select" // a function is called by a statement, most often a query
		}
		ctx := StatementContext(now, src, "TLS1.3", "TLS_AES_128_GCM_SHA256", st, ApprovalState{State: approval})
		if action == ActionUseMasked {
			ctx = MaskedUseContext(ctx, MaskedUse{}, nil) // no particular use: what is permitted whatever the use
		}
		return ctx, nil
	default:
		return types.Record{}, fmt.Errorf("authz: action %q is not one svidbroker decides yet", action)
	}
}

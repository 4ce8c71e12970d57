package policytest

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/policies"
)

// File is a policy test file (*.test.hcl): the catalog and groups the tests assume, and the tests.
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
//
// An HTTP request names the route of an http catalog, and may give its path parameters, declared
// query parameters and declared JSON body members; a response field's masking is asked with
// field:read-unmasked and the field's path, its strategy expected in obligations:
//
//	test "support may not refund large amounts" {
//	  principal = "spiffe://example.org/agent/support"
//	  selectors = ["agent:name:support"]
//	  action    = "http:post"
//	  target    = "api"
//	  route     = "POST /v1/refunds"
//	  body      = { order_id = 7, amount = 500, reason = "damaged" }
//	  expect    = "deny"
//	}
//	test "support reads the ssn partially masked" {
//	  ...
//	  action  = "field:read-unmasked"
//	  route   = "GET /v1/customers/{id}"
//	  params  = { id = "1" }
//	  field   = "$.ssn"
//	  expect  = "deny"
//	  obligations { mask = "partial" }
//	}
//
// An MCP request names the tool (resource_uri, prompt) of an mcp catalog, and may give the call's
// arguments; listed says whether tools/list shows the tool to the caller:
//
//	test "the analyst may query orders only" {
//	  ...
//	  action = "mcp:call"
//	  target = "tools"
//	  tool   = "query"
//	  args   = { table = "customers" }
//	  expect = "deny"
//	  listed = true     # shown: some arguments are permitted
//	}
type File struct {
	// CatalogFile, relative to the test file, holds catalog and group blocks shared by several files.
	CatalogFile string                `hcl:"catalog_file,optional"`
	Catalogs    []config.CatalogBlock `hcl:"catalog,block"`
	Groups      []config.GroupBlock   `hcl:"group,block"`
	Tests       []Case                `hcl:"test,block"`
}

// Case is one request and the decision expected for it. The request is built exactly as the
// broker builds it, from the same catalog and entity code.
type Case struct {
	Name      string   `hcl:"name,label"`
	Principal string   `hcl:"principal"`
	Selectors []string `hcl:"selectors,optional"`
	// Attested is whether SPIRE was asked about the principal. Default true.
	Attested *bool  `hcl:"attested,optional"`
	Action   string `hcl:"action"`
	// The resource: the most specific of target, table, column, role and route (with field) that is
	// set.
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
	// An HTTP request (http:* or field:read-unmasked): the route as the catalog writes it, the field
	// for field:read-unmasked, the path parameters, the declared query parameters and the declared
	// JSON body members (strings, integers, booleans). Path is the path forwarded, default the
	// template with the parameters filled in.
	Route  string            `hcl:"route,optional"`
	Field  string            `hcl:"field,optional"`
	Params map[string]string `hcl:"params,optional"`
	Query  map[string]string `hcl:"query,optional"`
	Body   cty.Value         `hcl:"body,optional"`
	Path   string            `hcl:"path,optional"`
	// An MCP request (mcp:*): the tool called, or whose result field is read (with field); the
	// resource read; the prompt got; the call's arguments (as JSON would give them); the session's
	// protocol version (default authz.DefaultMCPVersion).
	Tool            string    `hcl:"tool,optional"`
	ResourceURI     string    `hcl:"resource_uri,optional"`
	Prompt          string    `hcl:"prompt,optional"`
	Args            cty.Value `hcl:"args,optional"`
	ProtocolVersion string    `hcl:"protocol_version,optional"`
	// Approve: for action "approve", the person deciding and the request held (the principal and
	// selectors are the agent's that asked; its owner is its agent:owner:<email> selector).
	Approver *ApproverBlock `hcl:"approver,block"`
	Held     *HeldBlock     `hcl:"held,block"`
	// Listed, when set, is whether tools/list (resources/list, prompts/list) shows the tool
	// (resource, prompt): decided with the arguments ignored, whatever args says.
	Listed *bool `hcl:"listed,optional"`
	// Expectations.
	Expect      string             `hcl:"expect"` // "allow" or "deny"
	Reasons     []string           `hcl:"reasons,optional"`
	Obligations *authz.Obligations `hcl:"obligations,block"`

	Range hcl.Range `hcl:",def_range"`
}

// ApproverBlock is the person of an approve test, as their ID token describes them.
type ApproverBlock struct {
	Email  string   `hcl:"email"`
	Groups []string `hcl:"groups,optional"`
	Issuer string   `hcl:"issuer,optional"` // default authz.DefaultTestIssuer
}

// HeldBlock is the operation an approve test's request holds.
type HeldBlock struct {
	Action      string   `hcl:"action"` // "sql", "http", "mcp"
	Text        string   `hcl:"text,optional"`
	Fingerprint string   `hcl:"fingerprint,optional"`
	Policies    []string `hcl:"policies,optional"`
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

func (b *FunctionBlock) function() (*authz.Function, error) {
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
	f := &authz.Function{Schema: schema, Name: name, Arguments: b.Arguments, Volatility: b.Volatility,
		SecurityDefiner: b.SecurityDefiner, Language: b.Language, Owner: b.Owner}
	if f.Language == "" {
		f.Language = "sql"
	}
	return f, nil
}

// Result is the outcome of one test case.
type Result struct {
	File, Name string
	Line       int
	Decision   authz.Decision
	// Diff is empty when the test passed; otherwise it lists expected and actual values.
	Diff []string
}

// Run runs every *.test.hcl file below dir against e.
func Run(e *authz.Engine, dir string) ([]Result, error) {
	return RunWith(e, dir, nil, nil)
}

// RunWith runs every *.test.hcl file below dir against e. A file that declares no catalog (no
// catalog block and no catalog_file) uses catalogs, and one that declares no group uses groups: the
// broker's own, when the tests are run against its configuration.
func RunWith(e *authz.Engine, dir string, catalogs []config.CatalogBlock, groups []config.GroupBlock) ([]Result, error) {
	files, err := authz.TestFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("authz: no test files (*.test.hcl) below %s", dir)
	}
	var results []Result
	for _, f := range files {
		rs, err := runFile(e, f, catalogs, groups)
		if err != nil {
			return nil, err
		}
		results = append(results, rs...)
	}
	return results, nil
}

// readFile reads a test file, with its catalog_file, and the catalogs and groups it falls back on.
func readFile(path string, catalogs []config.CatalogBlock, groups []config.GroupBlock) (File, error) {
	p := hclparse.NewParser()
	file, diags := p.ParseHCLFile(path)
	if diags.HasErrors() {
		return File{}, fmt.Errorf("authz: %s", diags.Error())
	}
	var tf File
	if diags := gohcl.DecodeBody(file.Body, nil, &tf); diags.HasErrors() {
		return File{}, fmt.Errorf("authz: %s", diags.Error())
	}
	if tf.CatalogFile != "" {
		shared, diags := p.ParseHCLFile(filepath.Join(filepath.Dir(path), tf.CatalogFile))
		if diags.HasErrors() {
			return File{}, fmt.Errorf("authz: %s", diags.Error())
		}
		var c struct {
			Catalogs []config.CatalogBlock `hcl:"catalog,block"`
			Groups   []config.GroupBlock   `hcl:"group,block"`
		}
		if diags := gohcl.DecodeBody(shared.Body, nil, &c); diags.HasErrors() {
			return File{}, fmt.Errorf("authz: %s", diags.Error())
		}
		tf.Catalogs, tf.Groups = append(tf.Catalogs, c.Catalogs...), append(tf.Groups, c.Groups...)
	}
	if len(tf.Catalogs) == 0 {
		tf.Catalogs = catalogs
	}
	if len(tf.Groups) == 0 {
		tf.Groups = groups
	}
	if err := config.CheckRoutes(tf.Catalogs); err != nil {
		return File{}, fmt.Errorf("authz: %s: %w", path, err)
	}
	return tf, nil
}

// Schema is the embedded schema, with the HTTP records generated from the catalogs of every test
// file below dir and from catalogs (the ones a file without its own falls back on): the schema to
// load the policies these tests run against with, as the broker loads them with its own catalog.
func Schema(dir string, catalogs []config.CatalogBlock) (*authz.Schema, error) {
	files, err := authz.TestFiles(dir)
	if err != nil {
		return nil, err
	}
	all := append([]config.CatalogBlock(nil), catalogs...)
	for _, f := range files {
		tf, err := readFile(f, catalogs, nil)
		if err != nil {
			return nil, err
		}
		all = append(all, tf.Catalogs...)
	}
	return authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, config.NewCatalog(all, nil))
}

func runFile(e *authz.Engine, path string, catalogs []config.CatalogBlock, groups []config.GroupBlock) ([]Result, error) {
	tf, err := readFile(path, catalogs, groups)
	if err != nil {
		return nil, err
	}
	cat := config.NewCatalog(tf.Catalogs, tf.Groups)
	static := cat.Entities()
	var out []Result
	for _, tc := range tf.Tests {
		req, err := tc.request(cat, static)
		if err != nil {
			return nil, fmt.Errorf("authz: %s:%d: test %q: %w", path, tc.Range.Start.Line, tc.Name, err)
		}
		d := e.Decide(req)
		diff := append(tc.diff(d), tc.listedDiff(e, req)...)
		out = append(out, Result{File: path, Name: tc.Name, Line: tc.Range.Start.Line, Decision: d, Diff: diff})
	}
	return out, nil
}

func (tc *Case) request(cat *authz.Catalog, static types.EntityMap) (authz.Request, error) {
	spec := authz.RequestSpec{Principal: tc.Principal, Selectors: tc.Selectors, Unattested: tc.Attested != nil && !*tc.Attested,
		Action: tc.Action, Target: tc.Target, Table: tc.Table, Column: tc.Column, Role: tc.Role,
		Approval: tc.Approval, HourUTC: 12, SourceIP: tc.SourceIP, Use: tc.maskedUse(),
		Route: tc.Route, Field: tc.Field, Params: tc.Params, Query: tc.Query, Path: tc.Path}
	if tc.Approver != nil {
		spec.Approver = &authz.Person{Email: tc.Approver.Email, Groups: tc.Approver.Groups, Issuer: tc.Approver.Issuer}
	}
	if tc.Held != nil {
		spec.Held = &authz.ApprovalRequest{Action: tc.Held.Action, Text: tc.Held.Text, Fingerprint: tc.Held.Fingerprint, Policies: tc.Held.Policies}
	}
	body, err := bodyOf(tc.Body)
	if err != nil {
		return authz.Request{}, err
	}
	spec.Body = body
	if spec.MCP, err = tc.mcpSpec(); err != nil {
		return authz.Request{}, err
	}
	fn, err := tc.Function.function()
	if err != nil {
		return authz.Request{}, err
	}
	spec.Function = fn
	if tc.HourUTC != nil {
		spec.HourUTC = *tc.HourUTC
	}
	return authz.BuildRequest(cat, static, spec)
}

// maskedUse is the use a test case describes; the other column is named in the test's target.
func (tc *Case) maskedUse() authz.MaskedUse {
	return authz.MaskedUse{Clause: tc.Use, Equality: tc.Equality, WithColumn: authz.ColumnID(tc.Target, tc.WithColumn)}
}

func (tc *Case) diff(d authz.Decision) []string {
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

// bodyOf converts a test's body object to the members authz takes: strings, integers (int64) and
// booleans.
func bodyOf(v cty.Value) (map[string]any, error) {
	if v.IsNull() {
		return nil, nil
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		return nil, fmt.Errorf("body is an object of members: body = { amount = 5, reason = \"damaged\" }")
	}
	out := map[string]any{}
	for k, m := range v.AsValueMap() {
		switch {
		case m.IsNull() || !m.IsKnown():
			return nil, fmt.Errorf("body member %q has no value", k)
		case m.Type() == cty.String:
			out[k] = m.AsString()
		case m.Type() == cty.Bool:
			out[k] = m.True()
		case m.Type() == cty.Number:
			f := m.AsBigFloat()
			n, acc := f.Int64()
			if !f.IsInt() || acc != 0 {
				return nil, fmt.Errorf("body member %q: a number must be an integer that fits in 64 bits (Long)", k)
			}
			out[k] = n
		default:
			return nil, fmt.Errorf("body member %q: a member is a string, an integer or a boolean", k)
		}
	}
	return out, nil
}

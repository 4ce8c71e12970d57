package authz

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/policies"
)

func testSchema(t testing.TB) *Schema {
	t.Helper()
	s, err := ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writePolicies(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var testCatalog = &Catalog{
	Targets: []CatalogTarget{{Name: "shop", Kind: "postgres", Environment: "dev",
		Tables: []CatalogTable{{Name: "public.customers", Columns: []CatalogColumn{{Name: "email", Tags: []string{"pii"}}}}}}},
	Groups: []GroupRule{{Name: "agents", IDs: []string{"spiffe://example.org/agent/*"}}},
}

func connectReq(id string, hint string) Request {
	p := identity.Peer{ID: spiffeid.RequireFromString(id), Attestation: &identity.Attestation{Hint: hint}}
	return Request{
		Principal: WorkloadUID(p.ID), Action: Action("connect"), Resource: TargetUID("shop"),
		Context:  ConnectionContext(time.Unix(1_700_000_000, 0), netip.MustParseAddr("10.1.2.3"), "TLS1.3", "x"),
		Entities: Entities{Static: testCatalog.Entities(), Workload: testCatalog.Workload(p)},
	}
}

func newEngine(t testing.TB, files map[string]string) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	writePolicies(t, dir, files)
	e, err := New(Config{Dir: dir, Schema: testSchema(t)})
	if err != nil {
		t.Fatal(err)
	}
	return e, dir
}

const permitAgents = `@id("agents-connect")
permit (principal in Group::"agents", action == Action::"connect", resource == Target::"shop");
`

func TestCedarSafetySemantics(t *testing.T) {
	t.Run("default deny", func(t *testing.T) {
		e, _ := newEngine(t, map[string]string{"p.cedar": permitAgents})
		if d := e.Decide(connectReq("spiffe://example.org/other/x", "")); d.Allow || len(d.Reasons) != 0 {
			t.Fatalf("decision %+v for a workload no policy permits", d)
		}
		if d := e.Decide(connectReq("spiffe://example.org/agent/a", "")); !d.Allow || d.Reasons[0] != "agents-connect" {
			t.Fatalf("decision %+v, want allow by agents-connect", d)
		}
	})
	t.Run("forbid wins", func(t *testing.T) {
		e, _ := newEngine(t, map[string]string{"p.cedar": permitAgents + `
@id("no-evil") forbid (principal == Workload::"spiffe://example.org/agent/evil", action, resource);`})
		d := e.Decide(connectReq("spiffe://example.org/agent/evil", ""))
		if d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != "no-evil" {
			t.Fatalf("decision %+v, want deny by no-evil", d)
		}
	})
	t.Run("an erroring forbid denies", func(t *testing.T) {
		// Overflow is a runtime error that strict validation cannot rule out. cedar-go skips the
		// policy, so on its own it would allow.
		files := map[string]string{"p.cedar": permitAgents + `
@id("boom") forbid (principal, action, resource) when { context.time * 100000000000000 > 0 };`}
		e, _ := newEngine(t, files)
		req := connectReq("spiffe://example.org/agent/a", "")
		raw, _ := cedar.Authorize(policyList(e.Policies()), req.Entities, cedar.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: req.Context})
		if raw != cedar.Allow {
			t.Fatal("precondition: cedar-go alone was expected to allow when the forbid errors")
		}
		d := e.Decide(req)
		if d.Allow || len(d.Errors) != 1 || d.Errors[0].PolicyID != "boom" || d.Reasons[0] != "boom" {
			t.Fatalf("decision %+v, want deny naming the erroring policy", d)
		}
		if e.EvalErrors.Load() != 1 {
			t.Fatalf("EvalErrors = %d", e.EvalErrors.Load())
		}
	})
	t.Run("optional attributes", func(t *testing.T) {
		// Reading an optional attribute without `has` is refused at load...
		dir := t.TempDir()
		writePolicies(t, dir, map[string]string{"p.cedar": `@id("unsafe")
permit (principal, action == Action::"connect", resource) when { principal.hint == "db" };`})
		if _, err := New(Config{Dir: dir, Schema: testSchema(t)}); err == nil {
			t.Fatal("a policy reading an optional attribute without `has` loaded")
		}
		// ...and with `has`, a missing attribute is simply false.
		e, _ := newEngine(t, map[string]string{"p.cedar": `@id("hinted")
permit (principal, action == Action::"connect", resource) when { principal has hint && principal.hint == "db" };`})
		if d := e.Decide(connectReq("spiffe://example.org/agent/a", "")); d.Allow || len(d.Errors) > 0 {
			t.Fatalf("missing hint: %+v", d)
		}
		if d := e.Decide(connectReq("spiffe://example.org/agent/a", "db")); !d.Allow {
			t.Fatalf("hint present: %+v", d)
		}
	})
}

func TestLoadRefusals(t *testing.T) {
	cases := map[string]struct {
		src  string
		want []string
	}{
		"no @id":             {`permit (principal, action, resource);`, []string{"p.cedar:1", "no @id"}},
		"duplicate @id":      {permitAgents + permitAgents, []string{"p.cedar:3", "duplicate @id", `@id("agents-connect")`}},
		"unknown annotation": {`@id("x") @aproval("required") permit (principal, action, resource);`, []string{"unknown annotation @aproval"}},
		"bad obligation":     {`@id("x") @mask("scramble") permit (principal, action, resource);`, []string{`@mask("scramble")`}},
		"unknown entity type": {`@id("x") permit (principal is User, action, resource);`,
			[]string{"p.cedar:1", `@id("x")`}},
		"unknown attribute": {`@id("x") permit (principal, action == Action::"connect", resource) when { principal.nmae == "a" };`,
			[]string{`@id("x")`}},
		"syntax error": {`@id("x") permit (principal action, resource);`, []string{"p.cedar"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writePolicies(t, dir, map[string]string{"p.cedar": tc.src})
			_, err := New(Config{Dir: dir, Schema: testSchema(t)})
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	t.Run("empty directory", func(t *testing.T) {
		if _, err := New(Config{Dir: t.TempDir(), Schema: testSchema(t)}); err == nil {
			t.Fatal("an empty directory loaded")
		}
	})
}

// TestReloadUnderLoad swaps between two valid sets while decisions run, then tries an invalid set.
// Every decision must come from one whole set, and a refused set never replaces a good one.
func TestReloadUnderLoad(t *testing.T) {
	setA := permitAgents + `@id("a-marker") permit (principal in Group::"agents", action == Action::"connect", resource == Target::"shop");`
	setB := permitAgents + `@id("b-marker") forbid (principal in Group::"agents", action == Action::"connect", resource == Target::"shop");`
	e, dir := newEngine(t, map[string]string{"p.cedar": setA})
	req := connectReq("spiffe://example.org/agent/a", "")
	var stop atomic.Bool
	var mixed, decisions atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				d := e.Decide(req)
				decisions.Add(1)
				a, b := false, false
				for _, r := range d.Reasons {
					a = a || r == "a-marker"
					b = b || r == "b-marker"
				}
				// Set A allows with a-marker among the reasons; set B denies with b-marker.
				if !(d.Allow && a && !b) && !(!d.Allow && b && !a) {
					mixed.Add(1)
				}
			}
		}()
	}
	for i := range 50 {
		src := setA
		if i%2 == 0 {
			src = setB
		}
		writePolicies(t, dir, map[string]string{"p.cedar": src})
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	before := e.Digest()
	writePolicies(t, dir, map[string]string{"p.cedar": `@id("broken") permit (principal, action, resource) when { principal.nope };`})
	if err := e.Reload(); err == nil {
		t.Fatal("an invalid set was accepted")
	}
	if e.Digest() != before || len(e.Policies()) != 2 {
		t.Fatalf("a refused set changed the set in force")
	}
	stop.Store(true)
	wg.Wait()
	if mixed.Load() != 0 {
		t.Fatalf("%d of %d decisions saw a mix of two policy sets", mixed.Load(), decisions.Load())
	}
	if e.ReloadFailures.Load() != 1 {
		t.Fatalf("ReloadFailures = %d", e.ReloadFailures.Load())
	}
}

func TestIndexMatchesFullScan(t *testing.T) {
	files := map[string]string{"p.cedar": permitAgents + `
@id("any-action") permit (principal == Workload::"spiffe://example.org/agent/b", action, resource);
@id("in-set") permit (principal, action in [Action::"connect", Action::"credential:use"], resource) when { principal.trustDomain == "example.org" && context.hourUTC < 2 };
@id("by-type") forbid (principal, action, resource is Target) when { resource.environment == "prod" };
@id("by-parent") permit (principal, action == Action::"column:read-unmasked", resource in Target::"shop");`}
	e, _ := newEngine(t, files)
	for _, id := range []string{"spiffe://example.org/agent/a", "spiffe://example.org/agent/b", "spiffe://example.org/x"} {
		req := connectReq(id, "")
		a, b := e.Decide(req), e.FullScan(req)
		if a.Allow != b.Allow || fmt.Sprint(a.Reasons) != fmt.Sprint(b.Reasons) {
			t.Errorf("%s: indexed %v %v, full scan %v %v", id, a.Allow, a.Reasons, b.Allow, b.Reasons)
		}
	}
	// Policies whose scope excludes an action are not even evaluated for it.
	if n := len(e.current.Load().index.policies(Action("connect"), TypeTarget)); n != 4 {
		t.Errorf("connect on Target evaluates %d policies, want 4", n)
	}
}

func TestGroupPatternsAreSegmentExact(t *testing.T) {
	cases := []struct {
		pattern, id string
		want        bool
	}{
		{"spiffe://example.org/agent/a", "spiffe://example.org/agent/a", true},
		{"spiffe://example.org/agent/a", "spiffe://example.org/agent/a-evil", false},
		{"spiffe://example.org/agent/a", "spiffe://example.org/agent/a/x", false},
		{"spiffe://example.org/agent/*", "spiffe://example.org/agent/a", true},
		{"spiffe://example.org/agent/*", "spiffe://example.org/agent/a/x", false},
		{"spiffe://example.org/agent/*", "spiffe://example.org/agent", false},
		{"spiffe://example.org/agent/**", "spiffe://example.org/agent/a/x", true},
		{"spiffe://example.org/agent/**", "spiffe://example.org/agent", false},
		{"spiffe://example.org/agent/*", "spiffe://example.org.evil/agent/a", false},
		{"spiffe://example.org/agent/*", "spiffe://evil.org/agent/a", false},
	}
	for _, tc := range cases {
		if got := matchID(tc.pattern, spiffeid.RequireFromString(tc.id)); got != tc.want {
			t.Errorf("matchID(%q, %q) = %v, want %v", tc.pattern, tc.id, got, tc.want)
		}
	}
	for _, bad := range []string{"spiffe://example.org/agent/a*", "spiffe://example.org/**/x", "example.org/agent"} {
		if ValidateIDPattern(bad) == nil {
			t.Errorf("ValidateIDPattern(%q) accepted it", bad)
		}
	}
}

// TestReadyNeedsAPolicySetInForce: an engine with a loaded set is ready; one without is not.
func TestReadyNeedsAPolicySetInForce(t *testing.T) {
	loaded, _ := newEngine(t, map[string]string{"p.cedar": `@id("p") permit (principal, action, resource);`})
	for _, c := range []struct {
		name  string
		e     *Engine
		ready bool
	}{
		{"loaded", loaded, true},
		{"no set", &Engine{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.e.Ready(); (err == nil) != c.ready {
				t.Errorf("Ready = %v", err)
			}
		})
	}
}

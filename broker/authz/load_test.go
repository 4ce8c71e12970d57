package authz

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestSyntaxErrorsSayWhatAndWhere loads broken policies: each refusal names file:line:col of the token
// at fault, in a sentence, instead of cedar-go's "exact got resource want ,".
func TestSyntaxErrorsSayWhatAndWhere(t *testing.T) {
	cases := []struct {
		name, src string
		want      string // after "FILE:"
	}{
		{"missing comma in the scope", `@id("a") permit (principal, action == Action::"connect" resource);`,
			`1:57: syntax error: expected "," but found "resource": is a "," missing before it?`},
		{"missing semicolon", `@id("a") permit (principal, action, resource)`,
			`1:46: syntax error: the file ends where ";" was expected: end each policy with a semicolon`},
		{"unknown effect", `@id("a") allow (principal, action, resource);`,
			`1:10: syntax error: a policy starts with "permit" or "forbid" (after its annotations), not "allow"`},
		{"unterminated string", `@id("a") permit (principal, action, resource) when { "abc };`,
			`1:54: syntax error: a string is not closed`},
		{"missing comma in a set, on line 4", "@id(\"a\")\npermit (\n  principal,\n  action in [Action::\"x\" Action::\"y\"],\n  resource\n);",
			`4:26: syntax error: expected "," between elements, or the closing bracket, but found "Action"`},
		{"unknown function", `@id("a") permit (principal, action, resource) when { foo(1) };`,
			`1:54: syntax error: "foo" is not a Cedar function`},
		{"missing operand", `@id("a") permit (principal, action, resource) when { principal.x == };`,
			`1:69: syntax error: expected a value`},
		{"duplicate annotation", `@id("a") @id("b") permit (principal, action, resource);`,
			`1:11: syntax error: the annotation @id appears twice on one policy`},
		{"unknown method after a comment", "@id(\"a\") permit (principal, action, resource) // bogus\nunless { principal.x.bogus() };",
			`2:22: syntax error: "bogus" is not a Cedar method`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writePolicies(t, dir, map[string]string{"p.cedar": tc.src})
			_, err := LoadDir(dir, testSchema(t))
			var le *LoadError
			if !errors.As(err, &le) || len(le.Problems) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			want := filepath.Join(dir, "p.cedar") + ":" + tc.want
			if !strings.HasPrefix(le.Problems[0], want) {
				t.Errorf("problem\n  %s\nwant it to start with\n  %s", le.Problems[0], want)
			}
			for _, raw := range []string{"<input>", "exact got", "parse error at"} {
				if strings.Contains(le.Problems[0], raw) {
					t.Errorf("problem still holds cedar-go's wording %q: %s", raw, le.Problems[0])
				}
			}
		})
	}
}

// FuzzSyntaxError holds the rewrite to its promises on any input cedar-go refuses: it does not panic,
// and the position it names is inside the file.
func FuzzSyntaxError(f *testing.F) {
	for _, s := range []string{
		`@id("a") permit (principal, action == Action::"connect" resource);`,
		`@id("a") permit (principal, action, resource) when { {a: 1, a: 2} };`,
		`@id("a") permit (principal, action, resource) when { principal.x.isEmpty(1) };`,
		"/* open comment", `@id("\q") permit (principal, action, resource);`, "permit (principal, action, resource) when { 1 =",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "p.cedar"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "p.cedar")
		_, problems := loadFile(path)
		lines := bytes.Count(src, []byte("\n")) + 1
		for _, p := range problems {
			rest, ok := strings.CutPrefix(p, path+":")
			if !ok {
				t.Fatalf("problem does not name the file: %s", p)
			}
			// "LINE:COL: ..." when there is a position, " syntax error: ..." or another message when not.
			l, _, _ := strings.Cut(rest, ":")
			if line, err := strconv.Atoi(l); err == nil && (line < 1 || line > lines) {
				t.Fatalf("problem names line %d of a %d-line file: %s", line, lines, p)
			}
		}
	})
}

// TestPolicyDirMayBeASymlink loads policies and finds their tests through a symbolic link to their
// directory, as the demo's .demo/policies is, and names the files through the link. policytest runs
// the tests through it.
func TestPolicyDirMayBeASymlink(t *testing.T) {
	real := t.TempDir()
	writePolicies(t, real, map[string]string{"p.cedar": permitAgents, "p.test.hcl": "# run by policytest\n"})
	link := filepath.Join(t.TempDir(), "policies")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadDir(link, testSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].File != filepath.Join(link, "p.cedar") {
		t.Fatalf("policies %+v, want one from %s", ps, filepath.Join(link, "p.cedar"))
	}
	tests, err := TestFiles(link)
	if err != nil {
		t.Fatal(err)
	}
	if len(tests) != 1 || tests[0] != filepath.Join(link, "p.test.hcl") {
		t.Fatalf("test files %v, want one from %s", tests, filepath.Join(link, "p.test.hcl"))
	}
}

// TestPolicyDirMayBeAConfigMapVolume loads a Kubernetes ConfigMap volume's layout: the files in a
// hidden timestamped directory, "..data" linking to it, and each file linked again beside it. Each
// policy and test file is read once, through its name in the mount.
func TestPolicyDirMayBeAConfigMapVolume(t *testing.T) {
	mount := t.TempDir()
	stamp := filepath.Join(mount, "..2026_12_06_22_40_00.123")
	if err := os.Mkdir(stamp, 0o755); err != nil {
		t.Fatal(err)
	}
	writePolicies(t, stamp, map[string]string{"p.cedar": permitAgents, "p.test.hcl": "# run by policytest\n"})
	if err := os.Symlink(filepath.Base(stamp), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p.cedar", "p.test.hcl"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(mount, name)); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := LoadDir(mount, testSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].File != filepath.Join(mount, "p.cedar") {
		t.Fatalf("policies %+v, want one from %s", ps, filepath.Join(mount, "p.cedar"))
	}
	if tests, err := TestFiles(mount); err != nil || len(tests) != 1 || tests[0] != filepath.Join(mount, "p.test.hcl") {
		t.Fatalf("test files %v %v, want one", tests, err)
	}
}

// TestRefusedSetIsLoggedOncePerChange keeps a broken set on disk across many reload intervals: it is
// logged and counted once, again only when the files change, and again after a good set in between.
func TestRefusedSetIsLoggedOncePerChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		writePolicies(t, dir, map[string]string{"p.cedar": permitAgents})
		var logs bytes.Buffer
		e, err := New(Config{Dir: dir, Schema: testSchema(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go e.Watch(ctx, time.Second)
		refusals := func() int { return strings.Count(logs.String(), "level=ERROR") }
		wait := func(d time.Duration) {
			time.Sleep(d)
			synctest.Wait()
		}
		steps := []struct {
			name  string
			src   string
			count int // refusals logged so far
		}{
			{"broken", `@id("broken") permit (principal, action, resource) when { principal.nope };`, 1},
			{"broken another way", `@id("broken") permit (principal, action resource);`, 2},
			{"fixed", permitAgents, 2},
			{"broken as before", `@id("broken") permit (principal, action, resource) when { principal.nope };`, 3},
		}
		for _, s := range steps {
			writePolicies(t, dir, map[string]string{"p.cedar": s.src})
			wait(30 * time.Second) // thirty reload intervals
			if got := refusals(); got != s.count {
				t.Fatalf("%s: %d refusals logged, want %d:\n%s", s.name, got, s.count, logs.String())
			}
			if got := e.ReloadFailures.Load(); got != int64(s.count) {
				t.Fatalf("%s: ReloadFailures = %d, want %d", s.name, got, s.count)
			}
		}
		if e.Reload() == nil {
			t.Fatal("Reload of a refused set returned no error")
		}
		if got := refusals(); got != 3 {
			t.Fatalf("an explicit Reload of the same refused set logged again: %d", got)
		}
		cancel()
	})
}

// TestCanAsksEveryWorkloadActionOfTheSchema lists capabilities over a catalog with every kind of
// resource: each action the schema lets a workload take appears, on each resource type it applies to.
func TestCanAsksEveryWorkloadActionOfTheSchema(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"p.cedar": permitAgents})
	cat := NewCatalog([]CatalogTarget{{Name: "shop", Tables: []CatalogTable{{Name: "public.t", Columns: []CatalogColumn{{Name: "c"}}}},
		Roles: []CredentialRole{{Name: "r"}}}}, []GroupRule{{Name: "agents", IDs: []string{"spiffe://example.org/agent/*"}}})
	caps, err := NewAuthorizer(e, cat).Can(t.Context(), spiffeid.RequireFromString("spiffe://example.org/agent/a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range caps {
		listed[c.Action+" "+c.Resource] = true
	}
	for _, want := range []string{
		`connect Target::"shop"`, `credential:use CredentialRole::"shop/r"`, `column:read-unmasked Column::"shop/public.t.c"`,
		`sql:select Table::"shop/public.t"`, `sql:select Target::"shop"`, `sql:insert Table::"shop/public.t"`,
		`sql:update Table::"shop/public.t"`, `sql:delete Table::"shop/public.t"`, `sql:ddl Target::"shop"`,
		`sql:admin Target::"shop"`, `sql:admin Table::"shop/public.t"`, `sql:transaction Target::"shop"`, `sql:utility Target::"shop"`,
	} {
		t.Run(want, func(t *testing.T) {
			if !listed[want] {
				t.Errorf("not listed; listed: %v", listed)
			}
		})
	}
}

// TestCanCarriesEvaluationErrors: a capability denied because a policy failed to evaluate says so,
// with the policy and its error, whatever the policy's effect; one decided without errors has none.
func TestCanCarriesEvaluationErrors(t *testing.T) {
	const overflow = `when { context.time * 9223372036854775807 > 0 }`
	cases := []struct {
		name   string
		policy string
		allow  bool
		errors []string
	}{
		{"erroring permit", `@id("clear-overflow")
permit (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop") ` + overflow + `;`,
			false, []string{"clear-overflow"}},
		{"erroring forbid", `@id("clear")
permit (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop");
@id("hide-overflow")
forbid (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop") ` + overflow + `;`,
			false, []string{"hide-overflow"}},
		{"no error", `@id("clear")
permit (principal in Group::"agents", action == Action::"column:read-unmasked", resource in Target::"shop");`,
			true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEngine(t, map[string]string{"p.cedar": permitAgents, "q.cedar": tc.policy})
			cat := NewCatalog([]CatalogTarget{{Name: "shop", Tables: []CatalogTable{{Name: "public.t", Columns: []CatalogColumn{{Name: "c"}}}}}},
				[]GroupRule{{Name: "agents", IDs: []string{"spiffe://example.org/agent/*"}}})
			caps, err := NewAuthorizer(e, cat).Can(t.Context(), spiffeid.RequireFromString("spiffe://example.org/agent/a"), nil)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(caps, func(c Capability) bool { return c.Action == "column:read-unmasked" })
			if i < 0 {
				t.Fatalf("column:read-unmasked not listed: %v", caps)
			}
			c := caps[i]
			var ids []string
			for _, pe := range c.Errors {
				ids = append(ids, pe.PolicyID)
				if !strings.Contains(pe.Message, "overflow") {
					t.Errorf("error of %s: %q, want the evaluation error", pe.PolicyID, pe.Message)
				}
			}
			if c.Allow != tc.allow || !slices.Equal(ids, tc.errors) {
				t.Fatalf("allow %v errors %v, want allow %v errors %v", c.Allow, ids, tc.allow, tc.errors)
			}
		})
	}
}

// TestRefusedSetIsNotParsedAgain: files refused once are not parsed again at every reload interval,
// and an explicit Reload still returns why they were refused; once they change, they are parsed again.
func TestRefusedSetIsNotParsedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		writePolicies(t, dir, map[string]string{"p.cedar": permitAgents})
		e, err := New(Config{Dir: dir, Schema: testSchema(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go e.Watch(ctx, time.Second)
		parsed := func() int {
			e.reload.Lock()
			defer e.reload.Unlock()
			return e.parsed
		}
		steps := []struct {
			name   string
			src    string
			parsed int // sets parsed so far
		}{
			{"broken", `@id("broken") permit (principal, action resource);`, 2},
			{"still broken", "", 2},
			{"broken another way", `@id("broken") permit (principal, action, resource) when { principal.nope };`, 3},
			{"fixed", permitAgents + "// fixed\n", 4},
		}
		for _, s := range steps {
			if s.src != "" {
				writePolicies(t, dir, map[string]string{"p.cedar": s.src})
			}
			time.Sleep(30 * time.Second) // thirty reload intervals
			synctest.Wait()
			if got := parsed(); got != s.parsed {
				t.Fatalf("%s: %d sets parsed, want %d", s.name, got, s.parsed)
			}
			if s.name == "still broken" {
				if err := e.Reload(); err == nil || !strings.Contains(err.Error(), "p.cedar") {
					t.Fatalf("Reload of the refused set: %v, want the refusal naming p.cedar", err)
				}
			}
		}
		cancel()
	})
}

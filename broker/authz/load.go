package authz

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// Limits on what a policy directory may hold.
const (
	MaxPolicyFileBytes = 1 << 20
	MaxPolicies        = 10000
)

// Annotations a policy may carry. Any other is refused, so that a typo such as @aproval cannot silently
// drop an obligation.
var (
	annotationValues = map[string][]string{
		"approval": {"required"},
		"record":   {"metadata", "full"},
		"mask":     {"partial", "hash", "redact", "null"},
		// approvals is how many distinct people must approve a held request (approve.go).
		"approvals": {"1", "2", "3"},
	}
	freeAnnotations = []string{"id", "reason", "description"}
)

// LoadError lists every problem found in a policy directory, each naming file:line and the policy's @id.
type LoadError struct {
	Problems []string
}

func (e *LoadError) Error() string {
	return "authz: policy set refused:\n  " + strings.Join(e.Problems, "\n  ")
}

// Schema is a parsed, resolved Cedar schema.
type Schema struct {
	resolved  *resolved.Schema
	validator *validate.Validator
	// http are the generated records' attributes (see httpRecordAttrs).
	http map[string]map[string]string
	// mcp is the generated MCPArgs (see MCPArgsSchema); nil when the catalog has no mcp target.
	mcp *mcpArgs
}

// ParseSchema parses a schema in Cedar's schema syntax, with the HTTP records of an empty catalog
// (see ParseSchemaFor): the schema of a broker without routes.
func ParseSchema(name string, src []byte) (*Schema, error) {
	return ParseSchemaFor(name, src, nil)
}

// ParseSchemaFor parses a schema in Cedar's schema syntax, with the record types HTTPParams,
// HTTPQuery and HTTPBody generated from the catalog's routes (HTTPRecords) appended to it: what the
// HTTP context of the schema refers to. A nil catalog has no routes.
func ParseSchemaFor(name string, src []byte, c *Catalog) (*Schema, error) {
	gen, err := HTTPRecords(c)
	if err != nil {
		return nil, err
	}
	recs, _ := httpRecordAttrs(c) // HTTPRecords checked them
	args, err := buildMCPArgs(catalogTools(c))
	if err != nil {
		return nil, err
	}
	gen += args.render()
	full := make([]byte, 0, len(src)+len(gen)+1)
	full = append(append(append(full, src...), '\n'), gen...)
	var s schema.Schema
	s.SetFilename(name)
	if err := s.UnmarshalCedar(full); err != nil {
		return nil, fmt.Errorf("authz: schema %s: %w", name, err)
	}
	r, err := s.Resolve()
	if err != nil {
		return nil, fmt.Errorf("authz: schema %s: %w", name, err)
	}
	if !hasMCPTarget(c) {
		args = nil // no MCP decision can happen: see undeclaredMCPNames
	}
	return &Schema{resolved: r, validator: validate.New(r, validate.WithStrict()), http: recs, mcp: args}, nil
}

// Policy is one loaded policy.
type Policy struct {
	ID     string
	File   string
	Line   int
	Policy *cedar.Policy
}

// policyFiles lists the *.cedar and *.cedar.json files below dir, sorted.
func policyFiles(dir string) ([]string, error) {
	return filesBelow(dir, func(path string) bool {
		return strings.HasSuffix(path, ".cedar") || strings.HasSuffix(path, ".cedar.json")
	})
}

// TestFiles lists the policy test files (*.test.hcl) below dir, sorted, as the policies are found.
func TestFiles(dir string) ([]string, error) {
	return filesBelow(dir, func(path string) bool { return strings.HasSuffix(path, ".test.hcl") })
}

// filesBelow lists the regular files below dir whose path matches, sorted. dir itself may be a
// symbolic link (the demo's .demo/policies is one): it is followed, and the paths returned stay
// under dir as given, so messages name the files the way the user does.
func filesBelow(dir string, match func(path string) bool) ([]string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("authz: policy directory: %w", err)
	}
	var files []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Names beginning ".." are a Kubernetes ConfigMap volume's own: the timestamped directory
		// holding the files and the "..data" link to it, beside which each file is linked again.
		// Walking them would read every policy twice.
		if path != root && strings.HasPrefix(d.Name(), "..") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !match(path) {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		files = append(files, filepath.Join(dir, rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	slices.Sort(files)
	return files, nil
}

// LoadDir reads every *.cedar and *.cedar.json file below dir and validates each policy.
func LoadDir(dir string, s *Schema) ([]Policy, error) {
	files, err := policyFiles(dir)
	if err != nil {
		return nil, err
	}
	var all []Policy
	var problems []string
	for _, f := range files {
		ps, errs := loadFile(f)
		all = append(all, ps...)
		problems = append(problems, errs...)
	}
	problems = append(problems, check(all, s)...)
	if len(problems) > 0 {
		return nil, &LoadError{Problems: problems}
	}
	if len(all) == 0 {
		// Deny-all is a legitimate policy, but it should be one on purpose: an empty or mistyped
		// directory is far more likely.
		return nil, &LoadError{Problems: []string{fmt.Sprintf("%s: no policies (*.cedar, *.cedar.json) found", dir)}}
	}
	return all, nil
}

func loadFile(path string) ([]Policy, []string) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, []string{err.Error()}
	}
	if st.Size() > MaxPolicyFileBytes {
		return nil, []string{fmt.Sprintf("%s: larger than %d bytes", path, MaxPolicyFileBytes)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var list []*cedar.Policy
	if strings.HasSuffix(path, ".json") {
		var set cedar.PolicySet
		if err := set.UnmarshalJSON(b); err != nil {
			return nil, []string{fmt.Sprintf("%s: %v", path, err)}
		}
		for _, p := range set.All() {
			p.SetFilename(path)
			list = append(list, p)
		}
	} else {
		pl, err := cedar.NewPolicyListFromBytes(path, b)
		if err != nil {
			return nil, []string{syntaxError(path, b, err).Error()}
		}
		list = pl
	}
	var out []Policy
	for _, p := range list {
		pos := p.Position()
		out = append(out, Policy{ID: string(p.Annotations()["id"]), File: path, Line: pos.Line, Policy: p})
	}
	return out, nil
}

// check enforces @id, the annotations, and strict validation against the schema.
func check(all []Policy, s *Schema) []string {
	var problems []string
	seen := map[string]Policy{}
	if len(all) > MaxPolicies {
		problems = append(problems, fmt.Sprintf("%d policies, over the limit of %d", len(all), MaxPolicies))
	}
	for _, p := range all {
		where := fmt.Sprintf("%s:%d", p.File, p.Line)
		if p.ID == "" {
			problems = append(problems, where+": policy has no @id annotation; every policy needs a unique @id(\"...\")")
			continue
		}
		where += fmt.Sprintf(" @id(%q)", p.ID)
		if prev, dup := seen[p.ID]; dup {
			problems = append(problems, fmt.Sprintf("%s: duplicate @id, first used at %s:%d", where, prev.File, prev.Line))
		}
		seen[p.ID] = p
		for k, v := range p.Policy.Annotations() {
			key := string(k)
			if allowed, ok := annotationValues[key]; ok {
				if !slices.Contains(allowed, string(v)) {
					problems = append(problems, fmt.Sprintf("%s: @%s(%q): use one of %q", where, key, v, allowed))
				}
			} else if !slices.Contains(freeAnnotations, key) {
				problems = append(problems, fmt.Sprintf("%s: unknown annotation @%s (known: approval, approvals, record, mask, id, reason, description)", where, key))
			}
		}
		if s != nil {
			if err := s.validator.Policy(p.ID, (*xast.Policy)(p.Policy.AST())); err != nil {
				for _, e := range flatten(err) {
					problems = append(problems, fmt.Sprintf("%s: %v", where, e))
				}
			}
			for _, e := range undeclaredHTTPNames(p.Policy, s.http) {
				problems = append(problems, fmt.Sprintf("%s: %s", where, e))
			}
			for _, e := range undeclaredMCPNames(p.Policy, s.mcp) {
				problems = append(problems, fmt.Sprintf("%s: %s", where, e))
			}
		}
	}
	return problems
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

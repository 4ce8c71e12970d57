package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/authz/policytest"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/policies"
)

func policyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name, err := subcommand("policy", args, stdout, stderr)
	if err != nil {
		return err
	}
	fs := newFlags(name)
	switch args[0] {
	case "validate":
		cfgPath := fs.String("config", "", "the broker's configuration `file`: validate its policy.dir, with the HTTP records its catalog generates (without it, those of the catalogs of the test files below DIR)")
		if err := parseFlags(fs, name, args[1:], stdout, stderr); err != nil {
			return err
		}
		dir, cfg, err := policyDir(stderr, name, fs, *cfgPath)
		if err != nil {
			return err
		}
		var schema *authz.Schema
		if cfg != nil {
			schema, err = authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cfg.Catalog())
		} else {
			schema, err = policytest.Schema(dir, nil)
		}
		if err != nil {
			return err
		}
		ps, err := authz.LoadDir(dir, schema)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d policies, valid against the schema\n", dir, len(ps))
		return nil
	case "test":
		cfgPath := fs.String("config", "", "the broker's configuration `file`: test its policy.dir, with its catalog and groups for test files that declare none")
		tests := fs.String("tests", "", "directory of *.test.hcl files (default: the policy directory)")
		if err := parseFlags(fs, name, args[1:], stdout, stderr); err != nil {
			return err
		}
		dir, cfg, err := policyDir(stderr, name, fs, *cfgPath)
		if err != nil {
			return err
		}
		return policyTest(dir, *tests, cfg, stdout)
	case "explain":
		return policyExplain(fs, args[1:], stdout, stderr)
	case "schema":
		return policySchema(ctx, fs, args[1:], stdout, stderr)
	default: // "can"
		return policyCan(ctx, fs, args[1:], stdout, stderr)
	}
}

// policyDir is the policy directory a command works on: its one argument, or the configuration's
// policy.dir (with the configuration, for its catalog).
func policyDir(stderr io.Writer, name string, fs *flag.FlagSet, cfgPath string) (string, *config.Config, error) {
	switch {
	case cfgPath != "" && fs.NArg() > 0:
		return "", nil, usageError(stderr, name, "give a policy DIR or --config FILE, not both")
	case cfgPath == "" && fs.NArg() != 1:
		return "", nil, usageError(stderr, name, "give one policy DIR, or --config FILE")
	case cfgPath == "":
		return fs.Arg(0), nil, nil
	}
	cfg, err := loadPolicyConfig(cfgPath)
	if err != nil {
		return "", nil, err
	}
	return cfg.Policy.Dir, cfg, nil
}

func loadPolicyConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path, plugins())
	if err != nil {
		return nil, err
	}
	if cfg.Policy == nil {
		return nil, fmt.Errorf("%s has no policy block: connections are decided by allow_spiffe_ids, not Cedar", path)
	}
	return cfg, nil
}

// errTestsFailed makes `policy test` exit non-zero; the failures are already printed.
var errTestsFailed = errors.New("policy tests failed")

// policyTest runs the tests, against policies loaded with the HTTP records that the catalogs of the
// test files and of the configuration generate.
func policyTest(dir, tests string, cfg *config.Config, stdout io.Writer) error {
	if tests == "" {
		tests = dir
	}
	var catalogs []config.CatalogBlock
	var groups []config.GroupBlock
	if cfg != nil {
		catalogs, groups = cfg.Catalogs, cfg.Groups
	}
	schema, err := policytest.Schema(tests, catalogs)
	if err != nil {
		return err
	}
	e, err := authz.New(authz.Config{Dir: dir, Schema: schema, Logger: quietLogger()})
	if err != nil {
		return err
	}
	results, err := policytest.RunWith(e, tests, catalogs, groups)
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if len(r.Diff) == 0 {
			fmt.Fprintf(stdout, "ok    %s:%d %s\n", r.File, r.Line, r.Name)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s:%d %s\n", r.File, r.Line, r.Name)
		for _, d := range r.Diff {
			fmt.Fprintf(stdout, "        %s\n", d)
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return errTestsFailed
	}
	return nil
}

// loadAuthorizer loads the configuration and its policies, with the HTTP records its catalog
// generates, as the broker does.
func loadAuthorizer(path string) (*authz.Authorizer, *config.Config, error) {
	cfg, err := loadPolicyConfig(path)
	if err != nil {
		return nil, nil, err
	}
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cfg.Catalog())
	if err != nil {
		return nil, nil, err
	}
	e, err := authz.New(authz.Config{Dir: cfg.Policy.Dir, Schema: schema, Logger: quietLogger()})
	if err != nil {
		return nil, nil, err
	}
	return authz.NewAuthorizer(e, cfg.Catalog()), cfg, nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func policyExplain(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", "", "the broker's configuration `file` (policy dir, catalog, groups)")
	var spec authz.RequestSpec
	fs.StringVar(&spec.Principal, "principal", "", "the caller's SPIFFE ID")
	selectors := fs.String("selectors", "", "the caller's attested selectors, comma-separated")
	fs.BoolVar(&spec.Unattested, "unattested", false, "as if SPIRE had not been asked about the caller")
	fs.StringVar(&spec.Action, "action", "", "connect, sql:select, column:read-unmasked, column:use-masked, credential:use, http:get, field:read-unmasked, mcp:call, mcp:sampling, ... (default with --route: the route's method's action, or field:read-unmasked with --field; with --tool: mcp:call, or mcp:read-unmasked with --field)")
	fs.StringVar(&spec.Target, "target", "", "the target")
	fs.StringVar(&spec.Table, "table", "", "a table of the target, schema.name")
	fs.StringVar(&spec.Column, "column", "", "a column of the table")
	fs.StringVar(&spec.Role, "role", "", "a credential role of the target")
	fs.StringVar(&spec.Approval, "approval", "", "approval state: none, pending, approved, denied, expired")
	fs.IntVar(&spec.HourUTC, "hour", 12, "hour of the day, UTC")
	fs.StringVar(&spec.Use.Clause, "use", "", "for column:use-masked: where, join, order, group, having, window, function, limit, set-operation, write")
	fs.BoolVar(&spec.Use.Equality, "equality", false, "for column:use-masked: an equality with another column")
	withColumn := fs.String("with-column", "", "for column:use-masked: that other column, schema.table.column")
	hf := httpFlags(fs, &spec)
	mf := mcpFlags(fs, &spec)
	approverEmail := fs.String("approver", "", "for approve: the person's `email`")
	approverGroups := fs.String("approver-groups", "", "for approve: the person's groups, comma-separated")
	heldAction := fs.String("held-action", "", "for approve: the held operation's kind: sql, http or mcp")
	heldPolicies := fs.String("held-policies", "", "for approve: the @ids of the policies that held it, comma-separated")
	heldText := fs.String("held-text", "", "for approve: the held operation's text")
	if err := parseFlags(fs, "policy explain", args, stdout, stderr); err != nil {
		return err
	}
	if spec.Action == "approve" {
		if *approverEmail == "" || *heldAction == "" {
			return usageError(stderr, "policy explain", "approve needs --approver EMAIL and --held-action sql|http|mcp")
		}
		spec.Approver = &authz.Person{Email: *approverEmail, Groups: splitList(*approverGroups)}
		spec.Held = &authz.ApprovalRequest{Action: *heldAction, Text: *heldText, Policies: splitList(*heldPolicies)}
	}
	if err := mf.apply(&spec); err != nil {
		return usageError(stderr, "policy explain", "%v", err)
	}
	spec.Use.WithColumn = authz.ColumnID(spec.Target, *withColumn)
	if spec.Action == "" && spec.Route != "" {
		spec.Action = defaultHTTPAction(spec)
	}
	var missing []string
	for flag, v := range map[string]string{"--config": *cfgPath, "--principal": spec.Principal, "--action": spec.Action, "--target": spec.Target} {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return usageError(stderr, "policy explain", "%s required", strings.Join(missing, ", "))
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "policy explain", "unexpected argument %q", fs.Arg(0))
	}
	spec.Selectors = splitList(*selectors)
	az, _, err := loadAuthorizer(*cfgPath)
	if err != nil {
		return err
	}
	if err := hf.apply(az.Catalog, &spec); err != nil {
		return usageError(stderr, "policy explain", "%v", err)
	}
	if err := printExplain(stdout, az, spec); err != nil || !mf.listed {
		return err
	}
	return printListed(stdout, az, spec)
}

// printExplain shows how one request is decided, policy by policy.
func printExplain(stdout io.Writer, az *authz.Authorizer, spec authz.RequestSpec) error {
	req, err := authz.BuildRequest(az.Catalog, az.Static(), spec)
	if err != nil {
		return err
	}
	ex := az.Engine.Explain(req)
	verdict := "DENY"
	if ex.Decision.Allow {
		verdict = "ALLOW"
	}
	fmt.Fprintf(stdout, "decision   %s  (decision %s, policy set %s)\n", verdict, ex.Decision.ID, ex.Decision.PolicySet)
	fmt.Fprintf(stdout, "request    %s  %s  %s\n", req.Principal, req.Action.ID, req.Resource)
	fmt.Fprintf(stdout, "groups     %s\n", orNone(strings.Join(ex.Groups, ", ")))
	switch {
	case len(ex.Decision.Errors) > 0:
		fmt.Fprintf(stdout, "why        policy %s failed to evaluate, and any error denies\n", ex.Decision.Errors[0].PolicyID)
	case ex.Decision.Allow:
		fmt.Fprintf(stdout, "why        permitted by %s, and no forbid matched\n", strings.Join(ex.Decision.Reasons, ", "))
	case len(ex.Decision.Reasons) > 0:
		fmt.Fprintf(stdout, "why        forbidden by %s\n", strings.Join(ex.Decision.Reasons, ", "))
	default:
		fmt.Fprintln(stdout, "why        no permit matched (default deny)")
	}
	for _, id := range ex.Decision.Reasons {
		if p, ok := az.Engine.Policy(id); ok && p.Reason() != "" {
			fmt.Fprintf(stdout, "reason     %s: %s\n", id, p.Reason())
		}
	}
	if o := ex.Decision.Obligations; o != (authz.Obligations{}) {
		fmt.Fprintf(stdout, "obligations approval=%s record=%s mask=%s\n", orNone(o.Approval), orNone(o.Record), orNone(o.Mask))
	}
	fmt.Fprintf(stdout, "\n%d of %d policies can apply to this action and resource type:\n", len(ex.Outcomes), ex.Total)
	for _, o := range ex.Outcomes {
		state := "did not match"
		switch {
		case o.Error != "":
			state = "ERROR: " + o.Error
		case o.Satisfied:
			state = "matched"
		}
		fmt.Fprintf(stdout, "  %-6s %-28s %s:%d  %s\n", o.Effect, o.Policy.ID, o.Policy.File, o.Policy.Line, state)
		if r := o.Policy.Reason(); r != "" && o.Satisfied {
			fmt.Fprintf(stdout, "         %-28s @reason: %s\n", "", r)
		}
	}
	return nil
}

func policyCan(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", "", "the broker's configuration `file` (policy dir, catalog, groups)")
	selectors := fs.String("selectors", "", "the caller's attested selectors, comma-separated")
	asJSON := fs.Bool("json", false, "print JSON, for an agent's planner")
	if err := parseFlags(fs, "policy can", args, stdout, stderr); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError(stderr, "policy can", "--config FILE is required")
	}
	if fs.NArg() != 1 {
		return usageError(stderr, "policy can", "give one SPIFFE_ID, after the flags")
	}
	id, err := spiffeid.FromString(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("SPIFFE ID %q: %w", fs.Arg(0), err)
	}
	az, cfg, err := loadAuthorizer(*cfgPath)
	if err != nil {
		return err
	}
	return printCan(ctx, stdout, az, cfg, id, splitList(*selectors), *asJSON)
}

// printCan lists what id may do, what it reads masked, and the credential role of its sessions.
func printCan(ctx context.Context, stdout io.Writer, az *authz.Authorizer, cfg *config.Config, id spiffeid.ID, selectors []string, asJSON bool) error {
	caps, err := az.Can(ctx, id, selectors)
	if err != nil {
		return err
	}
	roles := sessionRoles(cfg, az, id, selectors)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"principal": id.String(), "policySet": az.Engine.Digest(), "capabilities": caps, "credentialRoles": roles})
	}
	fmt.Fprintf(stdout, "%s, under policy set %s:\n", id, az.Engine.Digest())
	for _, c := range caps {
		if c.Allow {
			fmt.Fprintln(stdout, strings.TrimRight(fmt.Sprintf("  may    %-22s %-45s %s", c.Action, c.Resource, obligationText(c.Obligations)), " "))
		}
	}
	for _, kind := range []struct{ action, title string }{
		{"column:read-unmasked", "Columns it reads masked (column:read-unmasked is denied):"},
		{authz.ActionFieldUnmasked, "Response fields it reads masked (field:read-unmasked is denied):"},
		{authz.ActionMCPUnmasked, "Tool result fields it reads masked (mcp:read-unmasked is denied):"},
	} {
		var masked []authz.Capability
		for _, c := range caps {
			if !c.Allow && c.Action == kind.action {
				masked = append(masked, c)
			}
		}
		if len(masked) > 0 {
			fmt.Fprintln(stdout, "\n"+kind.title)
		}
		for _, c := range masked {
			fmt.Fprintf(stdout, "  masked %-45s %s\n", c.Resource, maskText(c, cfg.Policy.DefaultMask, az.Engine))
		}
	}
	printMCPCan(stdout, caps)
	printSessionRoles(stdout, roles)
	return nil
}

// maskText says how a denied column is masked and which policy decided it. A policy that failed to
// evaluate is named as such: it denies whatever its effect, and a permit does not forbid.
func maskText(c authz.Capability, defaultMask string, e *authz.Engine) string {
	where := func(id string) string {
		n := "policy " + id
		if p, ok := e.Policy(id); ok {
			n += fmt.Sprintf(" (%s:%d)", p.File, p.Line)
		}
		return n
	}
	var who string
	switch {
	case len(c.Errors) > 0:
		var named []string
		for _, pe := range c.Errors {
			named = append(named, where(pe.PolicyID)+" failed to evaluate (any error denies): "+pe.Message)
		}
		who = strings.Join(named, "; ")
	case len(c.Reasons) == 0:
		who = "no policy permits reading it in clear (default deny)"
	default:
		var named []string
		for _, id := range c.Reasons {
			n := where(id)
			if p, ok := e.Policy(id); ok {
				if r := p.Reason(); r != "" {
					n += fmt.Sprintf(": %q", r)
				}
			}
			named = append(named, n)
		}
		who = "forbidden by " + strings.Join(named, "; ")
	}
	if c.Obligations.Mask != "" {
		return fmt.Sprintf("strategy %s, from @mask of the deciding policy; %s", c.Obligations.Mask, who)
	}
	return fmt.Sprintf("strategy %s, the policy block's default_mask (no deciding policy names a @mask); %s", defaultMask, who)
}

func obligationText(o authz.Obligations) string {
	var parts []string
	if o.Approval != "" {
		parts = append(parts, "approval="+o.Approval)
	}
	if o.Record != "" {
		parts = append(parts, "record="+o.Record)
	}
	return strings.Join(parts, " ")
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

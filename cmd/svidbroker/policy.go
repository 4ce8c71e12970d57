package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/policies"
)

const policyUsage = `usage:
  svidbroker policy validate DIR
  svidbroker policy test [--tests DIR] DIR
  svidbroker policy explain --config FILE --principal SPIFFE_ID [--selectors a,b] --action ACTION --target T [--table schema.name] [--column C] [--role R] [--approval STATE]
  svidbroker policy can --config FILE [--selectors a,b] [--json] SPIFFE_ID
`

func policyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return errUsage
	}
	schema, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("policy "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "validate":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, policyUsage)
			return errUsage
		}
		ps, err := authz.LoadDir(fs.Arg(0), schema)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d policies, valid against the schema\n", fs.Arg(0), len(ps))
		return nil
	case "test":
		tests := fs.String("tests", "", "directory of *.test.hcl files (default: the policy directory)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, policyUsage)
			return errUsage
		}
		return policyTest(fs.Arg(0), *tests, schema, stdout)
	case "explain":
		return policyExplain(fs, args[1:], schema, stdout, stderr)
	case "can":
		return policyCan(ctx, fs, args[1:], schema, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "svidbroker policy: unknown command %q\n%s", args[0], policyUsage)
		return errUsage
	}
}

// errTestsFailed makes `policy test` exit non-zero; the failures are already printed.
var errTestsFailed = errors.New("policy tests failed")

func policyTest(dir, tests string, schema *authz.Schema, stdout io.Writer) error {
	if tests == "" {
		tests = dir
	}
	e, err := authz.New(authz.Config{Dir: dir, Schema: schema, Logger: quietLogger()})
	if err != nil {
		return err
	}
	results, err := authz.RunTests(e, tests)
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

func loadAuthorizer(path string, schema *authz.Schema) (*authz.Authorizer, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if cfg.Policy == nil {
		return nil, fmt.Errorf("%s has no policy block: connections are decided by allow_spiffe_ids, not Cedar", path)
	}
	e, err := authz.New(authz.Config{Dir: cfg.Policy.Dir, Schema: schema, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	return authz.NewAuthorizer(e, authz.NewCatalog(cfg.Catalogs, cfg.Groups)), nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func policyExplain(fs *flag.FlagSet, args []string, schema *authz.Schema, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", "", "the broker's configuration `file` (policy dir, catalog, groups)")
	var spec authz.RequestSpec
	fs.StringVar(&spec.Principal, "principal", "", "the caller's SPIFFE ID")
	selectors := fs.String("selectors", "", "the caller's attested selectors, comma-separated")
	fs.BoolVar(&spec.Unattested, "unattested", false, "as if SPIRE had not been asked about the caller")
	fs.StringVar(&spec.Action, "action", "", "connect, sql:select, column:read-unmasked, credential:use, ...")
	fs.StringVar(&spec.Target, "target", "", "the target")
	fs.StringVar(&spec.Table, "table", "", "a table of the target, schema.name")
	fs.StringVar(&spec.Column, "column", "", "a column of the table")
	fs.StringVar(&spec.Role, "role", "", "a credential role of the target")
	fs.StringVar(&spec.Approval, "approval", "", "approval state: none, pending, approved, denied, expired")
	fs.IntVar(&spec.HourUTC, "hour", 12, "hour of the day, UTC")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" || spec.Principal == "" || spec.Action == "" || spec.Target == "" {
		fmt.Fprint(stderr, policyUsage)
		return errUsage
	}
	spec.Selectors = splitList(*selectors)
	az, err := loadAuthorizer(*cfgPath, schema)
	if err != nil {
		return err
	}
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
	}
	return nil
}

func policyCan(ctx context.Context, fs *flag.FlagSet, args []string, schema *authz.Schema, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", "", "the broker's configuration `file` (policy dir, catalog, groups)")
	selectors := fs.String("selectors", "", "the caller's attested selectors, comma-separated")
	asJSON := fs.Bool("json", false, "print JSON, for an agent's planner")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		fmt.Fprint(stderr, policyUsage)
		return errUsage
	}
	id, err := spiffeid.FromString(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("SPIFFE ID: %w", err)
	}
	az, err := loadAuthorizer(*cfgPath, schema)
	if err != nil {
		return err
	}
	caps, err := az.Can(ctx, id, splitList(*selectors))
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"principal": id.String(), "policySet": az.Engine.Digest(), "capabilities": caps})
	}
	fmt.Fprintf(stdout, "%s, under policy set %s:\n", id, az.Engine.Digest())
	for _, c := range caps {
		if !c.Allow {
			continue
		}
		fmt.Fprintf(stdout, "  may    %-22s %-45s %s\n", c.Action, c.Resource, obligationText(c.Obligations))
	}
	for _, c := range caps {
		if !c.Allow && c.Action == "column:read-unmasked" {
			mask := c.Obligations.Mask
			fmt.Fprintf(stdout, "  masked %-22s %-45s mask=%s\n", "(read-unmasked denied)", c.Resource, orNone(mask))
		}
	}
	return nil
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

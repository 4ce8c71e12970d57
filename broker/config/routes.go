package config

import (
	"fmt"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// routes checks the route blocks of a target's catalog: only an http target has routes, each parses
// (pattern, fields, declared query parameters and body members), no two of one method overlap, and a
// body member has one type across all routes, since policies see it as one attribute of
// context.body.
func (v *validator) routes(t *Target) {
	v.mcpTools(t)
	for _, cb := range v.c.Catalogs {
		if cb.Target != t.Name || len(cb.Routes) == 0 {
			continue
		}
		at := "catalog:" + t.Name
		if t.Protocol != "http" {
			v.fail("Routes of a non-HTTP target", fmt.Sprintf("catalog %q lists route blocks, but target %q has protocol %q: routes describe an http target's API. Remove them, or describe tables.",
				t.Name, t.Name, t.Protocol), at, "route:"+cb.Routes[0].Pattern)
			continue
		}
		parsed := true
		for _, b := range cb.Routes {
			if _, err := route.Parse(b); err != nil {
				v.fail("Invalid route", err.Error()+".", at, "route:"+b.Pattern)
				parsed = false
			}
		}
		if !parsed {
			continue
		}
		if _, err := route.NewTable(cb.Routes); err != nil {
			v.fail("Invalid route", err.Error()+".", at)
			continue
		}
	}
	// The records span every catalog: report a conflict once, under the first http target.
	for _, first := range v.c.Targets {
		if first.Protocol == "http" {
			if first.Name != t.Name {
				return
			}
			break
		}
	}
	if _, err := authz.HTTPRecords(NewCatalog(v.c.Catalogs, nil)); err != nil && t.Protocol == "http" {
		v.fail("Conflicting route declarations", err.Error()+".", "catalog:"+t.Name)
	}
}

// CheckRoutes checks the routes of catalog blocks that come from elsewhere than a configuration (a
// policy test file): only a catalog of kind "http" has routes, each parses, none overlaps another,
// and the generated Cedar records have one type per name.
func CheckRoutes(catalogs []CatalogBlock) error {
	for _, cb := range catalogs {
		if len(cb.Routes) == 0 {
			continue
		}
		if cb.Kind != "http" {
			return fmt.Errorf("config: catalog %q lists route blocks but has kind %q: routes describe an http target (kind = \"http\")", cb.Target, cb.Kind)
		}
		if _, err := route.NewTable(cb.Routes); err != nil {
			return fmt.Errorf("config: catalog %q: %w", cb.Target, err)
		}
	}
	if _, err := authz.HTTPRecords(NewCatalog(catalogs, nil)); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return checkMCPCatalogs(catalogs)
}

// RouteTable is the route table of an http target, from its catalog's route blocks: an empty table
// when it has none, so that every request is an unknown route.
func (c *Config) RouteTable(target string) (*route.Table, error) {
	found := false
	for _, t := range c.Targets {
		found = found || t.Name == target
	}
	if !found {
		return nil, fmt.Errorf("config: no target %q", target)
	}
	var blocks []route.Block
	for _, cb := range c.Catalogs {
		if cb.Target == target {
			blocks = append(blocks, cb.Routes...)
		}
	}
	t, err := route.NewTable(blocks)
	if err != nil {
		return nil, fmt.Errorf("config: target %q: %w", target, err)
	}
	return t, nil
}

// catalogRoutes converts route blocks to the catalog's routes. A block that does not parse is left
// out: Load and CheckRoutes refuse such catalogs before they are used.
func catalogRoutes(blocks []route.Block) []authz.CatalogRoute {
	var out []authz.CatalogRoute
	for _, b := range blocks {
		r, err := route.Parse(b)
		if err != nil {
			continue
		}
		cr := authz.CatalogRoute{Pattern: r.Pattern, Tags: r.Tags, Params: r.Params, Query: r.Query, Body: r.Body}
		for _, f := range b.Fields {
			cr.Fields = append(cr.Fields, authz.CatalogField{Path: f.Path, Tags: f.Tags})
		}
		out = append(out, cr)
	}
	return out
}

package authz

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// Entity types and actions of the schema.
const (
	TypeWorkload       types.EntityType = "Workload"
	TypeGroup          types.EntityType = "Group"
	TypeTarget         types.EntityType = "Target"
	TypeTable          types.EntityType = "Table"
	TypeColumn         types.EntityType = "Column"
	TypeCredentialRole types.EntityType = "CredentialRole"
	TypeRoute          types.EntityType = "Route"
	TypeField          types.EntityType = "Field"
)

// Action returns the UID of a schema action, such as "connect" or "sql:select".
func Action(name string) types.EntityUID { return types.NewEntityUID("Action", types.String(name)) }

// Catalog describes what policies talk about besides the caller: targets, their tables, tagged
// columns, routes, tagged response fields and credential roles, and groups of workloads. It comes from the broker's configuration.
type Catalog struct {
	Targets []CatalogTarget
	Groups  []GroupRule
}

// NewCatalog is the catalog of targets and group rules.
func NewCatalog(targets []CatalogTarget, groups []GroupRule) *Catalog {
	return &Catalog{Targets: targets, Groups: groups}
}

// CatalogTarget is a target's entry in the catalog.
type CatalogTarget struct {
	Name, Kind, Environment string
	Tags                    []string
	Tables                  []CatalogTable
	// Routes are an HTTP target's routes.
	Routes []CatalogRoute
	// Roles are the target's credential roles, least privileged first.
	Roles []CredentialRole
	// Tools are an mcp target's declared tools.
	Tools []CatalogTool
	// ToolSchemas are an mcp target's tools' input schemas (tool name -> inputSchema), filled from
	// its pin file when the catalog loads: what MCPArgs is generated from.
	ToolSchemas map[string]json.RawMessage
}

// CatalogTable is a table, named "schema.table".
type CatalogTable struct {
	Name    string
	Tags    []string
	Columns []CatalogColumn
}

// CatalogColumn is a column of a table.
type CatalogColumn struct {
	Name string
	Tags []string
}

// CredentialRole is a backend role the broker may obtain credentials for.
type CredentialRole struct {
	Name   string
	Covers []string // actions the role is meant for
}

// GroupRule puts workloads into a Group: by SPIFFE ID pattern, or by holding all of some selectors.
type GroupRule struct {
	Name string
	// IDs are SPIFFE IDs or patterns matched segment by segment: "*" matches exactly one segment and a
	// final "**" one or more. Nothing is ever matched by string prefix.
	IDs []string
	// Selectors, if any, must all be among the workload's attested selectors.
	Selectors []string
}

// UIDs of catalog entities.
func TargetUID(target string) types.EntityUID {
	return types.NewEntityUID(TypeTarget, types.String(target))
}
func TableUID(target, table string) types.EntityUID {
	return types.NewEntityUID(TypeTable, types.String(target+"/"+table))
}
func ColumnUID(target, table, column string) types.EntityUID {
	return types.NewEntityUID(TypeColumn, types.String(target+"/"+table+"."+column))
}
func RoleUID(target, role string) types.EntityUID {
	return types.NewEntityUID(TypeCredentialRole, types.String(target+"/"+role))
}
func WorkloadUID(id spiffeid.ID) types.EntityUID {
	return types.NewEntityUID(TypeWorkload, types.String(id.String()))
}

// Entities returns the catalog's entities.
func (c *Catalog) Entities() types.EntityMap {
	m := types.EntityMap{}
	add := func(uid types.EntityUID, parent *types.EntityUID, attrs types.RecordMap) {
		e := types.Entity{UID: uid, Attributes: types.NewRecord(attrs)}
		if parent != nil {
			e.Parents = types.NewEntityUIDSet(*parent)
		}
		m[uid] = e
	}
	for _, g := range c.Groups {
		add(types.NewEntityUID(TypeGroup, types.String(g.Name)), nil, nil)
	}
	for _, t := range c.Targets {
		tu := TargetUID(t.Name)
		add(tu, nil, types.RecordMap{"kind": types.String(t.Kind), "environment": types.String(t.Environment), "tags": stringSet(t.Tags)})
		for _, tb := range t.Tables {
			schema, name, ok := strings.Cut(tb.Name, ".")
			if !ok {
				schema, name = "public", tb.Name
			}
			tbu := TableUID(t.Name, schema+"."+name)
			add(tbu, &tu, types.RecordMap{"name": types.String(name), "schema": types.String(schema), "tags": stringSet(tb.Tags)})
			for _, col := range tb.Columns {
				add(ColumnUID(t.Name, schema+"."+name, col.Name), &tbu, types.RecordMap{"name": types.String(col.Name), "tags": stringSet(col.Tags)})
			}
		}
		for _, r := range t.Routes {
			ru := RouteUID(t.Name, r.Pattern)
			method, path, _ := strings.Cut(r.Pattern, " ")
			add(ru, &tu, types.RecordMap{"method": types.String(method), "path": types.String(path), "tags": stringSet(r.Tags)})
			for _, f := range r.Fields {
				add(FieldUID(t.Name, r.Pattern, f.Path), &ru, types.RecordMap{"path": types.String(f.Path), "tags": stringSet(f.Tags)})
			}
		}
		mcpEntities(t, add)
		for rank, r := range t.Roles {
			add(RoleUID(t.Name, r.Name), &tu, types.RecordMap{"name": types.String(r.Name), "rank": types.Long(rank), "covers": stringSet(r.Covers)})
		}
	}
	return m
}

// Workload returns the caller's entity: its SPIFFE ID's parts, what SPIRE attested, and the groups
// its ID or selectors put it in.
func (c *Catalog) Workload(p identity.Peer) types.Entity {
	att := p.Attestation
	if att == nil {
		att = &identity.Attestation{}
	}
	var parents []types.EntityUID
	for _, g := range c.Groups {
		if g.matches(p.ID, att.Selectors) {
			parents = append(parents, types.NewEntityUID(TypeGroup, types.String(g.Name)))
		}
	}
	parentID := ""
	if !att.ParentID.IsZero() {
		parentID = att.ParentID.String()
	}
	attrs := types.RecordMap{
		"spiffeId":        types.String(p.ID.String()),
		"trustDomain":     types.String(p.ID.TrustDomain().Name()),
		"path":            types.String(p.ID.Path()),
		"segments":        stringSet(p.Segments()),
		"selectors":       stringSet(att.Selectors),
		"nodeSelectors":   stringSet(att.NodeSelectors),
		"nodeAttestation": types.String(att.NodeAttestationType),
		"parentId":        types.String(parentID),
		"attested":        types.Boolean(p.Attestation != nil),
	}
	if att.Hint != "" {
		attrs["hint"] = types.String(att.Hint)
	}
	return types.Entity{UID: WorkloadUID(p.ID), Parents: types.NewEntityUIDSet(parents...), Attributes: types.NewRecord(attrs)}
}

func (g GroupRule) matches(id spiffeid.ID, selectors []string) bool {
	for _, pat := range g.IDs {
		if matchID(pat, id) {
			return true
		}
	}
	if len(g.Selectors) == 0 {
		return false
	}
	for _, s := range g.Selectors {
		if !slices.Contains(selectors, s) {
			return false
		}
	}
	return true
}

// matchID matches a SPIFFE ID against a pattern segment by segment.
func matchID(pattern string, id spiffeid.ID) bool {
	rest, ok := strings.CutPrefix(pattern, "spiffe://")
	if !ok {
		return false
	}
	td, path, _ := strings.Cut(rest, "/")
	if td != id.TrustDomain().Name() {
		return false
	}
	pat := strings.Split(path, "/")
	if path == "" {
		pat = nil
	}
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if id.Path() == "" {
		segs = nil
	}
	for i, p := range pat {
		if p == "**" && i == len(pat)-1 {
			return len(segs) > i
		}
		if i >= len(segs) || (p != "*" && p != segs[i]) {
			return false
		}
	}
	return len(segs) == len(pat)
}

// ValidateIDPattern reports whether pattern is a usable group pattern.
func ValidateIDPattern(pattern string) error {
	probe := strings.NewReplacer("**", "x", "*", "x").Replace(pattern)
	if _, err := spiffeid.FromString(probe); err != nil {
		return fmt.Errorf("%q is not a SPIFFE ID or pattern: %w", pattern, err)
	}
	for i, seg := range strings.Split(strings.TrimPrefix(pattern, "spiffe://"), "/")[1:] {
		if strings.Contains(seg, "*") && seg != "*" && seg != "**" {
			return fmt.Errorf("%q: a wildcard must be a whole segment (segment %d is %q)", pattern, i+1, seg)
		}
	}
	if i := strings.Index(pattern, "**"); i >= 0 && i != len(pattern)-2 {
		return fmt.Errorf("%q: ** may only be the last segment", pattern)
	}
	return nil
}

// Entities combines the catalog's entities with the caller's.
type Entities struct {
	Static   types.EntityMap
	Workload types.Entity
}

// Get implements types.EntityGetter.
func (e Entities) Get(uid types.EntityUID) (types.Entity, bool) {
	if uid == e.Workload.UID {
		return e.Workload, true
	}
	if ent, ok := e.Static[uid]; ok {
		return ent, true
	}
	return uncatalogedTable(e.Static, uid)
}

// uncatalogedTable makes the entity of a table the catalog does not list: no tags, and its target as
// parent, so that "resource in Target::..." holds for every table of that target.
func uncatalogedTable(static types.EntityMap, uid types.EntityUID) (types.Entity, bool) {
	if uid.Type != TypeTable {
		return types.Entity{}, false
	}
	target, table, ok := strings.Cut(string(uid.ID), "/")
	if !ok {
		return types.Entity{}, false
	}
	tu := TargetUID(target)
	if _, ok := static[tu]; !ok {
		return types.Entity{}, false
	}
	schema, name, ok := strings.Cut(table, ".")
	if !ok {
		schema, name = "public", table
	}
	return types.Entity{UID: uid, Parents: types.NewEntityUIDSet(tu),
		Attributes: types.NewRecord(types.RecordMap{"name": types.String(name), "schema": types.String(schema), "tags": stringSet(nil)})}, true
}

// ConnectionContext is the context of connect and credential:use decisions.
func ConnectionContext(now time.Time, source netip.Addr, tlsVersion, cipherSuite string) types.Record {
	return types.NewRecord(connectionFacts(now, source, tlsVersion, cipherSuite))
}

func connectionFacts(now time.Time, source netip.Addr, tlsVersion, cipherSuite string) types.RecordMap {
	if !source.IsValid() {
		source = netip.IPv4Unspecified()
	}
	return types.RecordMap{
		"time":     types.Long(now.Unix()),
		"hourUTC":  types.Long(now.UTC().Hour()),
		"sourceIp": types.IPAddr(netip.PrefixFrom(source, source.BitLen())),
		"tls":      types.NewRecord(types.RecordMap{"version": types.String(tlsVersion), "cipherSuite": types.String(cipherSuite)}),
	}
}

// Statement describes one statement for sql:* and column decisions.
type Statement struct {
	Kind           string
	Tables         []string // Table entity IDs
	Functions      []string
	MultiStatement bool
}

// ApprovalState is the approval context of a request.
type ApprovalState struct {
	State    string // "none", "pending", "approved", "denied", "expired"
	Approver string
}

// StatementContext is the context of sql:* and column:read-unmasked decisions.
func StatementContext(now time.Time, source netip.Addr, tlsVersion, cipherSuite string, st Statement, ap ApprovalState) types.Record {
	m := connectionFacts(now, source, tlsVersion, cipherSuite)
	if ap.State == "" {
		ap.State = "none"
	}
	m["statement"] = types.NewRecord(types.RecordMap{
		"kind":           types.String(st.Kind),
		"tables":         stringSet(st.Tables),
		"functions":      stringSet(st.Functions),
		"multiStatement": types.Boolean(st.MultiStatement),
	})
	m["approval"] = types.NewRecord(types.RecordMap{"state": types.String(ap.State), "approver": types.String(ap.Approver)})
	return types.NewRecord(m)
}

func stringSet(ss []string) types.Set {
	vs := make([]types.Value, len(ss))
	for i, s := range ss {
		vs[i] = types.String(s)
	}
	return types.NewSet(vs...)
}

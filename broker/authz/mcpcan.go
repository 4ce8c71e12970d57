package authz

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

// serverMethods are the methods of the actions a server's requests are decided with.
var serverMethods = map[string]string{
	ActionMCPSampling: "sampling/createMessage", ActionMCPElicitation: "elicitation/create", ActionMCPRoots: "roots/list",
}

// mcpCapability answers Can for an MCP action on a catalog resource: mcp:call on a declared tool as
// tools/list shows it (with context.args ignored: whether some call could be permitted),
// mcp:read-unmasked on a declared field with no arguments, and the server requests' actions on an
// mcp target. Other pairs are not asked (false).
func (a *Authorizer) mcpCapability(set *policySet, principal types.EntityUID, ents Entities, action string, uid types.EntityUID, now time.Time) (Capability, bool) {
	var method string
	switch {
	case action == ActionMCPCall && uid.Type == TypeTool:
		method = "tools/call"
	case action == ActionMCPUnmasked && uid.Type == TypeToolField:
		method = "tools/call"
	case uid.Type == TypeTarget && serverMethods[action] != "" && a.targetKind(string(uid.ID)) == "mcp":
		method = serverMethods[action]
	default:
		return Capability{}, false
	}
	req := Request{Principal: principal, Action: Action(action), Resource: uid, Entities: ents,
		Context: MCPContext(now, netip.IPv4Unspecified(), "", "", method, "", types.NewRecord(nil), ApprovalState{})}
	var d Decision
	if action == ActionMCPCall {
		d = visibleIn(set, req)
	} else {
		d = a.Engine.decideIn(set, req)
	}
	return Capability{Action: action, Resource: uid.String(), Allow: d.Allow, Reasons: d.Reasons, Errors: d.Errors, Obligations: d.Obligations}, true
}

// targetKind is the catalog's kind of target ("" when it is not in the catalog).
func (a *Authorizer) targetKind(target string) string {
	for _, t := range a.Catalog.Targets {
		if t.Name == target {
			return t.Kind
		}
	}
	return ""
}

// mcpNeeded says whether PickRole counts an MCP action as needed: mcp:call when a call of some tool
// the target declares or pins could be permitted (arguments ignored, as tools/list shows it).
// Resources and prompts are not known before a session lists them, so mcp:read and mcp:prompt are
// never needed: a role covering only those is not picked.
func (a *Authorizer) mcpNeeded(set *policySet, principal types.EntityUID, ents Entities, target *CatalogTarget, action string, now time.Time) bool {
	if action != ActionMCPCall {
		return false
	}
	names := map[string]bool{}
	for _, t := range target.Tools {
		names[t.Name] = true
	}
	for name := range target.ToolSchemas {
		names[name] = true
	}
	ctx := MCPContext(now, netip.IPv4Unspecified(), "", "", "tools/call", "", types.NewRecord(nil), ApprovalState{})
	for _, name := range slices.Sorted(maps.Keys(names)) {
		ent := a.mcpEntity(target.Name, mcpMethods["tools/call"], name)
		var getter types.EntityGetter = ents
		if _, ok := a.static[ent.UID]; !ok {
			getter = withEntity{Entities: ents, extra: ent}
		}
		if visibleIn(set, Request{Principal: principal, Action: Action(action), Resource: ent.UID, Context: ctx, Entities: getter}).Allow {
			return true
		}
	}
	return false
}

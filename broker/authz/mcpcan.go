package authz

import (
	"net/netip"
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
		d = a.visibleIn(set, req)
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

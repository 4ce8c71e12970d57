package authz

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MCPSpec is the MCP part of a RequestSpec: what test files and `svidbroker policy explain` give of
// an MCP request.
type MCPSpec struct {
	// Tool is the tool called (mcp:call) or whose result Field is read (mcp:read-unmasked);
	// ResourceURI the resource read (mcp:read); Prompt the prompt got (mcp:prompt).
	Tool, ResourceURI, Prompt string
	// Args are the call's arguments, as decoded from JSON with UseNumber (json.Number, string, bool,
	// nil, []any, map[string]any).
	Args map[string]any
	// Version is the session's protocol version; default DefaultMCPVersion.
	Version string
}

// DefaultMCPVersion is the protocol version MCP requests built from a spec have unless it says.
const DefaultMCPVersion = "2025-06-18"

// mcpActionMethods is the method each MCP action is asked for.
var mcpActionMethods = map[string]string{
	ActionMCPCall: "tools/call", ActionMCPUnmasked: "tools/call", ActionMCPRead: "resources/read", ActionMCPPrompt: "prompts/get",
	ActionMCPSampling: "sampling/createMessage", ActionMCPElicitation: "elicitation/create", ActionMCPRoots: "roots/list",
}

// isMCP reports whether tc describes an MCP request.
func (tc RequestSpec) isMCP() bool {
	return strings.HasPrefix(tc.Action, "mcp:") || tc.MCP.Tool != "" || tc.MCP.ResourceURI != "" || tc.MCP.Prompt != "" || tc.MCP.Args != nil
}

// buildMCPRequest builds the request of an MCP action as the broker builds it: the method's resource
// (a tool, a resource, a prompt, a tool's field, or the target), with the arguments typed as MCPArgs
// types them.
func buildMCPRequest(cat *Catalog, static types.EntityMap, tc RequestSpec, id spiffeid.ID, ents Entities) (Request, error) {
	method, ok := mcpActionMethods[tc.Action]
	if !ok {
		return Request{}, fmt.Errorf("action %q is not an MCP action: use mcp:call, mcp:read-unmasked, mcp:read, mcp:prompt, mcp:sampling, mcp:elicitation or mcp:roots", tc.Action)
	}
	given := map[string]string{"tool": tc.MCP.Tool, "resource_uri": tc.MCP.ResourceURI, "prompt": tc.MCP.Prompt}
	need := map[string]string{ActionMCPCall: "tool", ActionMCPUnmasked: "tool", ActionMCPRead: "resource_uri", ActionMCPPrompt: "prompt"}[tc.Action]
	for name, v := range given {
		if name != need && v != "" {
			return Request{}, fmt.Errorf("%s names no %s (%s is asked of %s)", tc.Action, name, tc.Action, orTarget(need))
		}
	}
	if need != "" && given[need] == "" {
		return Request{}, fmt.Errorf("%s is asked of a %s: give its %s", tc.Action, strings.TrimSuffix(need, "_uri"), need)
	}
	if tc.Field != "" && tc.Action != ActionMCPUnmasked {
		return Request{}, fmt.Errorf("a tool's field is asked %s, not %s", ActionMCPUnmasked, tc.Action)
	}
	if tc.MCP.Args != nil && method != "tools/call" {
		return Request{}, fmt.Errorf("%s takes no arguments: args are a tool call's", tc.Action)
	}
	if _, ok := static[TargetUID(tc.Target)]; !ok {
		return Request{}, fmt.Errorf("target %q is not in the catalog", tc.Target)
	}
	name := given[need]
	a := &Authorizer{Catalog: cat, static: static}
	a.mcpArgs, a.mcpArgsErr = buildMCPArgs(catalogTools(cat))
	_, ent, err := a.mcpBase(Connect{}, MCPRequest{Target: tc.Target, Method: method, Name: name})
	if err != nil {
		return Request{}, err
	}
	if tc.Action == ActionMCPUnmasked {
		if tc.Field == "" {
			return Request{}, fmt.Errorf("%s is asked of a field: name one of tool %q's fields", ActionMCPUnmasked, name)
		}
		uid := ToolFieldUID(tc.Target, name, tc.Field)
		if ent, ok = static[uid]; !ok {
			tool, _ := a.MCPTool(tc.Target, name)
			var paths []string
			for _, f := range tool.Fields {
				paths = append(paths, f.Path)
			}
			return Request{}, fmt.Errorf("tool %q of target %q declares no field %q (declared: %s)", name, tc.Target, tc.Field, orNoneList(paths))
		}
	}
	args := types.NewRecord(nil)
	if method == "tools/call" {
		if args, err = a.MCPArgs(name, tc.MCP.Args); err != nil {
			return Request{}, err
		}
	}
	var getter types.EntityGetter = ents
	if _, ok := static[ent.UID]; !ok && ent.UID.Type != TypeTarget {
		getter = withEntity{Entities: ents, extra: ent}
	}
	version := tc.MCP.Version
	if version == "" {
		version = DefaultMCPVersion
	}
	now := time.Date(2026, 1, 5, tc.HourUTC, 0, 0, 0, time.UTC)
	src := netip.MustParseAddr("127.0.0.1")
	if tc.SourceIP != "" {
		if src, err = netip.ParseAddr(tc.SourceIP); err != nil {
			return Request{}, fmt.Errorf("source_ip: %w", err)
		}
	}
	ctx := MCPContext(now, src, "TLS1.3", "TLS_AES_128_GCM_SHA256", method, version, args, ApprovalState{State: tc.Approval})
	return Request{Principal: WorkloadUID(id), Action: Action(tc.Action), Resource: ent.UID, Context: ctx, Entities: getter}, nil
}

func orTarget(need string) string {
	if need == "" {
		return "the target"
	}
	return "a " + strings.TrimSuffix(need, "_uri")
}

func orNoneList(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(slices.Values(ss)), ", ")
}

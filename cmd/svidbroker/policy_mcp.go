package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// maxArgsFlagBytes bounds --args.
const maxArgsFlagBytes = 1 << 20

// explainMCP holds `policy explain`'s flags for an MCP request.
type explainMCP struct {
	args   string
	listed bool
}

// mcpFlags adds the MCP request's flags to fs: the tool (or resource, or prompt), the call's
// arguments as JSON, the protocol version, and whether to show the list's decision too.
func mcpFlags(fs *flag.FlagSet, spec *authz.RequestSpec) *explainMCP {
	m := &explainMCP{}
	fs.StringVar(&spec.MCP.Tool, "tool", "", "for an MCP request: the tool called, `NAME` of --target's or TARGET/NAME (with --field: mcp:read-unmasked of that result field)")
	fs.StringVar(&spec.MCP.ResourceURI, "resource-uri", "", "for mcp:read: the resource's URI")
	fs.StringVar(&spec.MCP.Prompt, "prompt", "", "for mcp:prompt: the prompt's name")
	fs.StringVar(&m.args, "args", "", "with --tool: the call's arguments, a JSON object: '{\"id\":1}'")
	fs.StringVar(&spec.MCP.Version, "protocol-version", "", "the session's MCP protocol version (default "+authz.DefaultMCPVersion+")")
	fs.BoolVar(&m.listed, "listed", false, "with --tool, --resource-uri or --prompt: also say whether tools/list (resources/list, prompts/list) shows it")
	return m
}

// apply completes spec from the MCP flags: the target of a TARGET/NAME tool, the default action,
// and the arguments, decoded as the broker decodes a tools/call's (numbers kept exact).
func (m *explainMCP) apply(spec *authz.RequestSpec) error {
	if spec.Target == "" {
		if target, tool, ok := strings.Cut(spec.MCP.Tool, "/"); ok {
			spec.Target, spec.MCP.Tool = target, tool
		}
	}
	if spec.Action == "" {
		switch {
		case spec.MCP.Tool != "" && spec.Field != "":
			spec.Action = authz.ActionMCPUnmasked
		case spec.MCP.Tool != "":
			spec.Action = authz.ActionMCPCall
		case spec.MCP.ResourceURI != "":
			spec.Action = authz.ActionMCPRead
		case spec.MCP.Prompt != "":
			spec.Action = authz.ActionMCPPrompt
		}
	}
	if m.args == "" {
		return nil
	}
	if spec.MCP.Tool == "" {
		return fmt.Errorf("--args are a tool call's: give its --tool")
	}
	if len(m.args) > maxArgsFlagBytes {
		return fmt.Errorf("--args: longer than %d bytes", maxArgsFlagBytes)
	}
	dec := json.NewDecoder(strings.NewReader(m.args))
	dec.UseNumber()
	if err := dec.Decode(&spec.MCP.Args); err != nil {
		return fmt.Errorf("--args: a JSON object of arguments, '{\"id\":1}': %v", err)
	}
	if spec.MCP.Args == nil {
		return fmt.Errorf("--args: a JSON object of arguments, not null")
	}
	if dec.More() {
		return fmt.Errorf("--args: one JSON object, nothing after it")
	}
	return nil
}

// printListed says whether the request's list shows its tool, resource or prompt: its decision with
// the arguments ignored, as the broker filters lists.
func printListed(stdout io.Writer, az *authz.Authorizer, spec authz.RequestSpec) error {
	req, err := authz.BuildRequest(az.Catalog, az.Static(), spec)
	if err != nil {
		return err
	}
	d := az.Engine.DecideListed(req)
	list := map[string]string{authz.ActionMCPCall: "tools/list", authz.ActionMCPRead: "resources/list", authz.ActionMCPPrompt: "prompts/list"}[spec.Action]
	if list == "" {
		return fmt.Errorf("--listed: %s is not shown in a list; lists show tools (mcp:call), resources (mcp:read) and prompts (mcp:prompt)", spec.Action)
	}
	verdict, why := "HIDDEN", "no permit matches whatever the arguments (default deny)"
	switch {
	case len(d.Errors) > 0:
		why = "policy " + d.Errors[0].PolicyID + " failed to evaluate, and any error hides it"
	case d.Allow:
		verdict, why = "SHOWN", "some arguments are permitted, by "+strings.Join(d.Reasons, ", ")
	case len(d.Reasons) > 0:
		why = "forbidden whatever the arguments, by " + strings.Join(d.Reasons, ", ")
	}
	fmt.Fprintf(stdout, "\nlisted     %s in %s: %s\n", verdict, list, why)
	return nil
}

// printMCPCan lists the tools hidden from the caller's tools/list, after `policy can`'s list of what
// it may do (where the tools it may call are listed as "may mcp:call").
func printMCPCan(stdout io.Writer, caps []authz.Capability) {
	var hidden bytes.Buffer
	for _, c := range caps {
		if c.Action == authz.ActionMCPCall && !c.Allow {
			why := "no permit matches whatever the arguments"
			if len(c.Errors) > 0 {
				why = "policy " + c.Errors[0].PolicyID + " failed to evaluate"
			} else if len(c.Reasons) > 0 {
				why = "forbidden by " + strings.Join(c.Reasons, ", ")
			}
			fmt.Fprintf(&hidden, "  hidden %-45s %s\n", c.Resource, why)
		}
	}
	if hidden.Len() > 0 {
		fmt.Fprintln(stdout, "\nTools hidden from its tools/list (mcp:call denied whatever the arguments):")
		stdout.Write(hidden.Bytes())
	}
}

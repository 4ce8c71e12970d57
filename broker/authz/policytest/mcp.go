package policytest

import (
	"bytes"
	"encoding/json"
	"fmt"

	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// mcpSpec is the MCP request a test case describes: its args as a JSON decoder with UseNumber gives
// them, as the broker receives a tools/call's arguments.
func (tc *Case) mcpSpec() (authz.MCPSpec, error) {
	s := authz.MCPSpec{Tool: tc.Tool, ResourceURI: tc.ResourceURI, Prompt: tc.Prompt, Version: tc.ProtocolVersion}
	if tc.Args.IsNull() {
		return s, nil
	}
	if !tc.Args.Type().IsObjectType() && !tc.Args.Type().IsMapType() {
		return s, fmt.Errorf("args is an object of arguments: args = { id = 1, table = \"orders\" }")
	}
	if !tc.Args.IsWhollyKnown() {
		return s, fmt.Errorf("args has a value that is not known")
	}
	b, err := ctyjson.Marshal(tc.Args, tc.Args.Type())
	if err != nil {
		return s, fmt.Errorf("args: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&s.Args); err != nil {
		return s, fmt.Errorf("args: %w", err)
	}
	return s, nil
}

// listedDiff compares whether the entry is listed with what the case expects, when it says.
func (tc *Case) listedDiff(e *authz.Engine, req authz.Request) []string {
	if tc.Listed == nil {
		return nil
	}
	d := e.DecideListed(req)
	if d.Allow == *tc.Listed {
		return nil
	}
	word := map[bool]string{true: "shown", false: "hidden"}
	line := fmt.Sprintf("listed: expected %s, got %s", word[*tc.Listed], word[d.Allow])
	if len(d.Reasons) > 0 {
		line += " by " + policyNames(d.Reasons)
	}
	return []string{line}
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// policySchema prints the Cedar schema fragment generated for an MCP target: the MCPArgs type of its
// tools' input schemas, from the live server (by default) or from its pin file.
func policySchema(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	const name = "policy schema"
	cfgPath := fs.String("config", "", "the broker's configuration `file`: the target's upstream and credential, and its catalog's pins file")
	target := fs.String("mcp", "", "the MCP `target` whose tools' input schemas are typed (required)")
	fromPins := fs.Bool("from-pins", false, "read the input schemas from the target's pin file instead of its live server")
	pinsPath := fs.String("pins", "", "with --from-pins: the pin `file` (default: the pins file the target's catalog names)")
	if err := parseFlags(fs, name, args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError(stderr, name, "unexpected argument %q", fs.Arg(0))
	case *target == "":
		return usageError(stderr, name, "--mcp TARGET is required")
	case *pinsPath != "" && !*fromPins:
		return usageError(stderr, name, "--pins FILE is read with --from-pins only")
	case *cfgPath == "" && !(*fromPins && *pinsPath != ""):
		return usageError(stderr, name, "--config FILE is required (or --from-pins --pins FILE)")
	}
	var schemas map[string]json.RawMessage
	if *fromPins {
		path := *pinsPath
		if path == "" {
			cfg, err := config.Load(*cfgPath, plugins())
			if err != nil {
				return err
			}
			if path = catalogPins(cfg, *target); path == "" {
				return usageError(stderr, name, "target %q's catalog names no pins file: give --pins FILE", *target)
			}
		}
		f, err := pin.Load(path)
		if err != nil {
			return err
		}
		if f.Target != *target {
			return fmt.Errorf("%s holds the pins of target %q, not %q", path, f.Target, *target)
		}
		schemas = pinSchemas(f.Tools)
	} else {
		cfg, err := config.Load(*cfgPath, plugins())
		if err != nil {
			return err
		}
		t, err := mcpTarget(cfg, *target)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		up, done, err := openMCPUpstream(ctx, cfg, t, mcpPath(t), cancel, warnLogger(stderr))
		if err != nil {
			return err
		}
		defer done()
		defs, err := listMCPTools(ctx, up)
		if err != nil {
			return err
		}
		schemas = defSchemas(defs)
	}
	return printMCPSchema(*target, schemas, mcpArgsSchema, stdout)
}

// printMCPSchema prints what render makes of one target's input schemas.
func printMCPSchema(target string, schemas map[string]json.RawMessage,
	render func(map[string]map[string]json.RawMessage) (string, error), stdout io.Writer) error {
	out, err := render(map[string]map[string]json.RawMessage{target: schemas})
	if err != nil {
		return fmt.Errorf("target %q: %w", target, err)
	}
	_, err = io.WriteString(stdout, out)
	return err
}

func pinSchemas(entries []pin.Entry) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(entries))
	for _, e := range entries {
		out[e.Name] = e.InputSchema
	}
	return out
}

func defSchemas(defs []pin.Definition) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(defs))
	for _, d := range defs {
		out[d.Name] = d.InputSchema
	}
	return out
}

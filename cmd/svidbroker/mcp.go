package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// errPinsChanged: the live tools differ from the pin file and the change was not accepted.
var errPinsChanged = errors.New("tool definitions differ from their pins")

func mcpCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name, err := subcommand("mcp", args, stdout, stderr)
	if err != nil {
		return err
	}
	// "pin", the only subcommand.
	fs := newFlags(name)
	cfgPath := fs.String("config", "", "the broker's configuration `file` (required): the target's upstream, TLS and credential")
	accept := fs.Bool("accept", false, "write the live definitions to the pin file, accepting every change shown")
	out := fs.String("out", "", "the pin `file` (default: the pins file the target's catalog names)")
	target, err := parseWithTarget(fs, name, args[1:], stdout, stderr)
	if err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError(stderr, name, "--config FILE is required")
	}
	cfg, err := config.Load(*cfgPath, plugins())
	if err != nil {
		return err
	}
	t, err := mcpTarget(cfg, target)
	if err != nil {
		return err
	}
	path := *out
	if path == "" {
		if path = catalogPins(cfg, target); path == "" {
			return usageError(stderr, name, "target %q's catalog names no pins file: give --out FILE, or set pins = \"FILE\" in its catalog block", target)
		}
	}
	log := warnLogger(stderr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, done, err := openMCPUpstream(ctx, cfg, t, mcpPath(t), cancel, log)
	if err != nil {
		return err
	}
	defer done()
	defs, err := listMCPTools(ctx, up)
	if err != nil {
		return err
	}
	return mcpPin(target, path, defs, *accept, time.Now(), stdout)
}

// parseWithTarget parses a command line of flags and one TARGET, in either order.
func parseWithTarget(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer) (string, error) {
	if err := parseFlags(fs, name, args, stdout, stderr); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", usageError(stderr, name, "give the TARGET")
	}
	target := fs.Arg(0)
	if err := parseFlags(fs, name, fs.Args()[1:], stdout, stderr); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", usageError(stderr, name, "unexpected argument %q: give one TARGET", fs.Arg(0))
	}
	return target, nil
}

// mcpPin compares the live definitions with the pin file at path, prints the differences, and writes
// the file when there was none or when accept: errPinsChanged when they differ and were not accepted.
func mcpPin(target, path string, defs []pin.Definition, accept bool, now time.Time, stdout io.Writer) error {
	old, err := pin.Load(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		old = nil
	case err != nil && !accept:
		return fmt.Errorf("%w\n(move it aside, or run again with --accept to replace it with the live definitions)", err)
	case err != nil:
		fmt.Fprintf(stdout, "%v\nreplacing it: every tool is shown as added\n", err)
		old = nil
	case old.Target != target:
		return fmt.Errorf("%s holds the pins of target %q, not %q", path, old.Target, target)
	}
	changes := pin.Diff(old, defs)
	if old != nil && len(changes) == 0 {
		fmt.Fprintf(stdout, "%s: the %d tools of target %q match their pins\n", path, len(defs), target)
		return nil
	}
	if old == nil {
		fmt.Fprintf(stdout, "%s: no pins yet; target %q lists %d tools:\n", path, target, len(defs))
	} else {
		fmt.Fprintf(stdout, "%s: %d of target %q's tools differ from their pins:\n", path, len(changes), target)
	}
	for _, c := range changes {
		printChange(stdout, c)
	}
	if old != nil && !accept {
		fmt.Fprintf(stdout, "\nnot written: the broker refuses these tools until the change is accepted. Review it, then run `svidbroker mcp pin %s --accept`.\n", target)
		return errPinsChanged
	}
	f, err := pin.NewFile(target, defs, now)
	if err != nil {
		return err
	}
	if old != nil {
		kept := map[string]pin.Entry{}
		for _, e := range old.Tools {
			kept[e.Name] = e
		}
		for i, e := range f.Tools {
			if k, ok := kept[e.Name]; ok && k.Digest == e.Digest {
				f.Tools[i].PinnedAt = k.PinnedAt
			}
		}
	}
	if err := f.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s: %d tools pinned\n", path, len(f.Tools))
	return nil
}

// printChange shows one change for an operator's review. What the server wrote is escaped: a
// description cannot move the cursor, recolour the terminal or hide text.
func printChange(w io.Writer, c pin.Change) {
	switch c.Kind {
	case pin.Added:
		fmt.Fprintf(w, "\n+ %s (new) %s\n", printable(c.Tool), c.Seen)
		printDefinition(w, "  ", c.New)
	case pin.Removed:
		fmt.Fprintf(w, "\n- %s (gone) was %s\n", printable(c.Tool), c.Pinned)
	case pin.Changed:
		fmt.Fprintf(w, "\n~ %s (changed: %s) %s -> %s\n", printable(c.Tool), strings.Join(c.Fields, ", "), c.Pinned, c.Seen)
		for _, p := range c.Paths {
			fmt.Fprintf(w, "    %s\n", printable(p))
		}
		for _, f := range c.Fields {
			was, now := field(c.Old, f), field(c.New, f)
			fmt.Fprintf(w, "  %s was: %s\n  %s now: %s\n", f, was, f, now)
		}
	}
}

func printDefinition(w io.Writer, indent string, d *pin.Definition) {
	for _, f := range []string{"title", "description", "inputSchema", "outputSchema", "annotations"} {
		if v := field(d, f); v != "(none)" {
			fmt.Fprintf(w, "%s%s: %s\n", indent, f, v)
		}
	}
}

// field is one member of d, escaped for a terminal.
func field(d *pin.Definition, name string) string {
	var s string
	switch name {
	case "title":
		s = d.Title
	case "description":
		s = d.Description
	case "inputSchema":
		s = string(d.InputSchema)
	case "outputSchema":
		s = string(d.OutputSchema)
	case "annotations":
		s = string(d.Annotations)
	}
	if s == "" {
		return "(none)"
	}
	if name == "title" || name == "description" {
		return quote(s)
	}
	return printable(s)
}

// quote is s in double quotes with quotes, backslashes and anything not printable escaped.
func quote(s string) string {
	return `"` + printable(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)) + `"`
}

// printable escapes the runes of s a terminal would not show as themselves (control and format
// characters, such as escape sequences and bidirectional overrides); newlines are kept as \n.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r > 0xffff && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		case r == utf8RuneError || !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

const utf8RuneError = '\uFFFD'

// warnLogger logs warnings and errors only: a command's output stays its result.
func warnLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

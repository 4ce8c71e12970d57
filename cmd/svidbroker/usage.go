package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one command or subcommand, as `svidbroker help` lists it.
type command struct {
	name    string // "policy can"
	args    string // what follows the name on the usage line
	summary string
}

func (c command) usageLine() string { return "svidbroker " + c.name + " " + c.args }

// commands lists every command and subcommand, in the order help shows them.
var commands = []command{
	{"serve", "--config FILE", "run the broker"},
	{"policy validate", "(DIR | --config FILE)", "check policies against the schema"},
	{"policy test", "[--tests DIR] (DIR | --config FILE)", "run policy tests (*.test.hcl)"},
	{"policy explain", "--config FILE --principal SPIFFE_ID --action ACTION --target T [--selectors a,b] [--table schema.name] [--column C] [--role R] [--approval STATE] [--use CLAUSE] [--equality] [--with-column schema.table.column] [--route \"METHOD /path\" [--param N=V]... [--query N=V]... [--body N=V]... [--field $.path] [--path P]] [--tool [TARGET/]NAME [--args JSON] [--field $.path] | --resource-uri URI | --prompt NAME] [--protocol-version V] [--listed] [--approver EMAIL --approver-groups a,b --held-action sql|http|mcp [--held-policies ID,...] [--held-text T]]",
		"show how one request is decided, policy by policy"},
	{"policy can", "--config FILE [--selectors a,b] [--json] SPIFFE_ID", "list everything a workload may do across the catalog"},
	{"policy schema", "--mcp TARGET (--config FILE [--from-pins] | --from-pins --pins PINFILE)",
		"print the Cedar MCPArgs type generated from an MCP target's tool input schemas (live, or pinned)"},
	{"audit keygen", "--dir DIR [--name NAME]", "create the audit log's keys"},
	{"audit verify", "(--config FILE | --dir DIR --chain NAME --mac-key FILE | --postgres URL --chain NAME --mac-key FILE) [--verifier-key FILE] [--witness DIR|URL [--witness-ca FILE] | --witness-postgres URL | --no-witness]",
		"check the audit chain's MACs and signed checkpoints, against its witness"},
	{"audit sessions", "(--config FILE | --dir DIR --chain NAME | --postgres URL --chain NAME) [--spiffe-id ID] [--target T] [--since 1h|RFC3339] [--decision allow|deny]",
		"list recorded sessions"},
	{"audit export", "(--config FILE | --dir DIR --chain NAME | --postgres URL --chain NAME) [--session ID]", "print records as JSON lines"},
	{"replay", "(--config FILE | --dir DIR --chain NAME | --postgres URL --chain NAME) [--follow] SESSION", "a session's timeline as it happened"},
	{"mcp pin", "--config FILE [--accept] [--out PINFILE] TARGET",
		"compare an MCP target's live tool definitions with their pins; write the pin file when there is none, or with --accept"},
	{"connect", "--protocol postgres|http --listen ADDR --broker HOST:PORT --broker-id SPIFFE_ID [--jwt-audience AUD] [--socket ADDR] [--allow-remote]",
		"forward local clients without an SVID to the broker, over mTLS with this workload's SVID (or, for http, with its JWT-SVID as each request's bearer)"},
	{"approvals list", "--issuer URL [--admin URL] [--client-id ID] [--ca-file FILE] [--token-file FILE] [--json]",
		"list the requests waiting for approval (logs in with the device flow)"},
	{"approvals approve", "--issuer URL [--admin URL] [--reason TEXT] [--scope once|fingerprint|session] [--for 30m] [--token-file FILE] ID",
		"approve a held request as yourself (Cedar's approve action decides whether you may)"},
	{"approvals deny", "--issuer URL [--admin URL] [--reason TEXT] [--token-file FILE] ID", "deny a held request as yourself"},
	{"version", "", "print the module version and VCS revision"},
	{"help", "[COMMAND]", "show this list, or one command's usage"},
}

// lookup returns the command named name ("policy can").
func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// group returns the commands under a prefix ("policy"), for a command that only has subcommands.
func group(prefix string) []command {
	var out []command
	for _, c := range commands {
		if strings.HasPrefix(c.name, prefix+" ") {
			out = append(out, c)
		}
	}
	return out
}

// topUsage is what `svidbroker help` prints.
func topUsage() string {
	var b strings.Builder
	b.WriteString("svidbroker: workload identity broker for AI agents\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-18s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'svidbroker COMMAND -h' for a command's usage and flags; 'svidbroker --version' for the version.\n")
	return b.String()
}

// groupUsage is what `svidbroker policy -h` prints.
func groupUsage(prefix string) string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range group(prefix) {
		fmt.Fprintf(&b, "  %s\n      %s\n", c.usageLine(), c.summary)
	}
	fmt.Fprintf(&b, "\nRun 'svidbroker %s COMMAND -h' for a command's flags.\n", prefix)
	return b.String()
}

// errHelp marks help that was asked for and printed: the command succeeds.
var errHelp = errors.New("help")

// errUsage marks a command-line mistake; its message has already been printed with the usage.
var errUsage = errors.New("usage")

// wantsHelp reports whether args ask for help anywhere before a "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// newFlags returns the flag set of a command; parse it with parseFlags.
func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet("svidbroker "+name, flag.ContinueOnError)
}

// parseFlags parses args for the command name. Asked for help (-h or --help anywhere, or "help" as the
// first argument, as `svidbroker policy help` takes it), it prints the usage line and flags to stdout
// and returns errHelp; given a flag it does not know, it says so and what to run for the flags it does.
func parseFlags(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer) error {
	c, _ := lookup(name)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage = func() {
		fmt.Fprintf(&out, "usage: %s\n  %s\n", c.usageLine(), c.summary)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(&out, "\nflags:")
			fs.PrintDefaults()
		}
	}
	if wantsHelp(args) || len(args) > 0 && args[0] == "help" {
		fs.Usage()
		_, _ = stdout.Write(out.Bytes())
		return errHelp
	}
	fs.Usage = func() {} // a mistake gets the short form below, not every flag
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "svidbroker %s: %v\nusage: %s\nRun 'svidbroker %s -h' for its flags.\n", name, err, c.usageLine(), name)
		return errUsage
	}
	return nil
}

// usageError reports a command-line mistake in the command name, with its usage line and what to run
// for more.
func usageError(stderr io.Writer, name, format string, args ...any) error {
	c, _ := lookup(name)
	fmt.Fprintf(stderr, "svidbroker %s: %s\nusage: %s\nRun 'svidbroker %s -h' for its flags.\n", name, fmt.Sprintf(format, args...), c.usageLine(), name)
	return errUsage
}

// unknownCommand reports a command that does not exist among the names, suggesting the closest.
func unknownCommand(stderr io.Writer, prefix, got string, names []string) error {
	full := strings.TrimSpace("svidbroker " + prefix)
	msg := fmt.Sprintf("%s: unknown command %q", full, got)
	if s := closest(got, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	help := "svidbroker help"
	if prefix != "" {
		help = full + " -h"
	}
	fmt.Fprintf(stderr, "%s\nThe commands are: %s. Run '%s' for their usage.\n", msg, strings.Join(names, ", "), help)
	return errUsage
}

// closest returns the name within edit distance 2 of s, or "".
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// subcommandNames lists the subcommands under prefix ("policy" gives validate, test, ...).
func subcommandNames(prefix string) []string {
	var out []string
	for _, c := range group(prefix) {
		out = append(out, strings.TrimPrefix(c.name, prefix+" "))
	}
	return out
}

// topNames lists the top-level commands.
func topNames() []string {
	var out []string
	for _, c := range commands {
		name, _, _ := strings.Cut(c.name, " ")
		if len(out) == 0 || out[len(out)-1] != name {
			out = append(out, name)
		}
	}
	return out
}

// subcommand checks the subcommand args name in group: it prints the group's usage for none (an
// error) or for help (errHelp), says what to run for an unknown one, and otherwise returns its full
// name ("audit verify").
func subcommand(group string, args []string, stdout, stderr io.Writer) (string, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, groupUsage(group))
		return "", errUsage
	}
	if wantsHelp(args[:1]) || args[0] == "help" {
		fmt.Fprint(stdout, groupUsage(group))
		return "", errHelp
	}
	name := group + " " + args[0]
	if _, ok := lookup(name); !ok {
		return "", unknownCommand(stderr, group, args[0], subcommandNames(group))
	}
	return name, nil
}

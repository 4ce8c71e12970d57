// Command svidbroker is the workload identity broker: agents authenticate with their SPIFFE identity,
// and the broker connects them to backends with credentials they never see.
//
// Usage:
//
//	svidbroker serve --config FILE
//	svidbroker policy validate|test|explain|can|schema ...
//	svidbroker audit keygen|verify|sessions|export ...
//	svidbroker replay SESSION
//	svidbroker mcp pin --config FILE [--accept] [--out PINFILE] TARGET
//	svidbroker connect --protocol postgres|http --listen ADDR --broker HOST:PORT --broker-id ID [--jwt-audience AUD]
//	svidbroker version
//	svidbroker help [COMMAND]
//
// Every command and subcommand prints its usage with -h or --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], stdout, stderr)
	case "policy":
		err = policyCmd(ctx, args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		err = replayCmd(ctx, args[1:], stdout, stderr)
	case "connect":
		err = connectCmd(ctx, args[1:], stdout, stderr)
	case "mcp":
		err = mcpCmd(ctx, args[1:], stdout, stderr)
	case "approvals":
		err = approvalsCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		if len(args) > 1 && args[0] == "version" {
			if !wantsHelp(args[1:]) && args[1] != "help" {
				err = usageError(stderr, "version", "takes no arguments")
				break
			}
			c, _ := lookup("version")
			fmt.Fprintf(stdout, "usage: %s\n  %s\n", c.usageLine(), c.summary)
			break
		}
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "-help", "--help":
		err = helpCmd(args[1:], stdout, stderr)
	default:
		if strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "svidbroker: unknown flag %s: flags follow the command, as in 'svidbroker serve --config FILE'.\nRun 'svidbroker help' for the commands.\n", args[0])
			return 2
		}
		err = unknownCommand(stderr, "", args[0], topNames())
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errTestsFailed), errors.Is(err, errVerifyFailed), errors.Is(err, errPinsChanged):
		return 1
	default:
		fmt.Fprintln(stderr, "svidbroker:", err)
		return 1
	}
}

// helpCmd prints the list of commands, or the usage of the command named by args.
func helpCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, topUsage())
		return nil
	}
	if wantsHelp(args) {
		c, _ := lookup("help")
		fmt.Fprintf(stdout, "usage: %s\n  %s\n", c.usageLine(), c.summary)
		return nil
	}
	name := strings.Join(args, " ")
	if c, ok := lookup(name); ok {
		fmt.Fprintf(stdout, "usage: %s\n  %s\n\nRun '%s -h' for its flags.\n", c.usageLine(), c.summary, "svidbroker "+name)
		return nil
	}
	if len(group(name)) > 0 {
		fmt.Fprint(stdout, groupUsage(name))
		return nil
	}
	return unknownCommand(stderr, "", name, topNames())
}

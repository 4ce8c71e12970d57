// Command svidbroker is the workload identity broker: agents authenticate with their SPIFFE identity,
// and the broker connects them to backends with credentials they never see.
//
// Usage:
//
//	svidbroker serve --config FILE
//	svidbroker policy validate|test|explain|can ...
//	svidbroker audit keygen|verify|sessions|export ...
//	svidbroker replay SESSION
//	svidbroker version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise it comes from the
// module's build information.
var version = ""

const usage = `svidbroker: workload identity broker for AI agents

Usage:
  svidbroker serve --config FILE   run the broker
  svidbroker policy validate DIR   check policies against the schema
  svidbroker policy test DIR       run policy tests (*.test.hcl)
  svidbroker policy explain ...    show how one request is decided, policy by policy
  svidbroker policy can ID ...     list everything a workload may do across the catalog
  svidbroker audit keygen|verify|sessions|export ...   the tamper-evident session log
  svidbroker replay SESSION ...    a session's timeline as it happened
  svidbroker version               print the version

Run 'svidbroker COMMAND -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake; its message has already been printed with the usage.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], stderr)
	case "policy":
		err = policyCmd(ctx, args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		err = replayCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "svidbroker", versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "svidbroker: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp):
		return 2
	case errors.Is(err, errTestsFailed), errors.Is(err, errVerifyFailed):
		return 1
	default:
		fmt.Fprintln(stderr, "svidbroker:", err)
		return 1
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise it comes from the
// module's build information.
var version = ""

// versionText describes the build: the module version, and the VCS revision it was built from and
// whether the tree had uncommitted changes, as the go command recorded them in bi.
func versionText(override string, bi *debug.BuildInfo, ok bool) string {
	v := override
	if v == "" && ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	if !ok {
		return "svidbroker " + v + " (no build information)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	var parts []string
	switch rev := settings["vcs.revision"]; {
	case rev == "":
		parts = append(parts, "revision unknown (built without VCS information, as with -buildvcs=false or outside a checkout)")
	default:
		r := "revision " + rev
		if t := settings["vcs.time"]; t != "" {
			r += " of " + t
		}
		switch settings["vcs.modified"] {
		case "true":
			r += ", with uncommitted changes"
		case "false":
			r += ", clean tree"
		}
		parts = append(parts, r)
	}
	if bi.GoVersion != "" {
		parts = append(parts, "built with "+bi.GoVersion)
	}
	return fmt.Sprintf("svidbroker %s\n  %s", v, strings.Join(parts, "\n  "))
}

func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	return versionText(version, bi, ok)
}

package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

// TestEveryCommandHasHelp asks every command and subcommand for help, each way a user might: the
// usage goes to stdout and the exit status is 0.
func TestEveryCommandHasHelp(t *testing.T) {
	type ask struct {
		args []string
		want string
	}
	asks := []ask{
		{[]string{"-h"}, "Usage:"},
		{[]string{"--help"}, "Usage:"},
		{[]string{"help"}, "Usage:"},
		{[]string{"policy", "-h"}, "svidbroker policy can "},
		{[]string{"policy", "--help"}, "svidbroker policy validate "},
		{[]string{"audit", "-h"}, "svidbroker audit verify "},
		{[]string{"audit", "help"}, "svidbroker audit keygen "},
		{[]string{"help", "policy"}, "svidbroker policy test "},
		{[]string{"replay", "SESSION", "--help"}, "usage: svidbroker replay "}, // help after an argument
	}
	for _, c := range commands {
		words := strings.Fields(c.name)
		for _, flag := range []string{"-h", "--help"} {
			asks = append(asks, ask{append(append([]string{}, words...), flag), "usage: svidbroker " + c.name})
		}
		asks = append(asks, ask{append([]string{"help"}, words...), "usage: svidbroker " + c.name})
		if c.name != "help" { // "help" first, as `svidbroker policy help` takes it
			asks = append(asks, ask{append(append([]string{}, words...), "help"), "usage: svidbroker " + c.name})
		}
	}
	for _, a := range asks {
		t.Run(strings.Join(a.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(a.args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, want 0\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), a.want) {
				t.Errorf("stdout does not contain %q:\n%s", a.want, stdout.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("help wrote to stderr: %s", stderr.String())
			}
		})
	}
}

// TestEveryCommandHasAUsageLine keeps the command list complete: each command the dispatcher knows
// has a usage line and a summary, and `svidbroker help` lists it.
func TestEveryCommandHasAUsageLine(t *testing.T) {
	var top bytes.Buffer
	if code := run([]string{"help"}, &top, &top); code != 0 {
		t.Fatalf("help exited %d", code)
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			if c.summary == "" || !strings.HasPrefix(c.usageLine(), "svidbroker "+c.name) {
				t.Errorf("command %q: usage line %q, summary %q", c.name, c.usageLine(), c.summary)
			}
			if !strings.Contains(top.String(), c.name) {
				t.Errorf("svidbroker help does not list %q", c.name)
			}
		})
	}
	for _, group := range []string{"policy", "audit"} {
		for _, sub := range subcommandNames(group) {
			var stdout, stderr bytes.Buffer
			// A known subcommand with no arguments is a usage mistake, never "unknown command".
			run([]string{group, sub, "--no-such-flag"}, &stdout, &stderr)
			if strings.Contains(stderr.String(), "unknown command") {
				t.Errorf("%s %s is listed but not dispatched: %s", group, sub, stderr.String())
			}
		}
	}
}

func TestVersionText(t *testing.T) {
	bi := func(settings ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/svidbroker/svidbroker", Version: "v0.4.0"}}
		for i := 0; i+1 < len(settings); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return b
	}
	cases := []struct {
		name     string
		override string
		bi       *debug.BuildInfo
		ok       bool
		want     []string
	}{
		{"modified tree", "", bi("vcs.revision", "0123abcd", "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "true"), true,
			[]string{"svidbroker v0.4.0", "revision 0123abcd of 2026-12-01T10:00:00Z, with uncommitted changes", "built with go1.26.8"}},
		{"clean tree", "", bi("vcs.revision", "0123abcd", "vcs.modified", "false"), true,
			[]string{"svidbroker v0.4.0", "revision 0123abcd, clean tree"}},
		{"no VCS information", "", bi(), true, []string{"svidbroker v0.4.0", "revision unknown"}},
		{"set with -ldflags", "v9.9.9", bi("vcs.revision", "feed"), true, []string{"svidbroker v9.9.9", "revision feed"}},
		{"devel", "", &debug.BuildInfo{Main: debug.Module{Version: ""}}, true, []string{"svidbroker (devel)"}},
		{"no build information", "", nil, false, []string{"svidbroker (devel) (no build information)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := versionText(tc.override, tc.bi, tc.ok)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("version text does not contain %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestAuditCommandMistakes: a command line the audit commands cannot use exits 2 with what is wrong,
// the command's usage line and what to run for its flags.
func TestAuditCommandMistakes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"verify without a chain", []string{"audit", "verify"}, "give --config FILE, or --dir DIR (or --postgres URL) and --chain NAME"},
		{"verify without a MAC key", []string{"audit", "verify", "--dir", "d", "--chain", "c"}, "--mac-key FILE is required without --config"},
		{"verify with an argument", []string{"audit", "verify", "--config", "x.hcl", "extra"}, `unexpected argument "extra"`},
		{"sessions without a chain", []string{"audit", "sessions", "--dir", "d"}, "give --config FILE, or --dir DIR"},
		{"sessions with a bad --since", []string{"audit", "sessions", "--dir", "d", "--chain", "c", "--since", "yesterday"}, `--since "yesterday"`},
		{"sessions with a bad --decision", []string{"audit", "sessions", "--dir", "d", "--chain", "c", "--decision", "maybe"}, `--decision "maybe": give allow or deny`},
		{"export without a chain", []string{"audit", "export"}, "give --config FILE, or --dir DIR"},
		{"export with an argument", []string{"audit", "export", "--dir", "d", "--chain", "c", "s1"}, `unexpected argument "s1"`},
		{"replay without a chain", []string{"replay", "s1"}, "give --config FILE, or --dir DIR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2\nstderr: %s", code, stderr.String())
			}
			cmd := strings.Join(tc.args[:2], " ") // the command's name
			if tc.args[0] == "replay" {
				cmd = "replay"
			}
			for _, w := range []string{tc.want, "usage: svidbroker " + cmd + " ", "Run 'svidbroker " + cmd + " -h'"} {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

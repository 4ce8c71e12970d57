package main

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/svidbroker/svidbroker/test/stack"
)

func TestMain(m *testing.M) {
	// jwtCmd runs this binary again as the persona, as it runs the demo binary.
	if len(os.Args) > 1 && os.Args[1] == "jwt-fetch" {
		os.Exit(jwtFetch(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestJWTAndForwardersAsPersonas runs, on a real SPIRE, what the demo runs per persona: `jwt` prints
// a JWT-SVID of that persona (fetched by its uid), and each persona's `svidbroker connect --protocol
// http` listens on loopback with that persona's SVID and has its base URL in <persona>.http.
func TestJWTAndForwardersAsPersonas(t *testing.T) {
	s := stack.New(t, stack.Config{})
	d, err := newDemo(t.TempDir(), t.TempDir())
	must(t, err)
	must(t, os.MkdirAll(d.path("logs"), 0o755))
	personas := []string{stack.PersonaSupport, stack.PersonaAnalyst}
	must(t, d.writeWorkloads(t.Context(), s, personas))

	for _, name := range personas {
		p, err := s.Persona(name)
		must(t, err)
		var stdout, stderr bytes.Buffer
		if code := runMain([]string{"jwt", "--dir", d.dir, "--persona", name}, &stdout, &stderr); code != 0 {
			t.Fatalf("jwt --persona %s: exit %d: %s", name, code, stderr.String())
		}
		svid, err := jwtsvid.ParseInsecure(strings.TrimSpace(stdout.String()), []string{stack.JWTAudience})
		if err != nil {
			t.Fatalf("jwt --persona %s printed no JWT-SVID: %v", name, err)
		}
		if svid.ID != p.ID {
			t.Errorf("jwt --persona %s: a JWT-SVID of %s, want %s", name, svid.ID, p.ID)
		}
	}

	bin, err := stack.BinDir()
	must(t, err)
	brokerBin, err := s.Install(filepath.Join(bin, "svidbroker"), "svidbroker")
	must(t, err)
	// The forwarders dial the broker per client connection; at start they only need their SVIDs.
	procs, err := d.startConnects(t.Context(), s, brokerBin, "127.0.0.1:1", personas)
	if err != nil {
		t.Fatal(err)
	}
	defer stopConnects(procs)
	for _, c := range procs {
		b, err := os.ReadFile(d.path(c.persona + ".http"))
		must(t, err)
		u, err := url.Parse(strings.TrimSpace(string(b)))
		if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Port() == "0" {
			t.Errorf("%s.http = %q, want http://127.0.0.1:PORT", c.persona, b)
		}
		p, err := s.Persona(c.persona)
		must(t, err)
		log, err := os.ReadFile(c.log)
		must(t, err)
		if !strings.Contains(string(log), "spiffe_id="+p.ID.String()) {
			t.Errorf("%s's forwarder does not run with its SVID; its log:\n%s", c.persona, log)
		}
	}

	// The forwarder for the mcp target "tools": its URL is the MCP endpoint, in <persona>.mcp.
	tools, err := d.startConnectsFor(t.Context(), s, brokerBin, stack.ToolsTargetName, "127.0.0.1:1", personas[:1])
	if err != nil {
		t.Fatal(err)
	}
	defer stopConnects(tools)
	b, err := os.ReadFile(d.path(personas[0] + ".mcp"))
	must(t, err)
	u, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Path != stack.MCPShopPath {
		t.Errorf("%s.mcp = %q, want http://127.0.0.1:PORT%s", personas[0], b, stack.MCPShopPath)
	}
	if tools[0].log == procs[0].log {
		t.Errorf("the api and tools forwarders share the log %s", tools[0].log)
	}
	if _, err := d.startConnectsFor(t.Context(), s, brokerBin, "shop", "127.0.0.1:1", personas[:1]); err == nil {
		t.Error("a forwarder for target \"shop\" (PostgreSQL, no forwarder kind) started")
	}
}

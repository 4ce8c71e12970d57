package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// Limits of a tool list fetched for pinning.
const (
	mcpFetchTimeout     = 2 * time.Minute // the whole fetch: connect, every page, close
	mcpMaxPages         = 1000
	mcpMaxTools         = 10000
	mcpMaxResponseBytes = 32 << 20 // one HTTP response body
	mcpDefaultPath      = "/mcp"
	mcpCredentialHeader = "Authorization"
	mcpClientName       = "svidbroker-mcp-pin"
)

// mcpUpstream is how the CLI reaches a target's upstream MCP server: as the broker's sessions do, over
// verified TLS, with the credential in the header the target names.
type mcpUpstream struct {
	Target string
	URL    string // https://ADDRESS/PATH
	TLS    *tls.Config
	Header string // the credential's header; no credential when Secret is ""
	Prefix string
	Secret string
}

// listMCPTools lists every tool of the upstream (all pages) with the SDK's client over Streamable
// HTTP, as pin definitions. Two tools of one name are refused.
func listMCPTools(ctx context.Context, u mcpUpstream) ([]pin.Definition, error) {
	ctx, cancel := context.WithTimeout(ctx, mcpFetchTimeout)
	defer cancel()
	// A clone: at its first request an http.Transport writes the protocols it offers (NextProtos) into
	// the TLS configuration it holds, and net/http does not copy it first. On the caller's, that write
	// raced with a transport of an earlier fetch still reading the same configuration for a dial.
	base := &http.Transport{TLSClientConfig: u.TLS.Clone(), ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second}
	defer base.CloseIdleConnections()
	hc := &http.Client{Transport: credentialTransport{base: base, header: u.Header, value: u.Prefix + u.Secret, set: u.Secret != ""},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	client := mcp.NewClient(&mcp.Implementation{Name: mcpClientName, Version: versionString()}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: u.URL, HTTPClient: hc, MaxRetries: -1,
		DisableStandaloneSSE: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("target %q: connecting to its MCP server at %s: %w", u.Target, u.URL, err)
	}
	defer cs.Close()
	var defs []pin.Definition
	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		if page == mcpMaxPages {
			return nil, fmt.Errorf("target %q: its MCP server's tool list runs past %d pages", u.Target, mcpMaxPages)
		}
		res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
		if err != nil {
			return nil, fmt.Errorf("target %q: tools/list: %w", u.Target, err)
		}
		for _, t := range res.Tools {
			d, err := pin.FromTool(t)
			if err != nil {
				return nil, fmt.Errorf("target %q: %w", u.Target, err)
			}
			if seen[d.Name] {
				return nil, fmt.Errorf("target %q: its MCP server lists tool %q twice", u.Target, d.Name)
			}
			seen[d.Name] = true
			if defs = append(defs, d); len(defs) > mcpMaxTools {
				return nil, fmt.Errorf("target %q: its MCP server lists more than %d tools", u.Target, mcpMaxTools)
			}
		}
		if res.NextCursor == "" {
			return defs, nil
		}
		if res.NextCursor == cursor {
			return nil, fmt.Errorf("target %q: its MCP server returned the same tools/list cursor twice", u.Target)
		}
		cursor = res.NextCursor
	}
}

// credentialTransport sends the credential in its header with every request, and bounds each response.
type credentialTransport struct {
	base          http.RoundTripper
	header, value string
	set           bool
}

func (t credentialTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.set {
		r = r.Clone(r.Context())
		r.Header.Set(t.header, t.value)
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: mcpMaxResponseBytes}
	return resp, nil
}

// limitedBody fails a read past its limit, rather than ending the body early as if it were complete.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("the MCP server's response is over the limit of %d bytes", mcpMaxResponseBytes)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// mcpTarget finds an MCP target of the configuration.
func mcpTarget(cfg *config.Config, name string) (config.Target, error) {
	var names []string
	for _, t := range cfg.Targets {
		if t.Name == name {
			if t.Protocol != "mcp" {
				return config.Target{}, fmt.Errorf("target %q has protocol %q: tools are pinned for targets with protocol = \"mcp\"", name, t.Protocol)
			}
			return t, nil
		}
		if t.Protocol == "mcp" {
			names = append(names, t.Name)
		}
	}
	if len(names) == 0 {
		return config.Target{}, fmt.Errorf("the configuration has no target %q, and no target with protocol = \"mcp\"", name)
	}
	return config.Target{}, fmt.Errorf("the configuration has no target %q; its MCP targets: %v", name, names)
}

// leastRole is the credential role a target's catalog lists first: its least privileged. "" when
// the target's credential is fixed (no roles for Cedar to pick).
func leastRole(cfg *config.Config, t config.Target) (string, error) {
	if t.VaultRoles == nil {
		return "", nil
	}
	for _, cb := range cfg.Catalogs {
		if cb.Target == t.Name && len(cb.Roles) > 0 {
			return cb.Roles[0].Name, nil
		}
	}
	return "", fmt.Errorf("target %q leases per credential role, and its catalog lists none", t.Name)
}

// openMCPUpstream prepares the CLI's connection to a target's upstream exactly as the broker's sessions
// get theirs (backendCredential): with the broker's SVID as TLS client certificate (auth = "svid"), or
// with a credential leased from Vault for the target's least privileged credential role (its fixed
// vault_role or vault_path when it has no roles). The lease is recorded in the broker's lease journal,
// so a crash leaves it for the broker to revoke; done ends it (revoking it) and closes the SVID source.
// A lease that cannot be kept calls cancel: the fetch that uses it stops.
func openMCPUpstream(ctx context.Context, cfg *config.Config, t config.Target, path string, cancel func(), log *slog.Logger) (u mcpUpstream, done func(), err error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	// On an error, what was opened is closed here: each error return sets done to nil, so this must
	// not call done (it did, and every error became a nil-function panic).
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	src, err := identity.NewX509Source(ctx, cfg.WorkloadAPISocket, identity.DefaultSourceTimeout)
	if err != nil {
		return mcpUpstream{}, nil, err
	}
	closers = append(closers, func() { src.Close() })
	svid, err := src.GetX509SVID()
	if err != nil {
		return mcpUpstream{}, nil, err
	}
	var leases *credential.Manager
	if credentialSource(t.Backend) != nil {
		provider, err := newVaultProvider(ctx, cfg, src, log)
		if err != nil {
			return mcpUpstream{}, nil, err
		}
		journal, err := credential.OpenJournal(cfg.Vault.JournalDir)
		if err != nil {
			return mcpUpstream{}, nil, err
		}
		// No sweep: the running broker's leases are in the same journal.
		leases = credential.NewManager(provider, journal, log, cfg.Vault.TimeoutD, 0)
		closers = append(closers, leases.Close)
	}
	clientCert, lease := backendCredential(t, src, leases, true, log)
	var secret string
	if lease != nil {
		role, err := leastRole(cfg, t)
		if err != nil {
			return mcpUpstream{}, nil, err
		}
		s, err := lease(ctx, authz.Connect{Peer: identity.Peer{ID: svid.ID}, Target: t.Name}, role, func(err error) {
			log.Warn("the credential's lease could not be kept: the fetch stops", "target", t.Name, "error", err)
			cancel()
		})
		if err != nil {
			return mcpUpstream{}, nil, fmt.Errorf("target %q: credential: %w", t.Name, err)
		}
		closers = append(closers, func() {
			r := s.End()
			log.Debug("credential released", "target", t.Name, "lease", s.Lease.ID, "release", r)
		})
		secret = s.Lease.Password
	}
	u, err = mcpUpstreamFor(t, path, clientCert, secret)
	if err != nil {
		return mcpUpstream{}, nil, err
	}
	return u, closeAll, nil
}

// mcpUpstreamFor is the upstream of target t at path, with TLS per its backend block and secret (if any)
// in its credential header.
func mcpUpstreamFor(t config.Target, path string, clientCert x509svid.Source, secret string) (mcpUpstream, error) {
	if path == "" {
		path = mcpDefaultPath
	}
	if path[0] != '/' {
		return mcpUpstream{}, fmt.Errorf("target %q: the MCP path %q does not start with /", t.Name, path)
	}
	tlsCfg, err := identity.BackendConfig(t.Backend.CAFile, t.Backend.ServerName, clientCert)
	if err != nil {
		return mcpUpstream{}, err
	}
	u := mcpUpstream{Target: t.Name, URL: "https://" + t.Backend.Address + path, TLS: tlsCfg, Secret: secret,
		Header: t.Backend.CredentialHeader}
	if u.Header == "" {
		u.Header = mcpCredentialHeader
	}
	if t.Backend.CredentialPrefix != nil {
		u.Prefix = *t.Backend.CredentialPrefix
	} else if http.CanonicalHeaderKey(u.Header) == mcpCredentialHeader {
		u.Prefix = "Bearer "
	}
	return u, nil
}

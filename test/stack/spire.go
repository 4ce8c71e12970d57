package stack

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	spireconf "github.com/svidbroker/svidbroker/spire-conf"
)

// TrustDomain is the trust domain of spire-conf/dev.
var TrustDomain = spiffeid.RequireTrustDomainFromString("example.org")

// SPIRE is a running SPIRE server and agent.
type SPIRE struct {
	// AgentSocket is the Workload API socket; workloads set SPIFFE_ENDPOINT_SOCKET to "unix://"+AgentSocket.
	AgentSocket string
	// ServerSocket is the server's admin API socket. Through it, the Entry and Agent APIs need no
	// credentials, so it stays in a 0700 directory.
	ServerSocket string
	// AgentID is the agent's SPIFFE ID, the parent of every registration entry the stack creates.
	AgentID spiffeid.ID
	// ServerAddr is the server's TCP API (agents, and admin workloads with their SVIDs).
	ServerAddr string
	// BundlePath is a PEM file with the trust domain's X.509 authorities at start.
	BundlePath string
	// UpstreamCA and UpstreamKey are the root the server's CA chains to. Tests use them to mint
	// certificates that chain to the trust bundle but are wrong in some other way.
	UpstreamCA  *x509.Certificate
	UpstreamKey *ecdsa.PrivateKey

	server, agent *process
	conn          *grpc.ClientConn
	runAgent      func() (*process, error)
	agentBin      string
}

// SPIREConfig tunes the SPIRE part of the stack.
type SPIREConfig struct {
	// X509SVIDTTL is the default X.509-SVID lifetime. Default 1h; rotation tests lower it.
	X509SVIDTTL time.Duration
	// JWTSVIDTTL is the default JWT-SVID lifetime. Default 5m.
	JWTSVIDTTL time.Duration
	// AgentTTL is the lifetime of the agent's own SVID. Default 1h.
	AgentTTL time.Duration
}

func (c *SPIREConfig) setDefaults() {
	if c.X509SVIDTTL == 0 {
		c.X509SVIDTTL = time.Hour
	}
	if c.JWTSVIDTTL == 0 {
		c.JWTSVIDTTL = 5 * time.Minute
	}
	if c.AgentTTL == 0 {
		c.AgentTTL = time.Hour
	}
}

// startSPIRE starts the server, registers personas, then starts and attests the agent. On error, what
// was started is left in s for Close to stop.
func (s *Stack) startSPIRE(ctx context.Context, cfg SPIREConfig, personas []Persona) error {
	cfg.setDefaults()
	serverBin, err := tool(s.binDir, "spire-server", "tools")
	if err != nil {
		return err
	}
	agentBin, err := tool(s.binDir, "spire-agent", "tools")
	if err != nil {
		return err
	}
	attestorBin, err := tool(s.binDir, "svidbroker-agent-attestor", "build")
	if err != nil {
		return err
	}
	base := filepath.Join(s.Dir, "spire")
	private := filepath.Join(base, "private")
	public := filepath.Join(base, "public")
	for _, d := range []string{base, public} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	if err := os.MkdirAll(private, 0o700); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	sp := &SPIRE{
		AgentSocket:  filepath.Join(public, "agent.sock"),
		ServerSocket: filepath.Join(private, "server.sock"),
		ServerAddr:   "127.0.0.1:" + strconv.Itoa(port),
		BundlePath:   filepath.Join(base, "bundle.pem"),
	}
	s.SPIRE = sp
	if sp.UpstreamCA, sp.UpstreamKey, err = newCA("svidbroker test upstream CA"); err != nil {
		return err
	}
	upstreamKey, err := pemKey(sp.UpstreamKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(private, "upstream.crt"), pemCert(sp.UpstreamCA), 0o600); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	if err := os.WriteFile(filepath.Join(private, "upstream.key"), upstreamKey, 0o600); err != nil {
		return fmt.Errorf("stack: %w", err)
	}

	env := append(os.Environ(),
		"SPIRE_DATA_DIR="+filepath.Join(private, "server-data"),
		"SPIRE_SERVER_PORT="+strconv.Itoa(port),
		"SPIRE_SERVER_SOCKET="+sp.ServerSocket,
		"SPIRE_X509_SVID_TTL="+cfg.X509SVIDTTL.String(),
		"SPIRE_JWT_SVID_TTL="+cfg.JWTSVIDTTL.String(),
		// The CA must outlive every SVID it signs, and may not outlive the upstream root (24h).
		"SPIRE_CA_TTL="+(12*time.Hour).String(),
		"SPIRE_AGENT_TTL="+cfg.AgentTTL.String(),
		"SPIRE_UPSTREAM_CERT="+filepath.Join(private, "upstream.crt"),
		"SPIRE_UPSTREAM_KEY="+filepath.Join(private, "upstream.key"),
		"SPIRE_LOG_LEVEL=DEBUG",
		"SPIRE_AGENT_DATA_DIR="+filepath.Join(private, "agent-data"),
		"SPIRE_AGENT_SOCKET="+sp.AgentSocket,
		"SPIRE_AGENT_ADMIN_SOCKET="+filepath.Join(private, "agent-admin.sock"),
		"SPIRE_TRUST_BUNDLE="+sp.BundlePath,
		"SPIRE_JOIN_TOKEN_FILE="+filepath.Join(private, "join-token"),
		"SPIRE_AGENT_ATTESTOR="+attestorBin,
	)
	serverConf := filepath.Join(base, "server.conf")
	agentConf := filepath.Join(base, "agent.conf")
	if err := os.WriteFile(serverConf, spireconf.DevServer, 0o644); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	if err := os.WriteFile(agentConf, spireconf.DevAgent, 0o644); err != nil {
		return fmt.Errorf("stack: %w", err)
	}

	run := func(name, bin, conf string) (*process, error) {
		cmd := exec.Command(bin, "run", "-config", conf, "-expandEnv")
		cmd.Env = env
		cmd.Dir = base
		return s.launch(name, cmd, syscall.SIGTERM)
	}
	if sp.server, err = run("spire-server", serverBin, serverConf); err != nil {
		return err
	}

	sp.conn, err = grpc.NewClient("unix://"+sp.ServerSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("stack: spire-server API client: %w", err)
	}
	bundles := bundlev1.NewBundleClient(sp.conn)
	var bundle *types.Bundle
	if err := waitFor(ctx, sp.server, "its API on "+sp.ServerSocket, func(ctx context.Context) error {
		bundle, err = bundles.GetBundle(ctx, &bundlev1.GetBundleRequest{})
		return err
	}); err != nil {
		return err
	}
	if err := writeBundle(sp.BundlePath, bundle); err != nil {
		return err
	}

	tok, err := agentv1.NewAgentClient(sp.conn).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600})
	if err != nil {
		return sp.server.failure(fmt.Errorf("create join token: %w", err))
	}
	sp.AgentID, err = spiffeid.FromSegments(TrustDomain, "spire", "agent", "join_token", tok.Value)
	if err != nil {
		return fmt.Errorf("stack: agent ID: %w", err)
	}
	if err := os.WriteFile(filepath.Join(private, "join-token"), []byte(tok.Value), 0o600); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	// Entries exist before the agent's first sync, so personas get SVIDs as soon as the agent is up.
	if _, err := sp.Register(ctx, personas...); err != nil {
		return sp.server.failure(err)
	}

	sp.agentBin = agentBin
	sp.runAgent = func() (*process, error) { return run("spire-agent", agentBin, agentConf) }
	return sp.StartAgent(ctx)
}

// StartAgent starts the SPIRE agent (again, after StopAgent) and waits for its Workload API. A
// restarted agent keeps its identity: its key is on disk and its SVID lives for AgentTTL.
func (sp *SPIRE) StartAgent(ctx context.Context) error {
	var err error
	if sp.agent, err = sp.runAgent(); err != nil {
		return err
	}
	healthArgs := []string{"healthcheck", "-socketPath", sp.AgentSocket}
	return waitFor(ctx, sp.agent, "the Workload API on "+sp.AgentSocket, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, sp.agentBin, healthArgs...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// KillAgent kills the SPIRE agent with SIGKILL, as a crash would, and waits for it to exit.
func (sp *SPIRE) KillAgent() {
	_ = sp.agent.cmd.Process.Kill()
	<-sp.agent.done
}

// KillServer kills the SPIRE server with SIGKILL, as a crash would, and waits for it to exit. The agent
// keeps serving the SVIDs it holds.
func (sp *SPIRE) KillServer() {
	_ = sp.server.cmd.Process.Kill()
	<-sp.server.done
}

// Register creates one registration entry per persona through the Entry API: its SPIFFE ID for
// processes running as its uid on the stack's agent. It returns the entries' IDs.
func (sp *SPIRE) Register(ctx context.Context, personas ...Persona) ([]string, error) {
	if len(personas) == 0 {
		return nil, nil
	}
	var entries []*types.Entry
	for _, p := range personas {
		sels := []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(int(p.UID))}}
		if p.Manifest != nil {
			sels = append(sels, &types.Selector{Type: "agent", Value: "name:" + p.Manifest.Name})
			if p.PinManifest {
				sels = append(sels, &types.Selector{Type: "agent", Value: "manifest-sha256:" + p.Manifest.SHA256()})
			}
		}
		entries = append(entries, &types.Entry{
			SpiffeId:   &types.SPIFFEID{TrustDomain: p.ID.TrustDomain().Name(), Path: p.ID.Path()},
			ParentId:   &types.SPIFFEID{TrustDomain: sp.AgentID.TrustDomain().Name(), Path: sp.AgentID.Path()},
			Selectors:  sels,
			DnsNames:   p.DNSNames,
			Admin:      p.Admin,
			JwtSvidTtl: int32(p.JWTSVIDTTL / time.Second),
		})
	}
	resp, err := entryv1.NewEntryClient(sp.conn).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("create registration entries: %w", err)
	}
	var ids []string
	for i, r := range resp.Results {
		if c := codes.Code(r.Status.Code); c != codes.OK {
			return nil, fmt.Errorf("create registration entry for %s: %s: %s", personas[i].ID, c, r.Status.Message)
		}
		ids = append(ids, r.Entry.Id)
	}
	return ids, nil
}

// Unregister deletes registration entries by ID through the Entry API.
func (sp *SPIRE) Unregister(ctx context.Context, entryIDs ...string) error {
	resp, err := entryv1.NewEntryClient(sp.conn).BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: entryIDs})
	if err != nil {
		return fmt.Errorf("stack: delete registration entries: %w", err)
	}
	for _, r := range resp.Results {
		if c := codes.Code(r.Status.Code); c != codes.OK {
			return fmt.Errorf("stack: delete registration entry %s: %s: %s", r.Id, c, r.Status.Message)
		}
	}
	return nil
}

// Endpoint is the SPIFFE_ENDPOINT_SOCKET value for the stack's agent.
func (sp *SPIRE) Endpoint() string { return "unix://" + sp.AgentSocket }

func writeBundle(path string, b *types.Bundle) error {
	var out []byte
	for _, a := range b.X509Authorities {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Asn1})...)
	}
	if len(out) == 0 {
		return fmt.Errorf("stack: spire-server returned a bundle with no X.509 authorities")
	}
	return os.WriteFile(path, out, 0o644)
}

package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Persona is one workload identity the stack registers: processes running as UID get ID.
type Persona struct {
	Name string
	ID   spiffeid.ID
	UID  uint32
	// DNSNames go into the X.509-SVID; SPIRE makes the first one the subject's common name.
	DNSNames []string
	// Admin entries may use the SPIRE server's API with their SVID (the broker reads entries).
	Admin bool
	// Manifest, if set, is the agent manifest the persona's processes declare (AGENT_MANIFEST); the
	// entry then also selects agent:name:<name>, as attested by svidbroker-agent-attestor.
	Manifest *AgentManifest
	// PinManifest adds agent:manifest-sha256:<hash> to the entry: only that exact manifest matches.
	PinManifest bool
	// JWTSVIDTTL, if set, is the lifetime of the persona's JWT-SVIDs (the entry's jwt_svid_ttl).
	JWTSVIDTTL time.Duration
}

// AgentManifest is the manifest format of attestors/agent.
type AgentManifest struct {
	Name      string   `json:"name"`
	Framework string   `json:"framework,omitempty"`
	Owner     string   `json:"owner"`
	Version   string   `json:"version,omitempty"`
	Tools     []string `json:"tools,omitempty"`
}

// JSON is the manifest as written to disk.
func (m *AgentManifest) JSON() []byte {
	b, _ := json.Marshal(m) // cannot fail: strings only
	return b
}

// SHA256 is the hex digest the attestor reports as agent:manifest-sha256.
func (m *AgentManifest) SHA256() string {
	sum := sha256.Sum256(m.JSON())
	return hex.EncodeToString(sum[:])
}

// Persona names used by the demo and the end-to-end tests.
const (
	PersonaBroker   = "broker"
	PersonaAnalyst  = "analyst"
	PersonaSupport  = "support"
	PersonaMigrator = "migrator"
	PersonaIntruder = "intruder"
)

// DefaultPersonas are the broker itself and the demo agents, each with its own uid. The broker's
// SVID carries the DNS name BrokerDBRole, which SPIRE makes its common name, so PostgreSQL's `cert`
// authentication maps it to that role; and "localhost", so that libpq clients can check with
// sslmode=verify-full that they reached the broker and not another workload of the trust domain.
func DefaultPersonas() []Persona {
	id := func(segs ...string) spiffeid.ID { return spiffeid.RequireFromSegments(TrustDomain, segs...) }
	manifest := func(name, owner, framework string, tools ...string) *AgentManifest {
		return &AgentManifest{Name: name, Owner: owner, Framework: framework, Version: "1.0.0", Tools: tools}
	}
	return []Persona{
		{Name: PersonaBroker, ID: id("svidbroker"), UID: 30000, DNSNames: []string{BrokerDBRole, "localhost"}, Admin: true},
		{Name: PersonaAnalyst, ID: id("agent", "analyst"), UID: 30001,
			Manifest: manifest("analyst", "data-team", "langgraph", "sql.query"), PinManifest: true},
		{Name: PersonaSupport, ID: id("agent", "support"), UID: 30002,
			Manifest: manifest("support", "support-team", "openai-agents", "sql.query", "crm.lookup")},
		{Name: PersonaMigrator, ID: id("agent", "migrator"), UID: 30003,
			Manifest: manifest("migrator", "platform-team", "custom", "sql.ddl")},
		// Attested like the others, but no policy permits it anything.
		{Name: PersonaIntruder, ID: id("agent", "intruder"), UID: 30004,
			Manifest: manifest("intruder", "nobody", "custom", "sql.query")},
	}
}

// Persona returns the registered persona with the given name.
func (s *Stack) Persona(name string) (Persona, error) {
	for _, p := range s.personas {
		if p.Name == name {
			return p, nil
		}
	}
	return Persona{}, fmt.Errorf("stack: no persona %q", name)
}

func (s *Stack) manifestPath(persona string) string {
	return filepath.Join(s.Dir, "manifests", persona+".json")
}

// writeManifests writes each persona's manifest, root-owned and read-only to others, as a launcher would.
func (s *Stack) writeManifests(personas []Persona) error {
	if err := os.MkdirAll(filepath.Join(s.Dir, "manifests"), 0o755); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	for _, p := range personas {
		if p.Manifest == nil {
			continue
		}
		if err := os.WriteFile(s.manifestPath(p.Name), p.Manifest.JSON(), 0o644); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	return nil
}

// Command returns a command that runs as the persona's uid (and gid), with SPIFFE_ENDPOINT_SOCKET
// pointing at the stack's agent, so the unix attestor gives it the persona's SPIFFE ID.
func (s *Stack) Command(ctx context.Context, persona string, name string, args ...string) (*exec.Cmd, error) {
	p, err := s.Persona(persona)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET="+s.SPIRE.Endpoint())
	if p.Manifest != nil {
		cmd.Env = append(cmd.Env, "AGENT_MANIFEST="+s.manifestPath(p.Name))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: p.UID, Gid: p.UID}}
	cmd.Dir = "/"
	return cmd, nil
}

// WorkloadSVIDs is what a persona's process received from the Workload API.
type WorkloadSVIDs struct {
	ID        string `json:"id"`
	CertPEM   []byte `json:"cert_pem"` // the X.509-SVID and its intermediates
	KeyPEM    []byte `json:"key_pem"`
	BundlePEM []byte `json:"bundle_pem"` // the X.509 authorities of the SVID's trust domain
	JWT       string `json:"jwt,omitempty"`
	// JWTBundle is the JWKS of the SVID's trust domain, to verify JWT with.
	JWTBundle []byte `json:"jwt_bundle,omitempty"`
	UID       int    `json:"uid"`
	PID       int    `json:"pid"`
}

// workloadEnv tells a re-executed binary to act as a workload and names the JWT audience; see
// WorkloadMain. workloadWaitEnv bounds how long it waits for the agent to issue its SVIDs.
const (
	workloadEnv     = "SVIDBROKER_STACK_WORKLOAD"
	workloadWaitEnv = "SVIDBROKER_STACK_WORKLOAD_WAIT"
)

// FetchSVIDs runs a real workload process as the persona. The process asks the SPIRE agent's Workload
// API (with go-spiffe) for its X.509-SVID and, when audience is set, a JWT-SVID for that audience, and
// reports what it received. The binary that calls FetchSVIDs must call WorkloadMain first thing in main
// (or TestMain), because the workload is that same binary run again.
func (s *Stack) FetchSVIDs(ctx context.Context, persona, audience string) (*WorkloadSVIDs, error) {
	bin, err := s.workloadBinary()
	if err != nil {
		return nil, err
	}
	cmd, err := s.Command(ctx, persona, bin)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, workloadEnv+"="+audience)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("stack: workload %s: %w: %s", persona, err, lastLines(stderr.String(), 10))
	}
	var out WorkloadSVIDs
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("stack: workload %s: bad output: %w", persona, err)
	}
	return &out, nil
}

// workloadBinary copies the running executable where every persona's uid can execute it.
func (s *Stack) workloadBinary() (string, error) {
	s.binOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			s.binErr = fmt.Errorf("stack: %w", err)
			return
		}
		s.binPath, s.binErr = s.Install(self, "workload")
	})
	return s.binPath, s.binErr
}

// Install copies the executable src to Dir/bin/name, where every persona's uid can run it (a build
// output or a checkout may sit below directories that other uids cannot enter).
func (s *Stack) Install(src, name string) (string, error) {
	dst := filepath.Join(s.Dir, "bin", name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	// The copy is written by a child process: a file this process held open for writing would be
	// inherited by any process forked meanwhile (fork then exec is not atomic), and exec of the copy would
	// fail with ETXTBSY until that child reached its own exec.
	if out, err := exec.Command("install", "-m", "0755", src, dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("stack: install %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return dst, nil
}

// WorkloadMain makes a binary usable as FetchSVIDs' workload. When the binary was started by FetchSVIDs,
// it fetches its SVIDs, prints them as JSON and exits; otherwise it returns at once.
func WorkloadMain() {
	audience, ok := os.LookupEnv(workloadEnv)
	if !ok {
		return
	}
	wait := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv(workloadWaitEnv)); err == nil {
		wait = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	out, err := fetchAsWorkload(ctx, audience)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	os.Exit(0)
}

func fetchAsWorkload(ctx context.Context, audience string) (*WorkloadSVIDs, error) {
	client, err := workloadapi.New(ctx) // SPIFFE_ENDPOINT_SOCKET
	if err != nil {
		return nil, err
	}
	defer client.Close()
	// The agent answers PermissionDenied until its cache holds an entry for this process: retry.
	var x509Ctx *workloadapi.X509Context
	if err := retry(ctx, func() error {
		x509Ctx, err = client.FetchX509Context(ctx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("fetch X.509-SVID: %w", err)
	}
	svid := x509Ctx.DefaultSVID()
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return nil, err
	}
	bundle, err := x509Ctx.Bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return nil, err
	}
	out := &WorkloadSVIDs{ID: svid.ID.String(), CertPEM: certPEM, KeyPEM: keyPEM,
		BundlePEM: encodeCerts(bundle.X509Authorities()), UID: os.Getuid(), PID: os.Getpid()}
	if audience != "" {
		var j *jwtsvid.SVID
		if err := retry(ctx, func() error {
			j, err = client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience})
			return err
		}); err != nil {
			return nil, fmt.Errorf("fetch JWT-SVID: %w", err)
		}
		out.JWT = j.Marshal()
		jwtBundles, err := client.FetchJWTBundles(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetch JWT bundles: %w", err)
		}
		jb, err := jwtBundles.GetJWTBundleForTrustDomain(svid.ID.TrustDomain())
		if err != nil {
			return nil, err
		}
		if out.JWTBundle, err = jb.Marshal(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// retry calls f until it succeeds or ctx ends. On timeout it reports f's first error, which says why
// (the last one is usually the deadline cutting a call short).
func retry(ctx context.Context, f func() error) error {
	var first error
	for {
		err := f()
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
		select {
		case <-ctx.Done():
			return errors.Join(first, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

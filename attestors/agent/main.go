// Command svidbroker-agent-attestor is a SPIRE workload attestor plugin for AI-agent processes. It runs
// inside spire-agent as an external plugin:
//
//	WorkloadAttestor "agent" {
//	    plugin_cmd = "/usr/local/bin/svidbroker-agent-attestor"
//	    plugin_data {
//	        manifest_env = "AGENT_MANIFEST"   # the variable that names the manifest (default)
//	        max_manifest_bytes = 65536        # larger manifests yield no selectors (default)
//	    }
//	}
//
// For a process whose environment names an agent manifest (see Manifest), it emits selectors such as
// agent:name:analyst, agent:owner:data-team, agent:tool:sql.query and agent:manifest-sha256:<hex>.
// A process without a manifest, or with a missing, malformed or oversized one, gets no agent selectors,
// and the reason is logged; the plugin never fails the agent.
//
// Agent selectors describe what the process declares. Select on them together with selectors the
// process cannot choose (unix:uid, k8s:sa, ...), and pin reviewed manifests with manifest-sha256.
package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config is the plugin's plugin_data.
type Config struct {
	// ManifestEnv is the environment variable that names a process's manifest. Default AGENT_MANIFEST.
	ManifestEnv string `hcl:"manifest_env"`
	// MaxManifestBytes bounds a manifest's size. Default and maximum MaxManifestBytes.
	MaxManifestBytes int `hcl:"max_manifest_bytes"`
	// ProcRoot is where procfs is mounted. Default /proc.
	ProcRoot string `hcl:"proc_root"`
}

// configKeys are the keys plugin_data may hold; any other is a typo, and an error.
var configKeys = map[string]bool{"manifest_env": true, "max_manifest_bytes": true, "proc_root": true}

// Plugin is the workload attestor.
type Plugin struct {
	workloadattestorv1.UnimplementedWorkloadAttestorServer
	configv1.UnimplementedConfigServer

	mu     sync.RWMutex
	config *Config
	logger hclog.Logger
}

var _ pluginsdk.NeedsLogger = (*Plugin)(nil)

// SetLogger receives spire-agent's logger.
func (p *Plugin) SetLogger(logger hclog.Logger) { p.logger = logger }

// Attest returns the agent selectors of the process, or none.
func (p *Plugin) Attest(_ context.Context, req *workloadattestorv1.AttestRequest) (*workloadattestorv1.AttestResponse, error) {
	p.mu.RLock()
	cfg := p.config
	p.mu.RUnlock()
	if cfg == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	raw, err := readManifest(cfg.ProcRoot, req.Pid, cfg.ManifestEnv, cfg.MaxManifestBytes)
	if err == nil {
		var m *Manifest
		if m, err = parseManifest(raw); err == nil {
			sels := selectors(m, raw)
			p.log().Debug("Agent manifest attested", "pid", req.Pid, "name", m.Name, "selectors", len(sels))
			return &workloadattestorv1.AttestResponse{SelectorValues: sels}, nil
		}
	}
	if errors.Is(err, errNoManifest) {
		p.log().Debug("No agent manifest declared", "pid", req.Pid)
	} else {
		p.log().Warn("Agent manifest refused; no agent selectors", "pid", req.Pid, "reason", err.Error())
	}
	return &workloadattestorv1.AttestResponse{}, nil
}

// Configure validates and applies plugin_data.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	file, err := hcl.Parse(req.HclConfiguration)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to parse configuration: %v", err)
	}
	if list, ok := file.Node.(*ast.ObjectList); ok {
		for _, item := range list.Items {
			if key, _ := item.Keys[0].Token.Value().(string); !configKeys[key] {
				return nil, status.Errorf(codes.InvalidArgument, "unknown configuration key %q", key)
			}
		}
	}
	cfg := new(Config)
	if err := hcl.DecodeObject(cfg, file); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to decode configuration: %v", err)
	}
	if cfg.ManifestEnv == "" {
		cfg.ManifestEnv = "AGENT_MANIFEST"
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	switch {
	case cfg.MaxManifestBytes == 0:
		cfg.MaxManifestBytes = MaxManifestBytes
	case cfg.MaxManifestBytes < 0 || cfg.MaxManifestBytes > MaxManifestBytes:
		return nil, status.Error(codes.InvalidArgument, fmt.Sprintf("max_manifest_bytes must be between 1 and %d", MaxManifestBytes))
	}
	p.mu.Lock()
	p.config = cfg
	p.mu.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

func (p *Plugin) log() hclog.Logger {
	if p.logger == nil {
		return hclog.NewNullLogger()
	}
	return p.logger
}

func main() {
	p := new(Plugin)
	pluginmain.Serve(
		workloadattestorv1.WorkloadAttestorPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}

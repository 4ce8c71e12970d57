package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/server"
	sess "github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/broker/tracing"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/proxy"
)

// newJWTVerifier makes the top-level jwt block live: bearer JWT-SVIDs of http targets are verified
// against the JWT bundles the Workload API delivers (of the trusted trust domains only), or through
// OIDC discovery for the trust domains configured that way. Nil without a jwt block.
func newJWTVerifier(ctx context.Context, cfg *config.Config) (*identity.JWTVerifier, func(), error) {
	if cfg.JWT == nil {
		return nil, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, identity.DefaultSourceTimeout)
	defer cancel()
	src, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(cfg.WorkloadAPISocket)))
	if err != nil {
		return nil, nil, fmt.Errorf("jwt: no JWT bundles from the Workload API at %s: %w", cfg.WorkloadAPISocket, err)
	}
	oidc := map[spiffeid.TrustDomain]string{}
	for _, o := range cfg.JWT.OIDC {
		td, err := spiffeid.TrustDomainFromString(o.TrustDomain)
		if err != nil {
			src.Close()
			return nil, nil, fmt.Errorf("jwt: oidc %q: %w", o.TrustDomain, err)
		}
		oidc[td] = o.IssuerURL
	}
	v, err := identity.NewJWTVerifier(identity.JWTConfig{Bundles: trustedBundles{src: src, trusted: cfg.Trusted},
		Audience: cfg.JWT.Audience, Issuer: cfg.JWT.Issuer, OIDC: oidc})
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return v, func() { src.Close() }, nil
}

// trustedBundles gives the bundles of the broker's trusted trust domains only.
type trustedBundles struct {
	src     jwtbundle.Source
	trusted []spiffeid.TrustDomain
}

func (b trustedBundles) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	for _, t := range b.trusted {
		if t == td {
			return b.src.GetJWTBundleForTrustDomain(td)
		}
	}
	return nil, fmt.Errorf("trust domain %q is not trusted by the broker", td)
}

// httpTarget is what an http target's engine is built from.
type httpTarget struct {
	cfg       *config.Config
	t         config.Target
	src       *workloadapi.X509Source
	jwt       *identity.JWTVerifier
	attest    func(context.Context, spiffeid.ID) (*identity.Attestation, error)
	authorize func(context.Context, authz.Connect) (authz.Decision, error)
	az        *authz.Authorizer
	masker    *inspect.Masker
	approvals approvers
	sink      audit.Sink
	ready     func() error
	leases    *credential.Manager
	metrics   *metrics.Metrics
	tracing   *tracing.Tracing
	log       *slog.Logger
}

func newHTTPEngine(h httpTarget) (server.Engine, error) {
	policy, err := httpPolicy(h.az)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", h.t.Name, err)
	}
	routes, err := h.cfg.RouteTable(h.t.Name)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", h.t.Name, err)
	}
	pc, err := httpEngineConfig(h, "http")
	if err != nil {
		return nil, err
	}
	pc.Routes, pc.Policy = routes, policy
	return proxy.New(pc)
}

// httpEngineConfig is the http engine's configuration of target h, but for its routes and policy:
// what an http target and an mcp target (protocol) share.
func httpEngineConfig(h httpTarget, protocol string) (proxy.Config, error) {
	cfg, t := h.cfg, h.t
	// An http target's credential is a token: its secret needs no username.
	clientCert, lease := backendCredential(t, h.src, h.leases, true, h.log)
	pickRole, err := rolePicker(t, h.az, h.log)
	if err != nil {
		return proxy.Config{}, err
	}
	upstreamTLS, err := identity.BackendConfig(t.Backend.CAFile, t.Backend.ServerName, clientCert)
	if err != nil {
		return proxy.Config{}, err
	}
	approve := h.approvals.approve
	prefix := ""
	if t.Backend.CredentialPrefix != nil {
		prefix = *t.Backend.CredentialPrefix
	}
	limits := proxy.Limits{MaxBodyBytes: cfg.Limits.MaxMessageBytes}
	if tt := t.Timeouts; tt != nil {
		limits.Upstream, limits.Idle, limits.ReadHeader = tt.UpstreamD, tt.IdleD, tt.ReadHeaderD
	}
	return proxy.Config{
		Target:    t.Name,
		ServerTLS: proxy.ServerTLS(h.src, h.src, cfg.Trusted),
		JWT:       h.jwt,
		Session: sess.Config{
			Authorize: h.authorize, Policy: h.az, Attest: h.attest, Ready: h.ready, PickRole: pickRole, Lease: lease,
			Audit: h.sink, AuditPerStatement: cfg.Audit != nil && cfg.Audit.Durability == "statement",
			AuditFailOpen:   cfg.Audit != nil && cfg.Audit.OnFailure == "continue",
			SVIDExpiryGrace: cfg.Session.SVIDExpiryGraceD, ApprovalTimeout: approvalTimeout(cfg), Grants: h.approvals.grants,
			Protocol: protocol, OperationKind: protocol, Metrics: h.metrics, Tracing: h.tracing,
			SpanAttributes: []attribute.KeyValue{semconv.NetworkProtocolName(protocol)},
		},
		Masker: h.masker, DefaultMask: defaultMask(cfg),
		FullData: cfg.Audit != nil && cfg.Audit.Data == "full",
		Upstream: proxy.Upstream{Address: t.Backend.Address, TLS: upstreamTLS,
			CredentialHeader: t.Backend.CredentialHeader, CredentialPrefix: prefix},
		Limits:  limits,
		Approve: approve,
		Logger:  h.log,
	}, nil
}

// httpPolicy is the authorizer as the engine's Policy: Cedar decides each request on its Route and
// each tagged response field.
func httpPolicy(az *authz.Authorizer) (proxy.Policy, error) {
	if az == nil {
		return nil, errors.New("http targets are decided per request by Cedar: add a policy block")
	}
	return authzPolicy{az}, nil
}

type authzPolicy struct{ az *authz.Authorizer }

func (p authzPolicy) HTTP(c authz.Connect, r proxy.Request, ap authz.ApprovalState) (authz.Decision, error) {
	return p.az.HTTP(c, authz.HTTPRequest(r), ap)
}

func (p authzPolicy) FieldMasks(c authz.Connect, r proxy.Request, fields []string, ap authz.ApprovalState, def string) []string {
	strategies, _ := p.az.FieldMasks(c, authz.HTTPRequest(r), fields, ap, def)
	return strategies
}

package oidcprovider

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Provider is the OpenID provider's HTTP side: the OP library's endpoints (discovery at
// /.well-known/openid-configuration, /authorize, /oauth/token, /keys, /device_authorization,
// /userinfo, …) and this package's login and device pages.
type Provider struct {
	issuer  string
	handler http.Handler
}

// New builds a provider for cfg (validated here if it was not) that names itself issuer, an https
// URL without a path. log receives one line per login and per refused login, never a password.
func New(cfg *Config, issuer string, log *slog.Logger) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("oidcprovider: issuer %q must be an https URL with no path", issuer)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := newStorage(cfg)
	if err != nil {
		return nil, err
	}
	var cryptoKey [32]byte
	_, _ = rand.Read(cryptoKey[:])
	opCfg := &op.Config{
		CryptoKey:          cryptoKey,
		CryptoKeyId:        "access-token-key",
		CodeMethodS256:     true,
		AuthMethodPost:     true,
		SupportedUILocales: []language.Tag{language.English},
		SupportedScopes:    []string{"openid", "profile", "email", ScopeGroups},
		SupportedClaims:    []string{"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "email", "email_verified", "name", "preferred_username", "groups"},
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     cfg.deviceLifetime,
			PollInterval: cfg.pollInterval,
			UserFormPath: devicePath,
			UserCode:     op.UserCodeBase20,
		},
	}
	o, err := op.NewProvider(opCfg, st, op.StaticIssuer(issuer))
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: %w", err)
	}
	pg := newPages(st, op.AuthCallbackURL(o), log)
	interceptor := op.NewIssuerInterceptor(o.IssuerFromRequest)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, pg.loginForm)
	mux.Handle("POST "+loginPath, interceptor.HandlerFunc(pg.login))
	mux.HandleFunc("GET "+devicePath, pg.deviceForm)
	mux.HandleFunc("POST "+devicePath, pg.device)
	mux.Handle("/", o)
	return &Provider{issuer: issuer, handler: mux}, nil
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// Handler serves every endpoint.
func (p *Provider) Handler() http.Handler { return p.handler }

// HTTPServer is an http.Server for the provider with timeouts that bound every request.
func (p *Provider) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           p.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Console configures the web console (broker/console): its own HTTPS listener, where approvers log
// in with OpenID Connect to approve held operations, see sessions, replay them and ask what a
// workload may do.
type Console struct {
	// Listen is the console's host:port.
	Listen string `hcl:"listen"`
	// PublicURL is the console's https URL as browsers reach it (scheme and host only); the OIDC
	// callback is PublicURL + "/oidc/callback", which the provider must have registered. Default
	// "https://" + listen.
	PublicURL string `hcl:"public_url,optional"`
	// CertFile and KeyFile are the console's TLS certificate (PEM, with its chain) and key.
	CertFile string `hcl:"cert_file"`
	KeyFile  string `hcl:"key_file"`
	// SessionTTL bounds a console session; the ID token's expiry may end it sooner. Default "1h".
	SessionTTL string `hcl:"session_ttl,optional"`
	// ViewPolicyFile holds the Cedar policies on action "console:view" that say who sees which
	// target's sessions. Without it nobody sees any session.
	ViewPolicyFile string `hcl:"view_policy_file,optional"`
	// VerifierKeyFile checks the audit chain's signed checkpoints before a replay. Default:
	// verifier.key beside audit.signing_key_file.
	VerifierKeyFile string       `hcl:"verifier_key_file,optional"`
	OIDC            *ConsoleOIDC `hcl:"oidc,block"`

	SessionTTLD time.Duration
}

// ConsoleOIDC is the console's OpenID provider and its registration there.
type ConsoleOIDC struct {
	// Issuer is the provider's https issuer URL.
	Issuer string `hcl:"issuer"`
	// ClientID is the console's client at the provider, and ClientSecretFile its secret.
	ClientID         string `hcl:"client_id"`
	ClientSecretFile string `hcl:"client_secret_file,optional"`
	// CAFile verifies the provider's certificate. Default: the system roots.
	CAFile string `hcl:"ca_file,optional"`
	// EmailClaim and GroupsClaim name the ID token claims that hold the person's email and groups.
	// Default "email" and "groups".
	EmailClaim  string `hcl:"email_claim,optional"`
	GroupsClaim string `hcl:"groups_claim,optional"`
}

// console validates the console block, filling in defaults.
func (v *validator) console() {
	k := v.c.Console
	if k == nil {
		return
	}
	at := func(attr ...string) []string { return append([]string{"console"}, attr...) }
	v.hostPort(k.Listen, at("listen")...)
	if k.PublicURL == "" {
		k.PublicURL = "https://" + k.Listen
	}
	if u, err := url.Parse(k.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		v.fail("Console URL", fmt.Sprintf("console.public_url is %q; write the https URL browsers use, scheme and host only, such as \"https://console.example.com\".", k.PublicURL), at("public_url")...)
	}
	if k.CertFile == "" || k.KeyFile == "" {
		v.fail("Console TLS", "console needs cert_file and key_file: the console is served over HTTPS only, as its cookies are Secure.", at()...)
	}
	k.SessionTTLD = v.duration(k.SessionTTL, time.Hour, at("session_ttl")...)
	if k.OIDC == nil {
		v.fail("Console login", "console needs an oidc block (issuer, client_id, client_secret_file): approvers log in with OpenID Connect.", at()...)
		return
	}
	if u, err := url.Parse(k.OIDC.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		v.fail("Console login", fmt.Sprintf("console.oidc.issuer is %q; write the provider's https issuer URL.", k.OIDC.Issuer), at("oidc", "issuer")...)
	}
	if k.OIDC.ClientID == "" {
		v.fail("Console login", "console.oidc.client_id is empty; write the console's client ID at the provider.", at("oidc", "client_id")...)
	}
	if host, _, err := net.SplitHostPort(k.Listen); err == nil && host == "" {
		v.fail("Console address", fmt.Sprintf("console.listen is %q; name the address to listen on (\"0.0.0.0:8443\" for every interface).", k.Listen), at("listen")...)
	}
}

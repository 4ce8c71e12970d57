package vault

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
)

// ConfigValidator checks the vault block of the broker's configuration. cmd passes it to config.Load.
type ConfigValidator struct{}

var _ config.VaultValidator = ConfigValidator{}

// ValidateVault checks the vault block: an https address, a readable CA file, exactly one login
// (which sets vb.Method), and the timeout and reuse durations. Mount defaults to "database".
func (ConfigValidator) ValidateVault(vb *config.Vault, c *config.Check) {
	if u, err := url.Parse(vb.Address); err != nil || u.Scheme != "https" || u.Host == "" {
		c.Fail("Invalid Vault address", fmt.Sprintf("vault.address %q must be an https URL.", vb.Address), "address")
	}
	if _, err := os.Stat(vb.CAFile); err != nil {
		c.Fail("Unreadable CA file", fmt.Sprintf("vault.ca_file: %v.", err), "ca_file")
	}
	if vb.Mount == "" {
		vb.Mount = "database"
	}
	validateLogin(vb, c)
	vb.TimeoutD = c.Duration(vb.Timeout, 10*time.Second, "timeout")
	if vb.Reuse != "" && vb.Reuse != "0s" && vb.Reuse != "0" {
		vb.ReuseD = c.Duration(vb.Reuse, 0, "reuse")
	}
}

// validateLogin checks that exactly one login method is configured, and names it.
func validateLogin(vb *config.Vault, c *config.Check) {
	var methods []string
	if vb.CertRole != "" {
		methods, vb.Method = append(methods, "cert_role"), MethodCert
	}
	if vb.JWT != nil {
		methods, vb.Method = append(methods, "jwt"), MethodJWT
		if vb.JWT.Role == "" || vb.JWT.Audience == "" {
			c.Fail("Incomplete jwt login", "vault.jwt needs role and audience (the JWT-SVID's audience, named by the role's bound_audiences).", "jwt")
		}
	}
	if vb.DevTokenFile != "" {
		methods, vb.Method = append(methods, "dev_token_file"), MethodToken
		if _, err := os.Stat(vb.DevTokenFile); err != nil {
			c.Fail("Unreadable token file", fmt.Sprintf("vault.dev_token_file: %v.", err), "dev_token_file")
		}
	}
	if len(methods) != 1 {
		c.Fail("Vault login", fmt.Sprintf("the vault block needs exactly one login: cert_role, a jwt block, or (development only) dev_token_file; it has %d (%s).",
			len(methods), strings.Join(methods, ", ")))
	}
}

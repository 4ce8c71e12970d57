package vault

import (
	"context"
	"errors"
	"fmt"

	vaultapi "github.com/hashicorp/vault/api"
)

// Check reports whether Vault can issue credentials: it answers sys/health, initialized and unsealed.
// It needs no token. Its error names the state, never a URL or a token: readiness shows it.
func (p *Provider) Check(ctx context.Context) error {
	h, err := p.client.Sys().HealthWithContext(ctx)
	if re, ok := errors.AsType[*vaultapi.ResponseError](err); ok {
		return fmt.Errorf("vault: sys/health answered HTTP %d", re.StatusCode)
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("vault: no answer from sys/health within the deadline")
	case err != nil:
		return errors.New("vault: unreachable")
	case !h.Initialized:
		return errors.New("vault: not initialized")
	case h.Sealed:
		return errors.New("vault: sealed")
	}
	return nil
}

package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// MaxJWTBytes bounds the size of a bearer token.
const MaxJWTBytes = 16 << 10

// asymmetricAlgs are the only signature algorithms accepted: "none" and the HMAC family (HS*) are not,
// since a JWT-SVID is signed by its trust domain's private key and verified with its public key.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512,
}

// ErrNoBearer is returned when a request carries no bearer token.
var ErrNoBearer = errors.New("identity: no bearer token")

// JWTConfig configures a JWTVerifier.
type JWTConfig struct {
	// Bundles are the JWT bundles of trusted trust domains, normally a workloadapi.JWTSource.
	Bundles jwtbundle.Source
	// Audience is the broker's audience. A token must name exactly this one audience.
	Audience string
	// Issuer, if set, must equal the token's iss claim (spiffe's own bundle path; JWT-SVIDs from SPIRE
	// carry it when the server sets jwt_issuer).
	Issuer string
	// OIDC maps trust domains published only through an OIDC discovery endpoint to that endpoint's
	// issuer URL. Their tokens are verified with the keys discovery publishes, not with Bundles.
	OIDC map[spiffeid.TrustDomain]string
	// HTTPClient is used for OIDC discovery and key fetches. Default: a client with a 10s timeout.
	HTTPClient *http.Client
}

// JWTVerifier verifies JWT-SVIDs presented as bearer tokens.
type JWTVerifier struct {
	cfg JWTConfig

	mu        sync.Mutex
	providers map[spiffeid.TrustDomain]*oidc.IDTokenVerifier
}

// NewJWTVerifier checks cfg and returns a verifier.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("identity: JWT audience is required")
	}
	if cfg.Bundles == nil && len(cfg.OIDC) == 0 {
		return nil, errors.New("identity: JWT verification needs bundles or OIDC trust domains")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &JWTVerifier{cfg: cfg, providers: map[spiffeid.TrustDomain]*oidc.IDTokenVerifier{}}, nil
}

// VerifyRequest verifies the request's "Authorization: Bearer" token.
func (v *JWTVerifier) VerifyRequest(r *http.Request) (Peer, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return Peer{}, ErrNoBearer
	}
	if len(h) > 1 {
		return Peer{}, errors.New("identity: more than one Authorization header")
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Peer{}, ErrNoBearer
	}
	return v.Verify(r.Context(), token)
}

// Verify verifies a JWT-SVID and returns its peer. Errors never contain the token.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (Peer, error) {
	if len(token) > MaxJWTBytes {
		return Peer{}, fmt.Errorf("identity: token larger than %d bytes", MaxJWTBytes)
	}
	// Parse once without verifying, only to learn the trust domain and check the header.
	tok, err := jwt.ParseSigned(token, asymmetricAlgs)
	if err != nil {
		return Peer{}, fmt.Errorf("identity: token refused: %w", err)
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return Peer{}, fmt.Errorf("identity: token claims: %w", err)
	}
	sub, err := spiffeid.FromString(claims.Subject)
	if err != nil {
		return Peer{}, fmt.Errorf("identity: token subject is not a SPIFFE ID: %w", err)
	}
	if claims.Expiry == nil {
		return Peer{}, errors.New("identity: token has no exp claim")
	}
	if len(claims.Audience) != 1 || claims.Audience[0] != v.cfg.Audience {
		return Peer{}, fmt.Errorf("identity: token audience %q, want exactly [%q]", []string(claims.Audience), v.cfg.Audience)
	}
	if issuer, ok := v.cfg.OIDC[sub.TrustDomain()]; ok {
		return v.verifyOIDC(ctx, token, sub.TrustDomain(), issuer)
	}
	if v.cfg.Bundles == nil {
		return Peer{}, fmt.Errorf("identity: no bundle for trust domain %q", sub.TrustDomain())
	}
	svid, err := jwtsvid.ParseAndValidate(token, v.cfg.Bundles, []string{v.cfg.Audience})
	if err != nil {
		return Peer{}, fmt.Errorf("identity: %w", err)
	}
	if v.cfg.Issuer != "" {
		if iss, _ := svid.Claims["iss"].(string); iss != v.cfg.Issuer {
			return Peer{}, fmt.Errorf("identity: token issuer %q, want %q", iss, v.cfg.Issuer)
		}
	}
	return Peer{ID: svid.ID, Expires: svid.Expiry}, nil
}

// verifyOIDC verifies a token of a trust domain published through OIDC discovery: signature against
// the discovered keys, issuer equal to the discovery URL, audience, expiry, and a subject that is a
// SPIFFE ID in that trust domain.
func (v *JWTVerifier) verifyOIDC(ctx context.Context, token string, td spiffeid.TrustDomain, issuer string) (Peer, error) {
	verifier, err := v.oidcVerifier(ctx, td, issuer)
	if err != nil {
		return Peer{}, err
	}
	idt, err := verifier.Verify(ctx, token)
	if err != nil {
		return Peer{}, fmt.Errorf("identity: OIDC token for %s: %w", td, err)
	}
	id, err := spiffeid.FromString(idt.Subject)
	if err != nil || !id.MemberOf(td) {
		return Peer{}, fmt.Errorf("identity: OIDC token subject %q is not a SPIFFE ID in %s", idt.Subject, td)
	}
	return Peer{ID: id, Expires: idt.Expiry}, nil
}

func (v *JWTVerifier) oidcVerifier(ctx context.Context, td spiffeid.TrustDomain, issuer string) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ver, ok := v.providers[td]; ok {
		return ver, nil
	}
	// Discovery is retried on the next request if it fails; the key set it returns refreshes itself
	// when a token names an unknown key.
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.cfg.HTTPClient), issuer)
	if err != nil {
		return nil, fmt.Errorf("identity: OIDC discovery for %s at %s: %w", td, issuer, err)
	}
	algs := make([]string, len(asymmetricAlgs))
	for i, a := range asymmetricAlgs {
		algs[i] = string(a)
	}
	ver := p.VerifierContext(oidc.ClientContext(context.WithoutCancel(ctx), v.cfg.HTTPClient),
		&oidc.Config{ClientID: v.cfg.Audience, SupportedSigningAlgs: algs})
	v.providers[td] = ver
	return ver, nil
}

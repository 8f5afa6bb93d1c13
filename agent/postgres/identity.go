// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// Identity methods, as recorded.
const (
	MethodProcess = "process"
	MethodOIDC    = "oidc"
)

// maxTokenLen bounds the password message carrying a token. ID tokens are a
// few kilobytes; PostgreSQL itself caps a password message at 10,000 bytes
// before authentication (PG_MAX_AUTH_TOKEN_LENGTH is 65535 for SASL).
const maxTokenLen = 64 << 10

// Claims is what a verified OIDC ID token says about its subject.
type Claims = policy.Claims

// TokenVerifier verifies OIDC ID tokens.
type TokenVerifier interface {
	// Verify checks the token's signature, issuer, audience and expiry
	// and returns its claims. Errors never contain the token.
	Verify(ctx context.Context, rawToken string) (*Claims, error)
}

// OIDCVerifier verifies ID tokens from the configured issuers with go-oidc.
// Each issuer's discovery document is fetched on first use (and again after
// a failure); go-oidc caches its keys and refetches them when a token names
// an unknown key id. It is safe for concurrent use.
type OIDCVerifier struct {
	client  *http.Client
	issuers map[string]policy.Issuer

	mu        sync.Mutex
	verifiers map[string]*oidc.IDTokenVerifier
}

// NewOIDCVerifier returns a verifier for issuers. client makes the
// discovery and key requests; nil means http.DefaultClient.
func NewOIDCVerifier(issuers []policy.Issuer, client *http.Client) *OIDCVerifier {
	if client == nil {
		client = http.DefaultClient
	}
	v := &OIDCVerifier{client: client, issuers: map[string]policy.Issuer{}, verifiers: map[string]*oidc.IDTokenVerifier{}}
	for _, is := range issuers {
		v.issuers[is.URL] = is
	}
	return v
}

// Verify implements TokenVerifier.
func (v *OIDCVerifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return nil, err
	}
	is, ok := v.issuers[iss]
	if !ok {
		return nil, fmt.Errorf("token issuer %q is not trusted", iss)
	}
	ver, err := v.verifier(ctx, is)
	if err != nil {
		return nil, err
	}
	tok, err := ver.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	var all map[string]any
	if err := tok.Claims(&all); err != nil {
		return nil, fmt.Errorf("token claims: %w", err)
	}
	c := &Claims{Issuer: tok.Issuer, Subject: tok.Subject, Strings: map[string]string{}}
	for k, val := range all {
		if s, ok := val.(string); ok {
			c.Strings[k] = s
		}
	}
	gc := is.GroupsClaim
	if gc == "" {
		gc = "groups"
	}
	switch g := all[gc].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				c.Groups = append(c.Groups, s)
			}
		}
	case string:
		c.Groups = []string{g}
	}
	return c, nil
}

// verifier returns the issuer's verifier, discovering it on first use.
func (v *OIDCVerifier) verifier(ctx context.Context, is policy.Issuer) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	ver := v.verifiers[is.URL]
	v.mu.Unlock()
	if ver != nil {
		return ver, nil
	}
	// Discovery and key fetches outlive this request's context: the
	// key set keeps the context for its later refreshes.
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.Background(), v.client), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, is.URL)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery for %s: %w", is.URL, err)
	}
	var claims struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&claims); err != nil || claims.JWKS == "" {
		return nil, fmt.Errorf("oidc discovery for %s: no jwks_uri", is.URL)
	}
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), v.client), claims.JWKS)
	ver = oidc.NewVerifier(is.URL, keys, &oidc.Config{ClientID: is.Audience, SupportedSigningAlgs: signingAlgs(p)})
	v.mu.Lock()
	v.verifiers[is.URL] = ver
	v.mu.Unlock()
	return ver, nil
}

// signingAlgs are the algorithms the provider says it signs with, without
// "none" (go-jose refuses it anyway; this keeps the intent explicit).
func signingAlgs(p *oidc.Provider) []string {
	var d struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	_ = p.Claims(&d)
	out := slices.DeleteFunc(d.Algs, func(a string) bool { return strings.EqualFold(a, "none") })
	if len(out) == 0 {
		return []string{oidc.RS256}
	}
	return out
}

// unverifiedIssuer reads the iss claim of a JWT without verifying it, only
// to pick the issuer whose keys verify it.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("password is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("malformed JWT payload")
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", errors.New("malformed JWT claims")
	}
	if c.Iss == "" {
		return "", errors.New("token has no issuer")
	}
	return c.Iss, nil
}

// matchProcess reports whether a process identity matches the process.
func matchProcess(pi *policy.ProcessIdentity, p *audit.Process) bool {
	return p != nil && pi.Matches(p.UID, p.Exe, p.Cgroup)
}

// matchOIDC reports whether an OIDC identity matches verified claims.
func matchOIDC(oi *policy.OIDCIdentity, c *Claims) bool { return oi.Matches(c) }

// resolveIdentity names the client: the first identity in config order
// whose set sections all match. With claims (client_auth oidc) the
// identity must have an oidc section; without, only process identities
// qualify.
func resolveIdentity(ids []policy.Identity, p *audit.Process, c *Claims) *policy.Identity {
	for i := range ids {
		if matchIdentity(&ids[i], p, c) {
			return &ids[i]
		}
	}
	return nil
}

// matchedIdentities names every identity the client matches, in config
// order: rules and grants may name any of them.
func matchedIdentities(ids []policy.Identity, p *audit.Process, c *Claims) []string {
	var out []string
	for i := range ids {
		if matchIdentity(&ids[i], p, c) {
			out = append(out, ids[i].Name)
		}
	}
	return out
}

// matchIdentity reports whether an identity's set sections all match.
func matchIdentity(id *policy.Identity, p *audit.Process, c *Claims) bool {
	if c != nil {
		if id.OIDC == nil || !matchOIDC(id.OIDC, c) {
			return false
		}
	} else if id.OIDC != nil || id.Process == nil {
		return false
	}
	return id.Process == nil || matchProcess(id.Process, p)
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tollgate-dev/tollgate/agent/postgres"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// Errors of approver authentication.
var (
	// ErrBadToken means the approver's ID token was missing, malformed,
	// not from a trusted issuer, not for this audience or badly signed.
	ErrBadToken = errors.New("invalid approver token")
	// ErrTokenExpired means the approver's ID token has expired.
	ErrTokenExpired = errors.New("approver token expired")
	// ErrNoIssuers means no OIDC issuer is configured, so no approver can
	// prove who they are.
	ErrNoIssuers = errors.New("no oidc issuers configured")
)

// approver is an authenticated caller of the control API.
type approver struct {
	person policy.Person
	// identity is how records name the approver.
	identity *audit.Identity
}

// authenticate verifies an approver's ID token and names them: issuer,
// subject and groups from the token, and every configured identity whose
// oidc section matches the claims (and whose process section, if any,
// matches the calling process). Errors never contain the token.
func (a *Agent) authenticate(ctx context.Context, token string, proc *audit.Process) (approver, error) {
	a.mu.Lock()
	ver := a.oidc
	ids := a.cfg.Identities
	a.mu.Unlock()
	if ver == nil {
		return approver{}, ErrNoIssuers
	}
	if token == "" {
		return approver{}, fmt.Errorf("%w: no Authorization: Bearer token", ErrBadToken)
	}
	c, err := ver.Verify(ctx, token)
	if err != nil {
		var te *oidc.TokenExpiredError
		if errors.As(err, &te) {
			return approver{}, fmt.Errorf("%w at %s", ErrTokenExpired, te.Expiry.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return approver{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return newApprover(c, ids, proc), nil
}

// newApprover builds the approver from verified claims.
func newApprover(c *postgres.Claims, ids []policy.Identity, proc *audit.Process) approver {
	p := policy.Person{Issuer: c.Issuer, Subject: c.Subject, Groups: slices.Clone(c.Groups)}
	for i := range ids {
		id := &ids[i]
		if id.OIDC == nil || !id.OIDC.Matches(c) {
			continue
		}
		if id.Process != nil && (proc == nil || !id.Process.Matches(proc.UID, proc.Exe, proc.Cgroup)) {
			continue
		}
		p.Identities = append(p.Identities, id.Name)
	}
	if len(p.Identities) > 0 {
		p.Name = p.Identities[0]
	}
	return approver{person: p, identity: &audit.Identity{Name: p.Name, Method: postgres.MethodOIDC,
		Issuer: p.Issuer, Subject: p.Subject, Groups: p.Groups}}
}

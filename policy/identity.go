// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"slices"
	"strings"
)

// Claims are the verified claims of an OIDC ID token, as identities match
// them.
type Claims struct {
	Issuer  string
	Subject string
	// Groups are the values of the issuer's groups claim.
	Groups []string
	// Strings are the token's string-valued claims.
	Strings map[string]string
}

// Matches reports whether verified claims match the identity's oidc
// section: the same issuer, the subject if set, every listed claim, and
// any one of the listed groups.
func (oi *OIDCIdentity) Matches(c *Claims) bool {
	if c == nil || oi.Issuer != c.Issuer {
		return false
	}
	if oi.Subject != "" && oi.Subject != c.Subject {
		return false
	}
	for k, want := range oi.Claims {
		if got, ok := c.Strings[k]; !ok || got != want {
			return false
		}
	}
	return len(oi.Groups) == 0 || slices.ContainsFunc(oi.Groups, func(g string) bool { return slices.Contains(c.Groups, g) })
}

// Matches reports whether a process, given by its real uid, executable
// path and cgroup v2 path, matches the identity's process section: every
// set field must match; a cgroup matches its subtree, and a unit matches
// the processes in its cgroup or below it.
func (pi *ProcessIdentity) Matches(uid uint32, exe, cgroup string) bool {
	if pi.UID != nil && *pi.UID != uid {
		return false
	}
	if pi.Exe != "" && pi.Exe != exe {
		return false
	}
	if pi.Cgroup != "" && cgroup != pi.Cgroup && !strings.HasPrefix(cgroup, strings.TrimSuffix(pi.Cgroup, "/")+"/") {
		return false
	}
	if pi.Unit != "" && !slices.Contains(strings.Split(cgroup, "/"), pi.Unit) {
		return false
	}
	return true
}

// ProcessIdentities returns, in config order, the identities that a process
// matches by its process attributes alone: those with a process section
// that matches and no oidc section (an oidc section needs a token, which a
// process-identified client does not give). The first is the one a
// session is recorded as; rules may name any of them.
func ProcessIdentities(ids []Identity, uid uint32, exe, cgroup string) []*Identity {
	var out []*Identity
	for i := range ids {
		id := &ids[i]
		if id.OIDC == nil && id.Process != nil && id.Process.Matches(uid, exe, cgroup) {
			out = append(out, id)
		}
	}
	return out
}

// TokenIdentities returns, in config order, the identities that a client
// with verified token claims matches: those with an oidc section that the
// claims match, whose process section (if any) the process matches too.
func TokenIdentities(ids []Identity, c *Claims, uid uint32, exe, cgroup string) []*Identity {
	var out []*Identity
	for i := range ids {
		id := &ids[i]
		if id.OIDC == nil || !id.OIDC.Matches(c) {
			continue
		}
		if id.Process != nil && !id.Process.Matches(uid, exe, cgroup) {
			continue
		}
		out = append(out, id)
	}
	return out
}

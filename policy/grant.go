// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

// Errors returned by grants.
var (
	// ErrNoSuchGrant means the id names no grant.
	ErrNoSuchGrant = errors.New("no such grant")
	// ErrBadGrant means a grant request is incomplete or out of bounds.
	ErrBadGrant = errors.New("invalid grant")
	// ErrNotGrantor means the person may not create (or revoke) the grant:
	// they approve no single-approver review rule covering its identity,
	// target and classes (Config.MayGrant).
	ErrNotGrantor = errors.New("not authorised to grant this")
	// ErrSelfGrant means the grant would go to an identity the person
	// holds themselves.
	ErrSelfGrant = errors.New("granting rights to oneself is not allowed")
)

// MaxGrantDuration bounds a just-in-time grant.
const MaxGrantDuration = 7 * 24 * time.Hour

// Grant gives an identity extra classes on a target for a bounded time. It
// is a pre-approval by an authorised approver: it allows what it names even
// where a review rule would hold it, but never what a deny rule denies.
type Grant struct {
	ID       string    `json:"id"`
	Identity string    `json:"identity"`
	Target   string    `json:"target"`
	Classes  []Class   `json:"classes"`
	Reason   string    `json:"reason"`
	By       Person    `json:"by"`
	Created  time.Time `json:"created"`
	Until    time.Time `json:"until"`
	Revoked  time.Time `json:"revoked,omitzero"`
}

// ActiveAt reports whether the grant is in force at t.
func (g Grant) ActiveAt(t time.Time) bool {
	return g.Revoked.IsZero() && !t.Before(g.Created) && t.Before(g.Until)
}

// Grants is the persistent set of grants, one JSON file written atomically.
// Expired and revoked grants stay in the file as history until Prune.
type Grants struct {
	mu   sync.Mutex
	path string
	all  []Grant
}

// OpenGrants loads the grants file, or starts empty when it does not exist.
func OpenGrants(path string) (*Grants, error) {
	g := &Grants{path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return g, nil
	case err != nil:
		return nil, fmt.Errorf("open grants: %w", err)
	}
	if err := json.Unmarshal(b, &g.all); err != nil {
		return nil, fmt.Errorf("open grants %s: %w", path, err)
	}
	return g, nil
}

// Create adds a grant lasting d from now and persists it before returning.
func (g *Grants) Create(identity, target string, classes []Class, d time.Duration, reason string, by Person, now time.Time) (Grant, error) {
	switch {
	case identity == "" || target == "" || len(classes) == 0:
		return Grant{}, fmt.Errorf("%w: identity, target and classes are required", ErrBadGrant)
	case d <= 0 || d > MaxGrantDuration:
		return Grant{}, fmt.Errorf("%w: duration %s not in (0, %s]", ErrBadGrant, d, MaxGrantDuration)
	case reason == "":
		return Grant{}, fmt.Errorf("%w: a reason is required", ErrBadGrant)
	}
	for _, c := range classes {
		if !c.Valid() {
			return Grant{}, fmt.Errorf("%w: unknown class %q", ErrBadGrant, c)
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Grant{}, fmt.Errorf("grant id: %w", err)
	}
	gr := Grant{ID: "gr-" + hex.EncodeToString(b[:]), Identity: identity, Target: target, Classes: slices.Clone(classes),
		Reason: reason, By: by, Created: now.UTC(), Until: now.UTC().Add(d)}
	g.mu.Lock()
	defer g.mu.Unlock()
	next := append(slices.Clone(g.all), gr)
	if err := g.save(next); err != nil {
		return Grant{}, err
	}
	g.all = next
	return gr, nil
}

// Revoke ends a grant now and persists that.
func (g *Grants) Revoke(id string, now time.Time) (Grant, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	next := slices.Clone(g.all)
	for i := range next {
		if next[i].ID == id && next[i].Revoked.IsZero() {
			next[i].Revoked = now.UTC()
			if err := g.save(next); err != nil {
				return Grant{}, err
			}
			g.all = next
			return next[i], nil
		}
	}
	return Grant{}, fmt.Errorf("revoke %s: %w", id, ErrNoSuchGrant)
}

// List returns every grant, newest first.
func (g *Grants) List() []Grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := slices.Clone(g.all)
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// Active returns the grants in force at now for any of the identities on
// target.
func (g *Grants) Active(identities []string, target string, now time.Time) []Grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Grant
	for _, gr := range g.all {
		if gr.Target == target && slices.Contains(identities, gr.Identity) && gr.ActiveAt(now) {
			out = append(out, gr)
		}
	}
	return out
}

// save writes the grants durably: temp file, fsync, rename, fsync dir.
func (g *Grants) save(all []Grant) error {
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return fmt.Errorf("save grants: %w", err)
	}
	if err := atomicfile.WriteFile(g.path, b, 0o600); err != nil {
		return fmt.Errorf("save grants: %w", err)
	}
	return nil
}

// Who may grant. A grant is a pre-approval, so it may only come from
// someone who could approve those statements one by one anyway, alone:
// a person may grant identity I the classes C on target T when, for
// every class in C, the policy has a review rule that
//   - matches I and T (its when.identities and when.targets are empty or
//     name them),
//   - names that class in when.classes (or has none),
//   - needs a single approver (approvers.min is 0 or 1: one person must
//     not bypass a four-eyes rule with a grant),
//   - and lists the person among its approvers, by identity or group.
//
// Nobody may grant to an identity they hold themselves. Deny rules still
// beat any grant (Engine.Decide). A grant may be revoked by whoever
// created it or by anyone who may create it.

// MayGrant checks that p may grant identity the classes on target under
// c's rules: nil, or an error wrapping ErrBadGrant (a target or identity
// the policy does not define), ErrSelfGrant or ErrNotGrantor. revoking
// checks the right to revoke such a grant, which a person may do for
// their own identity too.
func (c *Config) MayGrant(p Person, identity, target string, classes []Class, revoking bool) error {
	if !slices.ContainsFunc(c.Targets, func(t Target) bool { return t.Name == target }) {
		return fmt.Errorf("%w: no target %q in the policy", ErrBadGrant, target)
	}
	if !slices.ContainsFunc(c.Identities, func(id Identity) bool { return id.Name == identity }) {
		return fmt.Errorf("%w: no identity %q in the policy", ErrBadGrant, identity)
	}
	if !revoking && slices.Contains(p.Identities, identity) {
		return fmt.Errorf("%w: you are %q yourself", ErrSelfGrant, identity)
	}
	for _, cl := range classes {
		if !slices.ContainsFunc(c.Rules, func(r Rule) bool { return grantableBy(&r, p, identity, target, cl) }) {
			return fmt.Errorf("%w: you approve no single-approver review rule for %s by %s on %s", ErrNotGrantor, cl, identity, target)
		}
	}
	return nil
}

// grantableBy reports whether rule r lets p grant class c to identity on
// target.
func grantableBy(r *Rule, p Person, identity, target string, c Class) bool {
	if r.Action != ActionReview || r.Approvers.Min > 1 {
		return false
	}
	w := &r.When
	if len(w.Identities) > 0 && !slices.Contains(w.Identities, identity) {
		return false
	}
	if len(w.Targets) > 0 && !slices.Contains(w.Targets, target) {
		return false
	}
	if len(w.Classes) > 0 && !slices.ContainsFunc(w.Classes, func(rc Class) bool {
		return rc == c || rc == ClassCopy && (c == ClassCopyIn || c == ClassCopyOut)
	}) {
		return false
	}
	return r.Approvers.Includes(p)
}

// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// Errors returned by grants.
var (
	// ErrNoSuchGrant means the id names no grant.
	ErrNoSuchGrant = errors.New("no such grant")
	// ErrBadGrant means a grant request is incomplete or out of bounds.
	ErrBadGrant = errors.New("invalid grant")
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
	dir := filepath.Dir(g.path)
	f, err := os.CreateTemp(dir, ".grants-*")
	if err != nil {
		return fmt.Errorf("save grants: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save grants: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save grants: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save grants: %w", err)
	}
	if err := os.Rename(tmp, g.path); err != nil {
		return fmt.Errorf("save grants: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save grants: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save grants: %w", err)
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// Who may grant. A grant is a pre-approval, so it may only come from
// someone who could approve those statements one by one anyway, alone:
// the caller may grant identity I the classes C on target T when, for
// every class in C, the policy in force has a review rule that
//   - matches I and T (its when.identities and when.targets are empty or
//     name them),
//   - names that class in when.classes (or has none),
//   - needs a single approver (approvers.min is 0 or 1: one person must
//     not bypass a four-eyes rule with a grant),
//   - and lists the caller among its approvers, by identity or group.
//
// Nobody may grant to an identity they hold themselves. Deny rules still
// beat any grant (policy.Engine.Decide). A grant may be revoked by whoever
// created it or by anyone who may create it.

// grantAuthority checks that p may grant identity the classes on target
// under cfg's rules.
func grantAuthority(cfg *policy.Config, p policy.Person, identity, target string, classes []policy.Class, self bool) error {
	if !slices.ContainsFunc(cfg.Targets, func(t policy.Target) bool { return t.Name == target }) {
		return fmt.Errorf("%w: no target %q in the policy", ErrBadRequest, target)
	}
	if !slices.ContainsFunc(cfg.Identities, func(id policy.Identity) bool { return id.Name == identity }) {
		return fmt.Errorf("%w: no identity %q in the policy", ErrBadRequest, identity)
	}
	if !self && slices.Contains(p.Identities, identity) {
		return fmt.Errorf("%w: you are %q yourself", ErrSelfGrant, identity)
	}
	for _, c := range classes {
		if !slices.ContainsFunc(cfg.Rules, func(r policy.Rule) bool { return grantableBy(&r, p, identity, target, c) }) {
			return fmt.Errorf("%w: you approve no single-approver review rule for %s by %s on %s", ErrNotGrantor, c, identity, target)
		}
	}
	return nil
}

// grantableBy reports whether rule r lets p grant class c to identity on
// target.
func grantableBy(r *policy.Rule, p policy.Person, identity, target string, c policy.Class) bool {
	if r.Action != policy.ActionReview || r.Approvers.Min > 1 {
		return false
	}
	w := &r.When
	if len(w.Identities) > 0 && !slices.Contains(w.Identities, identity) {
		return false
	}
	if len(w.Targets) > 0 && !slices.Contains(w.Targets, target) {
		return false
	}
	if len(w.Classes) > 0 && !slices.ContainsFunc(w.Classes, func(rc policy.Class) bool {
		return rc == c || rc == policy.ClassCopy && (c == policy.ClassCopyIn || c == policy.ClassCopyOut)
	}) {
		return false
	}
	return r.Approvers.Includes(p)
}

// grantRecord describes a grant event. Identity is who acted: the grantor
// for created and expired, the revoker for revoked.
func grantRecord(g policy.Grant, event string, who *audit.Identity, proc *audit.Process) *audit.Record {
	classes := make([]string, len(g.Classes))
	for i, c := range g.Classes {
		classes[i] = string(c)
	}
	d := map[string]string{
		audit.DetailGrant: g.ID, audit.DetailEvent: event, audit.DetailIdentity: g.Identity, audit.DetailTarget: g.Target,
		audit.DetailAllow: strings.Join(classes, ","), audit.DetailFor: policy.Duration(g.Until.Sub(g.Created)).String(),
		audit.DetailReason: g.Reason, audit.DetailUntil: g.Until.Format(time.RFC3339Nano), audit.DetailGrantedBy: g.By.Label(),
	}
	return &audit.Record{Kind: audit.KindGrant, Target: g.Target, Identity: who, Process: proc, Detail: d}
}

// handleGrantCreate creates a grant for an authorised approver. The grant
// is persisted, then recorded; if it cannot be recorded it is revoked
// again and the call fails, so no grant is in force unrecorded for longer
// than that.
func (a *Agent) handleGrantCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := a.begin(w, r, "grant.create")
	if !ok {
		return
	}
	var req GrantRequest
	if err := decodeBody(w, r, &req); err != nil {
		a.refuse(w, c, err)
		return
	}
	c.target = req.Target
	for k, v := range map[string]string{audit.DetailIdentity: req.Identity, audit.DetailTarget: req.Target, audit.DetailFor: req.For.String(), audit.DetailReason: req.Reason} {
		c.detail[k] = v
	}
	ap, err := a.authenticateCall(r.Context(), r, c)
	if err != nil {
		a.refuse(w, c, err)
		return
	}
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	if err := grantAuthority(&cfg, ap.person, req.Identity, req.Target, req.Classes, false); err != nil {
		a.refuse(w, c, err)
		return
	}
	g, err := a.grants.Create(req.Identity, req.Target, req.Classes, time.Duration(req.For), req.Reason, ap.person, time.Now())
	if err != nil {
		a.refuse(w, c, err)
		return
	}
	if err := a.record(grantRecord(g, "created", ap.identity, c.proc)); err != nil {
		if _, rerr := a.grants.Revoke(g.ID, time.Now()); rerr != nil {
			a.log.Error("grant created but neither recorded nor revoked", "grant", g.ID, "error", rerr)
		}
		writeAPIError(w, apiErrorOf(fmt.Errorf("%w: grant not created: %v", ErrAuditUnavailable, err)))
		return
	}
	a.log.Info("grant created", "grant", g.ID, "identity", g.Identity, "target", g.Target, "until", g.Until, "by", ap.person.Subject)
	writeJSON(w, http.StatusCreated, GrantInfo{Grant: g, State: grantState(g, time.Now())})
}

// handleGrantRevoke ends a grant now, for its creator or anyone who may
// create it.
func (a *Agent) handleGrantRevoke(w http.ResponseWriter, r *http.Request) {
	c, ok := a.begin(w, r, "grant.revoke")
	if !ok {
		return
	}
	id := r.PathValue("id")
	c.detail[audit.DetailGrant] = id
	var req RevokeRequest
	if err := decodeBody(w, r, &req); err != nil {
		a.refuse(w, c, err)
		return
	}
	ap, err := a.authenticateCall(r.Context(), r, c)
	if err != nil {
		a.refuse(w, c, err)
		return
	}
	var g policy.Grant
	found := false
	for _, x := range a.grants.List() {
		if x.ID == id {
			g, found = x, true
		}
	}
	if !found {
		a.refuse(w, c, fmt.Errorf("revoke %s: %w", id, policy.ErrNoSuchGrant))
		return
	}
	c.target = g.Target
	if st := grantState(g, time.Now()); st != "active" {
		a.refuse(w, c, fmt.Errorf("revoke %s: %w (%s)", id, ErrGrantEnded, st))
		return
	}
	if !g.By.Same(ap.person) {
		a.mu.Lock()
		cfg := a.cfg
		a.mu.Unlock()
		if err := grantAuthority(&cfg, ap.person, g.Identity, g.Target, g.Classes, true); err != nil {
			a.refuse(w, c, fmt.Errorf("revoke %s: %w", id, err))
			return
		}
	}
	g, err = a.grants.Revoke(id, time.Now())
	if err != nil {
		a.refuse(w, c, err)
		return
	}
	rec := grantRecord(g, "revoked", ap.identity, c.proc)
	if req.Reason != "" {
		rec.Detail[audit.DetailRevokeReason] = req.Reason
	}
	if err := a.record(rec); err != nil {
		// Revoking only takes rights away, so it stands; its record is
		// kept and retried until the log takes it.
		a.rec.RecordEventually(rec)
		writeAPIError(w, apiErrorOf(fmt.Errorf("%w: grant %s revoked, its record is queued: %v", ErrAuditUnavailable, id, err)))
		return
	}
	a.log.Info("grant revoked", "grant", id, "by", ap.person.Subject)
	writeJSON(w, http.StatusOK, GrantInfo{Grant: g, State: grantState(g, time.Now())})
}

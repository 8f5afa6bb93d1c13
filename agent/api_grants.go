// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

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
	if err := cfg.MayGrant(ap.person, req.Identity, req.Target, req.Classes, false); err != nil {
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
		if err := cfg.MayGrant(ap.person, g.Identity, g.Target, g.Classes, true); err != nil {
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

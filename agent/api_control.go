// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// Errors of the control API (approvals and grants), as the server sends
// them and [Client] returns them. Approval errors are policy's sentinels
// (policy.ErrNoSuchApproval, ErrNotApprover, ErrSelfApproval,
// ErrAlreadyDecided, ErrNoSuchGrant).
var (
	// ErrNotGrantor means the caller may not create (or revoke) this
	// grant: they approve no single-approver review rule covering its
	// identity, target and classes. It is policy.ErrNotGrantor, the
	// rule's own sentinel.
	ErrNotGrantor = policy.ErrNotGrantor
	// ErrSelfGrant means the caller asked for a grant to an identity they
	// hold themselves. It is policy.ErrSelfGrant.
	ErrSelfGrant = policy.ErrSelfGrant
	// ErrGrantEnded means the grant was already revoked or has expired.
	ErrGrantEnded = errors.New("grant already ended")
	// ErrBadRequest means the request was malformed or incomplete.
	ErrBadRequest = errors.New("bad request")
	// ErrUnidentifiedCaller means the API could not read the caller's
	// credentials (SO_PEERCRED), so it refuses to change state for it.
	ErrUnidentifiedCaller = errors.New("caller could not be identified")
	// ErrAuditUnavailable means the call could not be recorded, so it was
	// refused (or, for a revocation, recorded later).
	ErrAuditUnavailable = errors.New("audit log unavailable")
)

// maxBody bounds a control API request body; maxToken the bearer token.
const (
	maxBody  = 64 << 10
	maxToken = 64 << 10
)

// finalRecordWait bounds how long an approval call waits for the held
// session to record the decision that ended the hold.
const finalRecordWait = 10 * time.Second

// DecideRequest is the body of POST /v1/approvals/{id}/approve and
// /v1/approvals/{id}/deny. The approver's OIDC ID token travels in the
// Authorization header as a bearer token.
type DecideRequest struct {
	// Reason says why; required to deny.
	Reason string `json:"reason,omitempty"`
}

// DecideResult answers a decision.
type DecideResult struct {
	// Approval is the id decided on.
	Approval string `json:"approval"`
	// Final reports whether this decision ended the hold: a denial, or
	// the approval that reached the rule's minimum.
	Final bool `json:"final"`
	// Approved is the verdict when Final.
	Approved bool `json:"approved"`
	// Approvals is how many approvers have approved so far, of Needed.
	Approvals int `json:"approvals"`
	Needed    int `json:"needed"`
	// Recorded reports whether the decision's record is durable: the
	// partial vote's, or for a final decision the one the held session
	// writes before it acts on the verdict. Seq is that record.
	Recorded bool   `json:"recorded"`
	Seq      uint64 `json:"seq,omitempty"`
}

// GrantRequest is the body of POST /v1/grants.
type GrantRequest struct {
	Identity string          `json:"identity"`
	Target   string          `json:"target"`
	Classes  []policy.Class  `json:"classes"`
	For      policy.Duration `json:"for"`
	Reason   string          `json:"reason"`
}

// RevokeRequest is the body of POST /v1/grants/{id}/revoke.
type RevokeRequest struct {
	// Reason says why, optionally.
	Reason string `json:"reason,omitempty"`
}

// GrantInfo is a grant with its state at the time of the answer.
type GrantInfo struct {
	policy.Grant
	// State is "active", "expired" or "revoked".
	State string `json:"state"`
}

// APIError is the JSON body of a refused control API call.
type APIError struct {
	// Code names the error for programs: see codeErrors.
	Code string `json:"code"`
	// Message says what went wrong, for people.
	Message string `json:"error"`
	// Status is the HTTP status (not in the body).
	Status int `json:"-"`
}

func (e *APIError) Error() string { return e.Message }

// Is makes errors.Is(err, policy.ErrSelfApproval) and the like work on
// the client side.
func (e *APIError) Is(target error) bool {
	for _, c := range apiCodes {
		if c.code == e.Code {
			return c.err == target
		}
	}
	return false
}

// apiCodes are the API's error codes, the sentinels they stand for and
// their HTTP status.
var apiCodes = []struct {
	code   string
	err    error
	status int
}{
	{"no_such_approval", policy.ErrNoSuchApproval, http.StatusNotFound},
	{"not_approver", policy.ErrNotApprover, http.StatusForbidden},
	{"self_approval", policy.ErrSelfApproval, http.StatusForbidden},
	{"already_decided", policy.ErrAlreadyDecided, http.StatusConflict},
	{"no_such_grant", policy.ErrNoSuchGrant, http.StatusNotFound},
	{"bad_token", ErrBadToken, http.StatusUnauthorized},
	{"token_expired", ErrTokenExpired, http.StatusUnauthorized},
	{"no_issuers", ErrNoIssuers, http.StatusUnauthorized},
	{"not_grantor", ErrNotGrantor, http.StatusForbidden},
	{"self_grant", ErrSelfGrant, http.StatusForbidden},
	{"grant_ended", ErrGrantEnded, http.StatusConflict},
	{"bad_request", ErrBadRequest, http.StatusBadRequest},
	{"bad_grant", policy.ErrBadGrant, http.StatusBadRequest},
	{"unidentified", ErrUnidentifiedCaller, http.StatusForbidden},
	{"audit_unavailable", ErrAuditUnavailable, http.StatusServiceUnavailable},
}

// apiErrorOf classifies err for the wire.
func apiErrorOf(err error) *APIError {
	for _, c := range apiCodes {
		if errors.Is(err, c.err) {
			return &APIError{Code: c.code, Message: err.Error(), Status: c.status}
		}
	}
	return &APIError{Code: "internal", Message: err.Error(), Status: http.StatusInternalServerError}
}

// serveControlAPI registers the approval and grant endpoints.
func (a *Agent) serveControlAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/approvals", a.handleApprovals)
	mux.HandleFunc("POST /v1/approvals/{id}/approve", func(w http.ResponseWriter, r *http.Request) { a.handleDecide(w, r, true) })
	mux.HandleFunc("POST /v1/approvals/{id}/deny", func(w http.ResponseWriter, r *http.Request) { a.handleDecide(w, r, false) })
	mux.HandleFunc("GET /v1/grants", a.handleGrants)
	mux.HandleFunc("POST /v1/grants", a.handleGrantCreate)
	mux.HandleFunc("POST /v1/grants/{id}/revoke", a.handleGrantRevoke)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeAPIError(w http.ResponseWriter, e *APIError) { writeJSON(w, e.Status, e) }

func (a *Agent) handleApprovals(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.approvals.List())
}

func (a *Agent) handleGrants(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	list := a.grants.List()
	out := make([]GrantInfo, 0, len(list))
	for _, g := range list {
		out = append(out, GrantInfo{Grant: g, State: grantState(g, now)})
	}
	writeJSON(w, http.StatusOK, out)
}

func grantState(g policy.Grant, now time.Time) string {
	switch {
	case !g.Revoked.IsZero():
		return "revoked"
	case !now.Before(g.Until):
		return "expired"
	}
	return "active"
}

// call is one state-changing API call: who makes it, from where, and what
// it is, for its records.
type call struct {
	name   string // approve, deny, grant.create, grant.revoke
	peer   peerCred
	proc   *audit.Process
	who    *audit.Identity // once authenticated
	detail map[string]string
	// session and target tie a refusal to the held statement it is about.
	session, target string
}

// begin identifies the caller of a state-changing call. Without
// credentials the call is refused (and recorded as far as possible).
func (a *Agent) begin(w http.ResponseWriter, r *http.Request, name string) (*call, bool) {
	c := &call{name: name, detail: map[string]string{"call": name}}
	p, ok := peerFrom(r.Context())
	if !ok {
		a.refuse(w, c, ErrUnidentifiedCaller)
		return nil, false
	}
	c.peer, c.proc = p, p.process()
	return c, true
}

// refuse records a refused call as an error record with the caller's
// process and the reason, then answers. If even that cannot be recorded,
// the answer says so.
func (a *Agent) refuse(w http.ResponseWriter, c *call, err error) {
	e := apiErrorOf(err)
	d := map[string]string{"code": e.Code}
	for k, v := range c.detail {
		d[k] = v
	}
	rec := &audit.Record{Kind: audit.KindError, Session: c.session, Target: c.target, Process: c.proc, Identity: c.who,
		Error: fmt.Sprintf("%s refused: %s", c.name, e.Message), Detail: d}
	if rerr := a.record(rec); rerr != nil {
		a.log.Error("recording a refused API call", "call", c.name, "error", rerr)
		writeAPIError(w, apiErrorOf(fmt.Errorf("%w: %s was refused (%s) and the refusal could not be recorded: %v",
			ErrAuditUnavailable, c.name, e.Message, rerr)))
		return
	}
	a.log.Info("API call refused", "call", c.name, "uid", c.peer.UID, "pid", c.peer.PID, "error", e.Message)
	writeAPIError(w, e)
}

// decodeBody reads a JSON body of at most maxBody bytes into v; an empty
// body leaves v as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	return nil
}

// bearer returns the request's bearer token, "" when there is none.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", nil
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", fmt.Errorf("%w: Authorization header is not \"Bearer <token>\"", ErrBadToken)
	}
	if len(tok) > maxToken {
		return "", fmt.Errorf("%w: token longer than %d bytes", ErrBadToken, maxToken)
	}
	return strings.TrimSpace(tok), nil
}

// authenticateCall verifies the call's token and fills in who makes it.
func (a *Agent) authenticateCall(ctx context.Context, r *http.Request, c *call) (approver, error) {
	tok, err := bearer(r)
	if err != nil {
		return approver{}, err
	}
	ap, err := a.authenticate(ctx, tok, c.proc)
	if err != nil {
		return approver{}, err
	}
	c.who = ap.identity
	return ap, nil
}

func (a *Agent) holdByID(id string) (policy.Hold, bool) {
	for _, h := range a.approvals.List() {
		if h.ID == id {
			return h, true
		}
	}
	return policy.Hold{}, false
}

// handleDecide approves or denies a held statement. The hold's own session
// records the decision that ends it (approval.decision with the verdict)
// before it acts on it; this call records the votes that do not end it, and
// answers once the decision is durable either way.
func (a *Agent) handleDecide(w http.ResponseWriter, r *http.Request, approve bool) {
	name := "deny"
	if approve {
		name = "approve"
	}
	c, ok := a.begin(w, r, name)
	if !ok {
		return
	}
	id := r.PathValue("id")
	c.detail[audit.DetailApproval] = id
	var req DecideRequest
	if err := decodeBody(w, r, &req); err != nil {
		a.refuse(w, c, err)
		return
	}
	h, held := a.holdByID(id)
	if held {
		c.session, c.target = h.Session, h.Target
	}
	ap, err := a.authenticateCall(r.Context(), r, c)
	if err != nil {
		a.refuse(w, c, err)
		return
	}
	if !approve && strings.TrimSpace(req.Reason) == "" {
		a.refuse(w, c, fmt.Errorf("%w: a reason is required to deny", ErrBadRequest))
		return
	}
	from := a.alog.Size()
	v, err := a.approvals.Decide(id, ap.person, approve, req.Reason)
	if err != nil {
		a.refuse(w, c, err)
		return
	}
	needed := max(h.Approvers.Min, 1)
	res := DecideResult{Approval: id, Needed: needed, Approvals: len(h.Approvals)}
	if v == nil {
		// A vote that does not end the hold: this call records it.
		res.Approvals++
		_, hash := a.pol.Current()
		action := "deny"
		if approve {
			action = "allow"
		}
		rec := &audit.Record{Kind: audit.KindApprovalDecision, Session: h.Session, Target: h.Target, Identity: ap.identity,
			Process: c.proc, Decision: &audit.Decision{Action: action, Rule: h.Rule, Policy: hash, Reason: req.Reason},
			Detail: map[string]string{audit.DetailApproval: id, audit.DetailFinal: "false",
				"approvals": strconv.Itoa(res.Approvals), "needed": strconv.Itoa(needed)}}
		seq, err := a.alog.Append(r.Context(), rec)
		if err != nil {
			// The vote counts in memory; the log is unwritable, so the
			// held statement cannot run anyway (its final decision is
			// recorded before it acts, with every approver).
			writeAPIError(w, apiErrorOf(fmt.Errorf("%w: vote on %s taken but not recorded: %v", ErrAuditUnavailable, id, err)))
			return
		}
		res.Recorded, res.Seq = true, seq
		a.log.Info("approval vote", "approval", id, "approver", ap.person.Subject, "approvals", res.Approvals, "needed", needed)
		writeJSON(w, http.StatusOK, res)
		return
	}
	res.Final, res.Approved = true, v.Approved
	if v.Approved {
		res.Approvals = len(v.By)
	}
	a.log.Info("approval decided", "approval", id, "approver", ap.person.Subject, "approved", v.Approved)
	res.Seq, res.Recorded = a.waitDecisionRecord(r.Context(), from, id)
	writeJSON(w, http.StatusOK, res)
}

// waitDecisionRecord waits (bounded) until the log holds, at or after
// from, the approval.decision record the held session writes for id.
func (a *Agent) waitDecisionRecord(ctx context.Context, from uint64, id string) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, finalRecordWait)
	defer cancel()
	for {
		for from < a.alog.Size() {
			entries, err := a.alog.Read(from, 256)
			if err != nil || len(entries) == 0 {
				return 0, false
			}
			for _, e := range entries {
				from = e.Seq + 1
				r, err := e.Record()
				if err != nil {
					continue
				}
				if r.Kind == audit.KindApprovalDecision && r.Detail[audit.DetailApproval] == id && r.Detail[audit.DetailFinal] != "false" {
					return e.Seq, true
				}
			}
		}
		if err := a.alog.Wait(ctx, from); err != nil {
			return 0, false
		}
	}
}

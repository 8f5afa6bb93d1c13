// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// Why a hold was cancelled (context causes).
var (
	errCancelRequest = errors.New("cancel request")
	errClientGone    = errors.New("client closed")
	errSessionEnded  = errors.New("session ended")
)

// errStopped ends the client goroutine when the session stopped while a
// statement was on hold.
var errStopped = errors.New("session stopped during a hold")

// holdSlot is where a session's statement on hold can be cancelled by a
// CancelRequest, which arrives on another connection.
type holdSlot struct {
	mu     sync.Mutex
	cancel context.CancelCauseFunc
}

func (h *holdSlot) set(c context.CancelCauseFunc) {
	h.mu.Lock()
	h.cancel = c
	h.mu.Unlock()
}

// cancelHold ends the statement on hold, if there is one, and reports
// whether there was.
func (h *holdSlot) cancelHold() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel == nil {
		return false
	}
	h.cancel(errCancelRequest)
	h.cancel = nil
	return true
}

// review holds a statement that a review rule matched until approvers
// decide, the rule's timeout passes or the client gives up. What precedes
// it is forwarded first; what follows waits behind it. Approved, it is
// recorded and forwarded (forward true); otherwise the server is made to
// raise 42501 (denied) or 57014 (timed out, cancelled).
func (r *relay) review(kind expectKind, info sql.Statement, v verdict, protocol string, detail map[string]string) (bool, error) {
	if r.s.opts.Approvals == nil || v.Approvers == nil {
		v.Action, v.Reason = policy.ActionDeny, "statements on review cannot be held: no approvals registry"
		return false, r.refuse(kind, info, v, protocol, detail, denied(v))
	}
	if err := r.commit(); err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancelCause(r.stopCtx)
	defer cancel(nil)
	if r.holds != nil {
		r.holds.set(cancel)
		defer r.holds.set(nil)
	}
	stopWatch := r.watchClient(cancel)
	h := policy.Hold{Session: r.sess.Base.Session, Target: r.sess.Target.Name, Statement: info.Text, Rule: v.Rule,
		Requester: r.person(), Approvers: *v.Approvers}
	var held policy.Hold
	verdictV, err := r.s.opts.Approvals.Request(ctx, h, func(h policy.Hold) error {
		held = h
		return r.requested(h, info, v)
	})
	stopWatch()
	if err != nil {
		if errors.Is(err, ErrAudit) {
			return false, err
		}
		// No hold was made (too many on hold): refused like a denial.
		v.Action, v.Reason = policy.ActionDeny, "statement not held: "+err.Error()
		return false, r.refuse(kind, info, v, protocol, detail, denied(v))
	}
	cause := context.Cause(ctx)
	if err := r.decided(held, verdictV, v, cause); err != nil {
		return false, err
	}
	detail[audit.DetailApproval] = held.ID
	switch {
	case verdictV.Approved:
		v.Action = policy.ActionAllow
		v.Reason = verdictV.Reason
		e := r.newExec(protocol)
		r.appendStatement(e, info, v, protocol, detail)
		r.mu.Lock()
		e.sqlOps = r.sqlp.sent(info)
		r.st.push(&expect{kind: kind, exec: e})
		r.mu.Unlock()
		return true, nil
	case verdictV.TimedOut:
		v.Action, v.Reason = policy.ActionDeny, "approval timed out"
		return false, r.refuse(kind, info, v, protocol, detail, refusal{code: codeQueryCanceled,
			message: fmt.Sprintf("canceling statement: approval %s timed out (rule %q)", held.ID, v.Rule)})
	case verdictV.Cancelled:
		if !errors.Is(cause, errCancelRequest) {
			// The client or the session is gone: nobody to answer.
			return false, errStopped
		}
		v.Action, v.Reason = policy.ActionDeny, "cancelled while held for approval"
		return false, r.refuse(kind, info, v, protocol, detail, refusal{code: codeQueryCanceled,
			message: fmt.Sprintf("canceling statement due to user request (held for approval %s)", held.ID)})
	}
	by := "an approver"
	if len(verdictV.By) > 0 {
		by = "approver " + verdictV.By[0].Label()
	}
	v.Action, v.Reason = policy.ActionDeny, "denied by "+by
	if verdictV.Reason != "" {
		v.Reason += ": " + verdictV.Reason
	}
	return false, r.refuse(kind, info, v, protocol, detail, refusal{code: codeInsufficientPrivilege,
		message: fmt.Sprintf("tollgate: statement denied by %s (approval %s, rule %q)%s", by, held.ID, v.Rule, reasonSuffix(verdictV.Reason))})
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

// requested records the approval request durably and tells the client
// which approval its statement waits for.
func (r *relay) requested(h policy.Hold, info sql.Statement, v verdict) error {
	rec := r.sess.Base
	rec.Kind = audit.KindApprovalRequest
	rec.Time = h.Created
	rec.Statement = statementRecord(info)
	rec.Decision = &audit.Decision{Action: string(policy.ActionReview), Rule: v.Rule, Policy: r.hashOf(v), Reason: v.Reason}
	rec.Detail = map[string]string{audit.DetailApproval: h.ID, audit.DetailDeadline: h.Deadline.Format(time.RFC3339),
		audit.DetailN: strconv.FormatInt(r.n+1, 10)}
	if len(h.Approvers.Groups) > 0 {
		rec.Detail[audit.DetailApproverGroups] = strings.Join(h.Approvers.Groups, ",")
	}
	if len(h.Approvers.Identities) > 0 {
		rec.Detail[audit.DetailApproverIdentities] = strings.Join(h.Approvers.Identities, ",")
	}
	if h.Approvers.Min > 1 {
		rec.Detail[audit.DetailMin] = strconv.Itoa(h.Approvers.Min)
	}
	if err := r.s.opts.Recorder.Record(r.ctx, &rec); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	msg := fmt.Sprintf("tollgate: statement held for approval %s (rule %q, until %s); an approver runs: tollgate approve %s",
		h.ID, v.Rule, h.Deadline.Format(time.RFC3339), h.ID)
	if err := r.notice(msg); err != nil {
		// The client is gone; the watcher sees it and ends the hold.
		r.s.log.Debug("approval notice not delivered", "session", r.sess.Base.Session, "error", err)
	}
	return nil
}

// decided records the final decision on a hold: durably when the
// statement is forwarded next.
func (r *relay) decided(h policy.Hold, vd policy.Verdict, v verdict, cause error) error {
	rec := audit.Record{Kind: audit.KindApprovalDecision, Session: r.sess.Base.Session, Target: r.sess.Base.Target,
		Dst: r.sess.Base.Dst, Time: time.Now().UTC()}
	d := &audit.Decision{Action: string(policy.ActionDeny), Rule: v.Rule, Policy: r.hashOf(v), Reason: vd.Reason}
	rec.Detail = map[string]string{audit.DetailApproval: h.ID}
	switch {
	case vd.Approved:
		d.Action = string(policy.ActionAllow)
	case vd.TimedOut:
		rec.Detail[audit.DetailTimedOut] = "true"
	case vd.Cancelled:
		why := "cancelled by the client"
		switch {
		case errors.Is(cause, errCancelRequest):
			why = "cancel request"
		case errors.Is(cause, errClientGone):
			why = "client closed"
		case errors.Is(cause, errSessionEnded):
			why = "session ended"
		}
		rec.Detail[audit.DetailCancelled] = why
	}
	if len(vd.By) > 0 {
		// The approver who completed the decision; all of them in detail.
		rec.Identity = ApproverIdentity(vd.By[len(vd.By)-1])
		names := make([]string, len(vd.By))
		for i, p := range vd.By {
			names[i] = p.Label()
		}
		rec.Detail[audit.DetailApprovers] = strings.Join(names, ",")
	}
	rec.Decision = d
	if vd.Cancelled && !errors.Is(cause, errCancelRequest) {
		// The session is ending; nothing is forwarded after this.
		r.s.opts.Recorder.RecordEventually(&rec)
		return nil
	}
	if err := r.s.opts.Recorder.Record(r.ctx, &rec); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return nil
}

// person is the session's requester as approvals see it.
func (r *relay) person() policy.Person {
	p := policy.Person{Identities: r.idents}
	if id := r.sess.Base.Identity; id != nil {
		p.Name, p.Issuer, p.Subject, p.Groups = id.Name, id.Issuer, id.Subject, id.Groups
	}
	return p
}

// ApproverIdentity is the record's identity of a person who decided (an
// approver, a grant's creator): the configured identity and, when they
// signed in with OIDC, who they are.
func ApproverIdentity(p policy.Person) *audit.Identity {
	id := &audit.Identity{Name: p.Name, Issuer: p.Issuer, Subject: p.Subject, Groups: p.Groups}
	if p.Subject != "" {
		id.Method = MethodOIDC
	}
	return id
}

// notice sends the client a NoticeResponse between two server messages.
func (r *relay) notice(msg string) error {
	r.mu.Lock()
	enc := r.enc
	r.mu.Unlock()
	// The client reads it in its client_encoding, as the server's own.
	b, err := (&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: enc.encode(cleanMessage(msg))}).Encode(nil)
	if err != nil {
		return err
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	// A client that does not read must not keep the hold from starting
	// its clock; one that does not take a notice in this time is lost.
	r.client.SetWriteDeadline(time.Now().Add(stopWriteTimeout))
	defer func() {
		r.client.SetWriteDeadline(time.Time{})
		if r.stopping.Load() {
			r.client.SetWriteDeadline(time.Now().Add(stopWriteTimeout))
		}
	}()
	if _, err := r.cw.Write(b); err != nil {
		return err
	}
	return r.cw.Flush()
}

// watchClient watches the client while a statement is on hold, without
// consuming what it sends: the messages behind the held one stay in the
// read buffer (bounded by its size; beyond that the client is not read
// and TCP pushes back). A Terminate among them, or the connection's end,
// cancels the hold. The returned function stops the watch; the client
// goroutine owns the reader again once it returned.
func (r *relay) watchClient(cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	var stopping sync.Mutex // held by stop: the watcher's read error is expected
	stopped := false
	go func() {
		defer close(done)
		defer r.recoverTo(nil)
		for {
			n := r.cr.Buffered()
			buf, _ := r.cr.Peek(n)
			if terminates(buf) {
				cancel(errClientGone)
				return
			}
			if n >= r.cr.Size() {
				return // bounded: wait for the verdict without reading
			}
			if _, err := r.cr.Peek(n + 1); err != nil {
				stopping.Lock()
				expected := stopped
				stopping.Unlock()
				if expected {
					return
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					cancel(errSessionEnded)
				} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					cancel(errClientGone)
				} else {
					cancel(fmt.Errorf("%w: %w", errClientGone, err))
				}
				return
			}
		}
	}()
	return func() {
		stopping.Lock()
		stopped = true
		stopping.Unlock()
		r.client.SetReadDeadline(time.Unix(1, 0))
		<-done
		r.client.SetReadDeadline(time.Time{})
		// run may have stopped the session meanwhile: its deadline must
		// stand.
		if r.stopping.Load() {
			r.client.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// terminates reports whether buffered client bytes hold a Terminate at a
// message boundary.
func terminates(b []byte) bool {
	for len(b) >= 5 {
		if b[0] == 'X' {
			return true
		}
		n := int(int32(binary.BigEndian.Uint32(b[1:5])))
		if n < 4 || len(b) < 1+n {
			return false
		}
		b = b[1+n:]
	}
	return false
}

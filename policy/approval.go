// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Errors returned by approvals.
var (
	// ErrNoSuchApproval means the id names no statement on hold.
	ErrNoSuchApproval = errors.New("no such approval")
	// ErrNotApprover means the caller is not one of the rule's approvers.
	ErrNotApprover = errors.New("not an approver for this statement")
	// ErrSelfApproval means the caller asked for the statement themselves.
	ErrSelfApproval = errors.New("approving one's own statement is not allowed")
	// ErrAlreadyDecided means the caller already gave a decision on it.
	ErrAlreadyDecided = errors.New("already decided by this approver")
	// ErrTooManyHolds means the bound on statements on hold was reached.
	ErrTooManyHolds = errors.New("too many statements on hold")
)

// DefaultApprovalTimeout applies when a review rule sets none.
const DefaultApprovalTimeout = 15 * time.Minute

// Person is an authenticated party: the requester of a held statement or an
// approver, as their identity was proven (OIDC token or process identity).
type Person struct {
	// Name is the matched configured identity, if any.
	Name string `json:"name,omitempty"`
	// Issuer and Subject identify an OIDC principal.
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
	// Groups are the principal's groups from the token.
	Groups []string `json:"groups,omitempty"`
	// Identities are all configured identities the principal matched.
	Identities []string `json:"identities,omitempty"`
}

// Label names the person for people: the configured identity and, for an
// OIDC principal, the token's subject ("dba (alice@example.com)"), since
// several people may match one configured identity; the subject alone
// when no identity matched; "unknown" for nobody. audit.Identity.Label
// writes the same.
func (p Person) Label() string {
	switch {
	case p.Name != "" && p.Subject != "" && p.Subject != p.Name:
		return p.Name + " (" + p.Subject + ")"
	case p.Name != "":
		return p.Name
	case p.Subject != "":
		return p.Subject
	}
	return "unknown"
}

// same reports whether two people are the same principal. Process-only
// identities (no subject) compare by name.
func (p Person) same(o Person) bool { return p.Same(o) }

// Same reports whether p and o are the same principal: the same issuer and
// subject when either has a subject, else the same non-empty name.
func (p Person) Same(o Person) bool {
	if p.Subject != "" || o.Subject != "" {
		return p.Subject == o.Subject && p.Issuer == o.Issuer
	}
	return p.Name != "" && p.Name == o.Name
}

// Hold is a statement waiting for approval.
type Hold struct {
	ID        string    `json:"id"`
	Session   string    `json:"session"`
	Target    string    `json:"target"`
	Statement string    `json:"statement"` // normalised text, no literals
	Rule      string    `json:"rule"`
	Requester Person    `json:"requester"`
	Created   time.Time `json:"created"`
	Deadline  time.Time `json:"deadline"`
	Approvers Approvers `json:"approvers"`
	// Approvals so far.
	Approvals []Person `json:"approvals,omitempty"`
}

// Verdict ends a hold.
type Verdict struct {
	Approved bool
	// By are the approvers who approved, or the one who denied.
	By     []Person
	Reason string
	// TimedOut or Cancelled say why a hold ended without a decision.
	TimedOut  bool
	Cancelled bool
}

type hold struct {
	Hold
	done  chan Verdict // receives the one verdict
	ended bool         // a verdict was given; later decisions are refused
	// open is set once onHeld returned: the request is recorded and the
	// client told. Until then the hold is neither listed nor decidable,
	// so no decision can precede its request in the log.
	open bool
}

// Approvals holds statements until enough approvers decide, a deadline
// passes or the requester gives up. It keeps no state across restarts: a
// held statement belongs to a live client connection.
type Approvals struct {
	mu    sync.Mutex
	holds map[string]*hold
	max   int
	now   func() time.Time
}

// NewApprovals returns an empty registry bounded to max simultaneous holds.
func NewApprovals(max int) *Approvals {
	return &Approvals{holds: map[string]*hold{}, max: max, now: time.Now}
}

// Request puts h on hold and waits for its verdict. It fills ID, Created and
// Deadline (from the rule's timeout); onHeld is called with the filled hold
// before waiting, so the caller can record the request and tell the client
// the id. Cancelling ctx (the client's CancelRequest or disconnect) ends the
// hold with Cancelled.
func (a *Approvals) Request(ctx context.Context, h Hold, onHeld func(Hold) error) (Verdict, error) {
	id, err := newApprovalID()
	if err != nil {
		return Verdict{}, err
	}
	h.ID = id
	h.Created = a.now().UTC()
	timeout := time.Duration(h.Approvers.Timeout)
	if timeout <= 0 {
		timeout = DefaultApprovalTimeout
	}
	h.Deadline = h.Created.Add(timeout)
	hd := &hold{Hold: h, done: make(chan Verdict, 1)}

	a.mu.Lock()
	if a.max > 0 && len(a.holds) >= a.max {
		a.mu.Unlock()
		return Verdict{}, ErrTooManyHolds
	}
	a.holds[id] = hd
	a.mu.Unlock()
	defer a.remove(id)

	if onHeld != nil {
		if err := onHeld(hd.Hold); err != nil {
			return Verdict{}, err
		}
	}
	a.mu.Lock()
	hd.open = true
	a.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-hd.done:
		return v, nil
	case <-timer.C:
		if v, ok := a.end(id, Verdict{TimedOut: true, Reason: "approval timed out"}); ok {
			return v, nil
		}
		return <-hd.done, nil
	case <-ctx.Done():
		if v, ok := a.end(id, Verdict{Cancelled: true, Reason: "cancelled by the client"}); ok {
			return v, nil
		}
		return <-hd.done, nil
	}
}

// end finishes a hold unless a verdict already did; it reports whether v
// was the verdict.
func (a *Approvals) end(id string, v Verdict) (Verdict, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	hd := a.holds[id]
	if hd == nil || hd.ended {
		return Verdict{}, false
	}
	hd.ended = true
	return v, true
}

func (a *Approvals) remove(id string) {
	a.mu.Lock()
	delete(a.holds, id)
	a.mu.Unlock()
}

// List returns the statements on hold, oldest first.
func (a *Approvals) List() []Hold {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Hold, 0, len(a.holds))
	for _, hd := range a.holds {
		if hd.open && !hd.ended {
			h := hd.Hold
			h.Approvals = slices.Clone(h.Approvals)
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Decide records an approver's decision. A denial by any eligible approver
// ends the hold; approvals end it once the rule's minimum is reached. It
// returns the verdict when this decision ended the hold.
func (a *Approvals) Decide(id string, by Person, approve bool, reason string) (*Verdict, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	hd := a.holds[id]
	if hd == nil || hd.ended || !hd.open {
		return nil, fmt.Errorf("decide %s: %w", id, ErrNoSuchApproval)
	}
	if !hd.Approvers.Includes(by) {
		return nil, fmt.Errorf("decide %s: %w", id, ErrNotApprover)
	}
	if by.same(hd.Requester) {
		return nil, fmt.Errorf("decide %s: %w", id, ErrSelfApproval)
	}
	for _, p := range hd.Approvals {
		if p.same(by) {
			return nil, fmt.Errorf("decide %s: %w", id, ErrAlreadyDecided)
		}
	}
	var v Verdict
	if !approve {
		v = Verdict{By: []Person{by}, Reason: reason}
	} else {
		hd.Approvals = append(hd.Approvals, by)
		min := hd.Approvers.Min
		if min <= 0 {
			min = 1
		}
		if len(hd.Approvals) < min {
			return nil, nil
		}
		v = Verdict{Approved: true, By: slices.Clone(hd.Approvals), Reason: reason}
	}
	hd.ended = true
	hd.done <- v
	return &v, nil
}

// Includes reports whether p is one of the approvers: by configured
// identity name or by OIDC group.
func (ap Approvers) Includes(p Person) bool {
	for _, n := range ap.Identities {
		if slices.Contains(p.Identities, n) || p.Name == n {
			return true
		}
	}
	for _, g := range ap.Groups {
		if slices.Contains(p.Groups, g) {
			return true
		}
	}
	return false
}

func newApprovalID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("approval id: %w", err)
	}
	return "ap-" + hex.EncodeToString(b[:]), nil
}

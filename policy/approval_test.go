// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"context"
	"errors"
	"testing"
	"time"
)

var (
	dev   = Person{Name: "ci-deploy", Issuer: "https://iss", Subject: "repo:org/app"}
	alice = Person{Issuer: "https://iss", Subject: "alice", Groups: []string{"dba"}, Identities: []string{"dba"}}
	bob   = Person{Issuer: "https://iss", Subject: "bob", Groups: []string{"dba"}}
	eve   = Person{Issuer: "https://iss", Subject: "eve", Groups: []string{"dev"}}
)

// requestAsync puts a hold and returns its id and a channel with the verdict.
func requestAsync(t *testing.T, a *Approvals, ctx context.Context, h Hold) (string, <-chan Verdict) {
	t.Helper()
	ids := make(chan string, 1)
	out := make(chan Verdict, 1)
	go func() {
		v, err := a.Request(ctx, h, func(h Hold) error { ids <- h.ID; return nil })
		if err != nil {
			t.Error(err)
		}
		out <- v
	}()
	id := <-ids
	// The hold opens once onHeld returned.
	for !listed(a, id) {
		time.Sleep(time.Millisecond)
	}
	return id, out
}

func listed(a *Approvals, id string) bool {
	for _, h := range a.List() {
		if h.ID == id {
			return true
		}
	}
	return false
}

// TestApprovalsOpenAfterOnHeld: while onHeld runs (the request is being
// recorded), the hold can be neither listed nor decided, so no decision is
// recorded before its request.
func TestApprovalsOpenAfterOnHeld(t *testing.T) {
	a := NewApprovals(10)
	ctx, cancel := context.WithCancel(context.Background())
	var during error
	var listedDuring bool
	v, err := a.Request(ctx, Hold{Requester: dev, Approvers: Approvers{Groups: []string{"dba"}}}, func(h Hold) error {
		listedDuring = listed(a, h.ID)
		_, during = a.Decide(h.ID, alice, true, "")
		cancel()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if listedDuring || !errors.Is(during, ErrNoSuchApproval) {
		t.Fatalf("during onHeld: listed %v, decide %v; want unlisted, ErrNoSuchApproval", listedDuring, during)
	}
	if !v.Cancelled {
		t.Fatalf("verdict %+v, want cancelled", v)
	}
}

func TestApprovalsTwoApprovers(t *testing.T) {
	a := NewApprovals(10)
	id, out := requestAsync(t, a, context.Background(), Hold{Requester: dev, Rule: "r",
		Approvers: Approvers{Groups: []string{"dba"}, Min: 2, Timeout: Duration(time.Minute)}})
	if l := a.List(); len(l) != 1 || l[0].ID != id || l[0].Deadline.Sub(l[0].Created) != time.Minute {
		t.Fatalf("list %+v", l)
	}
	if _, err := a.Decide(id, eve, true, ""); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("eve: %v", err)
	}
	if v, err := a.Decide(id, alice, true, "ok"); err != nil || v != nil {
		t.Fatalf("alice: %v %v", v, err)
	}
	if _, err := a.Decide(id, alice, true, "again"); !errors.Is(err, ErrAlreadyDecided) {
		t.Fatalf("alice twice: %v", err)
	}
	v, err := a.Decide(id, bob, true, "ok")
	if err != nil || v == nil || !v.Approved || len(v.By) != 2 {
		t.Fatalf("bob: %+v %v", v, err)
	}
	if got := <-out; !got.Approved {
		t.Fatalf("verdict %+v", got)
	}
	if len(a.List()) != 0 {
		t.Fatal("hold not removed")
	}
	if _, err := a.Decide(id, bob, false, ""); !errors.Is(err, ErrNoSuchApproval) {
		t.Fatalf("after end: %v", err)
	}
}

func TestApprovalsNoSelfApproval(t *testing.T) {
	a := NewApprovals(10)
	self := Person{Issuer: "https://iss", Subject: "alice", Groups: []string{"dba"}}
	id, out := requestAsync(t, a, context.Background(), Hold{Requester: self, Approvers: Approvers{Groups: []string{"dba"}}})
	if _, err := a.Decide(id, alice, true, ""); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("self: %v", err)
	}
	if v, err := a.Decide(id, bob, false, "not now"); err != nil || v.Approved || v.Reason != "not now" {
		t.Fatalf("deny: %+v %v", v, err)
	}
	if got := <-out; got.Approved || got.By[0].Subject != "bob" {
		t.Fatalf("verdict %+v", got)
	}
}

func TestApprovalsTimeoutAndCancel(t *testing.T) {
	a := NewApprovals(1)
	_, out := requestAsync(t, a, context.Background(), Hold{Requester: dev, Approvers: Approvers{Groups: []string{"dba"}, Timeout: Duration(20 * time.Millisecond)}})
	if v := <-out; !v.TimedOut || v.Approved {
		t.Fatalf("timeout verdict %+v", v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	id, out := requestAsync(t, a, ctx, Hold{Requester: dev, Approvers: Approvers{Groups: []string{"dba"}}})
	if _, err := a.Request(context.Background(), Hold{}, nil); !errors.Is(err, ErrTooManyHolds) {
		t.Fatalf("bound: %v", err)
	}
	cancel()
	if v := <-out; !v.Cancelled {
		t.Fatalf("cancel verdict %+v", v)
	}
	if _, err := a.Decide(id, alice, true, ""); !errors.Is(err, ErrNoSuchApproval) {
		t.Fatalf("after cancel: %v", err)
	}
}

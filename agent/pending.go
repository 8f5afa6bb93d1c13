// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// maxPending bounds the records kept in memory while the log is unwritable.
// New sessions are refused in that state, so only the ends of sessions that
// were already running accumulate here.
const maxPending = 100000

// recordEventually appends a record that describes something that already
// happened (a session end): if the log cannot take it now, it is kept and
// retried in order until the log recovers, so it is not lost. Its time is
// fixed now, when the event happened.
func (a *Agent) recordEventually(r *audit.Record) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	a.pendingMu.Lock()
	queued := len(a.pending) > 0
	if queued {
		a.pending = a.addPending(a.pending, r)
	}
	a.pendingMu.Unlock()
	if queued {
		// Keep order: earlier pending records go first.
		return
	}
	if err := a.record(r); err != nil {
		a.pendingMu.Lock()
		a.pending = a.addPending(a.pending, r)
		a.pendingMu.Unlock()
		a.log.Warn("audit log unwritable, keeping record to retry", "kind", string(r.Kind), "session", r.Session, "error", err)
	}
}

// recordAllEventually is recordEventually for a burst of records: they are
// queued together (one commit, usually), and each that the log could not
// take is kept and retried like recordEventually's. A record that can never
// be encoded goes to the operational log instead.
func (a *Agent) recordAllEventually(rs []*audit.Record) {
	now := time.Now().UTC()
	for _, r := range rs {
		if r.Time.IsZero() {
			r.Time = now
		}
	}
	a.pendingMu.Lock()
	queued := len(a.pending) > 0
	if queued {
		for _, r := range rs {
			a.pending = a.addPending(a.pending, r)
		}
	}
	a.pendingMu.Unlock()
	if queued {
		return
	}
	errs := a.alog.AppendEach(rs)
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, audit.ErrInvalidRecord):
			b, _ := json.Marshal(rs[i])
			a.log.Error("audit record dropped: it cannot be encoded", "error", err, "record", string(b))
		default:
			a.pendingMu.Lock()
			a.pending = a.addPending(a.pending, rs[i])
			a.pendingMu.Unlock()
			a.log.Warn("audit log unwritable, keeping record to retry", "kind", string(rs[i].Kind), "session", rs[i].Session, "error", err)
		}
	}
}

func (a *Agent) addPending(p []*audit.Record, r *audit.Record) []*audit.Record {
	if len(p) >= maxPending {
		// Last resort: the operational log keeps the record.
		b, _ := json.Marshal(r)
		a.log.Error("audit record dropped: too many pending records", "record", string(b))
		return p
	}
	return append(p, r)
}

// flushPending appends pending records in order, stopping at the first
// failure. It reports whether nothing is pending any more.
func (a *Agent) flushPending() bool {
	for {
		a.pendingMu.Lock()
		if len(a.pending) == 0 {
			a.pendingMu.Unlock()
			return true
		}
		r := a.pending[0]
		a.pendingMu.Unlock()
		if err := a.record(r); err != nil {
			return false
		}
		a.pendingMu.Lock()
		a.pending = a.pending[1:]
		a.pendingMu.Unlock()
	}
}

// pendingLoop retries pending records until ctx ends.
func (a *Agent) pendingLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.flushPending()
		}
	}
}

// dropPending logs what could not be written before shutdown.
func (a *Agent) dropPending() {
	if a.flushPending() {
		return
	}
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	for _, r := range a.pending {
		b, _ := json.Marshal(r)
		a.log.Error("audit record not written before shutdown", "record", string(b))
	}
	a.pending = nil
}

// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"fmt"
	"time"
)

// Filter selects records for Select.
type Filter struct {
	// Session selects the records of one session ("" for all).
	Session string
	// Since and Until select records with Since <= time < Until (zero:
	// unbounded).
	Since, Until time.Time
}

// match reports whether a record head passes the filter.
func (f Filter) match(h recordHead) bool {
	if f.Session != "" && string(h.session) != f.Session {
		return false
	}
	if !f.Since.IsZero() && h.time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !h.time.Before(f.Until) {
		return false
	}
	return true
}

// Select calls fn with every durable record that f selects, in seq order,
// with its exact stored bytes. It reads in chunks of short read
// transactions, so it can walk a large log while the writer appends; it
// stops at the size the log had when it was called.
//
// When records were pruned (Log.Prune), Select fails with an error wrapping
// ErrPruned if the filter could select any of them: no session and no
// Since after the newest pruned record's time, or a session whose first
// record left is not its session.start, or a session not found in the
// records left. It never returns part of a selection as if it were the
// whole.
func (l *Log) Select(ctx context.Context, f Filter, fn func(Entry) error) error {
	p := l.Pruned()
	if err := p.covers(f.Session, f.Since); err != nil {
		return err
	}
	matched := false
	size := l.Size()
	err := l.eachRecord(ctx, p.Below, size, func(seq uint64, b []byte) error {
		h, err := headOf(b)
		if err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if !f.match(h) {
			return nil
		}
		if !matched && f.Since.IsZero() { // with Since, covers decided
			if err := p.sessionBegins(f.Session, h); err != nil {
				return err
			}
		}
		matched = true
		return fn(Entry{Seq: seq, Bytes: b})
	})
	if err == nil && !matched && f.Session != "" && f.Since.IsZero() && p.Below > 0 {
		// Not in what is left: it may have been pruned whole.
		return fmt.Errorf("session %s is not in records [%d, %d) left on this host: %w", f.Session, p.Below, size, p.Err())
	}
	return err
}

// covers returns an error wrapping ErrPruned if a selection could include
// pruned records: one with a since at or before the newest pruned record's
// time, or one with neither a since nor a session. A session without a
// since is left to sessionBegins, which checks its first record.
func (p PruneState) covers(session string, since time.Time) error {
	switch {
	case p.Below == 0 || since.After(p.NewestTime):
		return nil
	case !since.IsZero():
		return fmt.Errorf("selection since %s: %w", since.UTC().Format(time.RFC3339), p.Err())
	case session == "":
		return fmt.Errorf("selection from the first record: %w", p.Err())
	}
	return nil
}

// sessionBegins returns an error wrapping ErrPruned if records were pruned
// and the first record left of session is not its start: the rest of it
// was pruned.
func (p PruneState) sessionBegins(session string, first recordHead) error {
	if p.Below == 0 || session == "" || Kind(first.kind) == KindSessionStart {
		return nil
	}
	return fmt.Errorf("session %s began before record %d: %w", session, first.seq, p.Err())
}

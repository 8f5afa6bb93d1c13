// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"fmt"
	"strings"
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
	err := l.EachRecord(ctx, p.Below, size, func(seq uint64, b []byte) error {
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

// EachRecord calls fn with every record in [begin, end), in seq order, with
// its exact stored bytes, read in chunks of short read transactions; it
// fails (ErrCorrupt) if any is missing, and with ErrPruned below the
// pruned size. It is the evidence exporter's read of a Log (a Log is an
// evidence.RecordSource), which needs the records by seq, unfiltered.
func (l *Log) EachRecord(ctx context.Context, begin, end uint64, fn func(seq uint64, b []byte) error) error {
	for next := begin; next < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := l.Read(next, int(min(end-next, 4096)))
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return fmt.Errorf("records end at %d, want %d: %w", next, end, ErrCorrupt)
		}
		for _, en := range entries {
			if en.Seq != next {
				return fmt.Errorf("record %d where %d belongs: %w", en.Seq, next, ErrCorrupt)
			}
			if err := fn(en.Seq, en.Bytes); err != nil {
				return err
			}
			next++
		}
	}
	return nil
}

// SelectRange finds the contiguous seq range [begin, end) within the first
// n records (a signed tree size) that f selects: from the first record it
// selects to the last, every record in between included whatever its
// session or time, so that an evidence bundle of the range can prove none
// of the selected records is missing. A zero Filter selects every record
// left, [Pruned().Below, n). It fails with an error wrapping ErrNoRecords
// if f selects nothing, and ErrPruned if f could select pruned records (as
// Select does). It is exported for audit/evidence's exporter, which needs
// the log's prune state to choose the range.
func (l *Log) SelectRange(ctx context.Context, n uint64, f Filter) (begin, end uint64, err error) {
	if n == 0 {
		return 0, 0, ErrNoRecords
	}
	p := l.Pruned()
	if p.Below >= n {
		return 0, 0, fmt.Errorf("the %d signed records: %w", n, p.Err())
	}
	if f.Session == "" && f.Since.IsZero() && f.Until.IsZero() {
		// The whole log is what is left of it: the range proof's left
		// side proves the pruned records' place in the tree.
		return p.Below, n, nil
	}
	if err := p.covers(f.Session, f.Since); err != nil {
		return 0, 0, err
	}
	found := false
	begin, end = n, 0
	err = l.EachRecord(ctx, p.Below, n, func(seq uint64, b []byte) error {
		h, err := headOf(b)
		if err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if f.match(h) {
			if !found && f.Since.IsZero() {
				if err := p.sessionBegins(f.Session, h); err != nil {
					return err
				}
			}
			found = true
			begin, end = min(begin, seq), max(end, seq+1)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if !found {
		if f.Session != "" && p.Below > 0 {
			return 0, 0, fmt.Errorf("session %q is not in the signed records [%d, %d) left on this host (it may be older: %w): %w",
				f.Session, p.Below, n, p.Err(), ErrNoRecords)
		}
		if f.Session != "" {
			return 0, 0, fmt.Errorf("session %q is not in the %d signed records: %w", f.Session, n, ErrNoRecords)
		}
		return 0, 0, fmt.Errorf("between %v and %v: %w", f.Since, f.Until, ErrNoRecords)
	}
	return begin, end, nil
}

// ParseTime parses a --since/--until value: RFC 3339 (with or without
// fractional seconds), a date "2006-01-02" (midnight UTC), or a duration
// before now ("24h", "90m").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-26T14:00:00Z), a date (2026-11-26) or a duration ago (24h)", s)
}

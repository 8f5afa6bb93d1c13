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
func (l *Log) Select(ctx context.Context, f Filter, fn func(Entry) error) error {
	return l.eachRecord(ctx, 0, l.Size(), func(seq uint64, b []byte) error {
		h, err := headOf(b)
		if err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if !f.match(h) {
			return nil
		}
		return fn(Entry{Seq: seq, Bytes: b})
	})
}

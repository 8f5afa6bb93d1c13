// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// MaxPending bounds the records a Recorder keeps in memory while its log is
// unwritable. The daemon refuses new sessions in that state, so only the
// ends and results of sessions already running accumulate.
const MaxPending = 100000

// pendingRetry is how often Run retries pending records.
const pendingRetry = 250 * time.Millisecond

// Recorder is the one way protocol handlers write to a Log. Record and
// RecordAll return once their records are durable: a handler forwards
// nothing that a record must precede until they returned nil.
// RecordEventually and RecordAllEventually record something that already
// happened (a result, a session end): what the log cannot take now is kept
// in memory, in order, and appended by Run once the log recovers, so an
// outage of the log loses nothing of the sessions already running. A
// Recorder is safe for concurrent use.
type Recorder struct {
	log    *Log
	logger *slog.Logger

	mu      sync.Mutex
	pending []*Record
}

// NewRecorder returns a Recorder appending to l; logger gets what cannot be
// written (and nil discards it).
func NewRecorder(l *Log, logger *slog.Logger) *Recorder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Recorder{log: l, logger: logger}
}

// Record appends r and returns once it is durable (Log.Append).
func (c *Recorder) Record(ctx context.Context, r *Record) error {
	_, err := c.log.Append(ctx, r)
	return err
}

// RecordAll appends rs in their order and returns once all are durable
// (Log.AppendAll); on error none of them was acknowledged.
func (c *Recorder) RecordAll(ctx context.Context, rs []*Record) error {
	return c.log.AppendAll(ctx, rs)
}

// RecordEventually appends r, which describes something that already
// happened; its time is fixed now if unset. If the log cannot take it, or
// earlier records are still pending, it is kept and retried in order.
func (c *Recorder) RecordEventually(r *Record) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	c.mu.Lock()
	queued := len(c.pending) > 0
	if queued {
		c.addPendingLocked(r)
	}
	c.mu.Unlock()
	if queued {
		return // earlier pending records go first
	}
	if _, err := c.log.Append(context.Background(), r); err != nil {
		c.keep(r, err)
	}
}

// RecordAllEventually is RecordEventually for a burst of records: they are
// queued together (one commit, usually), and each that the log could not
// take is kept and retried. A record that can never be encoded goes to the
// operational log instead.
func (c *Recorder) RecordAllEventually(rs []*Record) {
	now := time.Now().UTC()
	for _, r := range rs {
		if r.Time.IsZero() {
			r.Time = now
		}
	}
	c.mu.Lock()
	queued := len(c.pending) > 0
	if queued {
		for _, r := range rs {
			c.addPendingLocked(r)
		}
	}
	c.mu.Unlock()
	if queued {
		return
	}
	for i, err := range c.log.AppendEach(rs) {
		switch {
		case err == nil:
		case errors.Is(err, ErrInvalidRecord):
			b, _ := json.Marshal(rs[i])
			c.logger.Error("audit record dropped: it cannot be encoded", "error", err, "record", string(b))
		default:
			c.keep(rs[i], err)
		}
	}
}

// keep queues r after the log refused it.
func (c *Recorder) keep(r *Record, err error) {
	c.mu.Lock()
	c.addPendingLocked(r)
	c.mu.Unlock()
	c.logger.Warn("audit log unwritable, keeping record to retry", "kind", string(r.Kind), "session", r.Session, "error", err)
}

func (c *Recorder) addPendingLocked(r *Record) {
	if len(c.pending) >= MaxPending {
		// Last resort: the operational log keeps the record.
		b, _ := json.Marshal(r)
		c.logger.Error("audit record dropped: too many pending records", "record", string(b))
		return
	}
	c.pending = append(c.pending, r)
}

// Pending returns how many records wait for the log.
func (c *Recorder) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Flush appends pending records in order, stopping at the first failure.
// It reports whether nothing is pending any more.
func (c *Recorder) Flush() bool {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.mu.Unlock()
			return true
		}
		r := c.pending[0]
		c.mu.Unlock()
		if _, err := c.log.Append(context.Background(), r); err != nil {
			return false
		}
		c.mu.Lock()
		c.pending = c.pending[1:]
		c.mu.Unlock()
	}
}

// Run retries pending records until ctx ends.
func (c *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(pendingRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Flush()
		}
	}
}

// Drop flushes what it can before shutdown and writes the rest to the
// operational log, so that nothing vanishes without a trace.
func (c *Recorder) Drop() {
	if c.Flush() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.pending {
		b, _ := json.Marshal(r)
		c.logger.Error("audit record not written before shutdown", "record", string(b))
	}
	c.pending = nil
}

// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"time"
)

// Result records: gathered per session and appended together, off the
// path of the statements the client waits for.

// writeResults writes the result records that no statement record took
// along: after resultLinger, at once when many are pending, and all that
// are left when the session ends.
func (r *relay) writeResults() {
	for {
		select {
		case <-r.resKick:
			select {
			case <-time.After(resultLinger):
			case <-r.resUrgent:
			case <-r.resultsEnd:
				r.flushResults()
				return
			}
		case <-r.resUrgent:
		case <-r.resultsEnd:
			r.flushResults()
			return
		}
		r.flushResults()
	}
}

// flushResults writes the pending result records, together so that the
// log commits them together.
func (r *relay) flushResults() {
	r.resMu.Lock()
	batch := r.pending
	r.pending = nil
	r.resMu.Unlock()
	if len(batch) == 0 {
		return
	}
	r.s.opts.Recorder.RecordAllEventually(batch)
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// maxPruneInterval is the longest time between two retention passes. A
// pass reads only the records it removes, so running it often costs little;
// hourly keeps the local log within an hour of audit.retention.
const maxPruneInterval = time.Hour

// minPruneInterval is the shortest, for tiny retentions (tests, labs).
const minPruneInterval = time.Second

// pruneInterval is how often the retention pass runs for a retention:
// a tenth of it, within [minPruneInterval, maxPruneInterval].
func pruneInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, minPruneInterval), maxPruneInterval)
}

// RetentionEnforced reports whether audit.retention removes anything with
// cfg: only when the log is shipped, since a record is removed only below
// the size the collector cosigned. Without a collector nothing has vouched
// for a record, so it stays, whatever its age.
func RetentionEnforced(cfg policy.Config) bool { return cfg.Audit.Ship.URL != "" }

// RetentionText says in one line what audit.retention does with cfg, for
// the startup log, status and doctor.
func RetentionText(cfg policy.Config) string {
	if !RetentionEnforced(cfg) {
		return fmt.Sprintf("%s, not enforced: audit.ship is not set, and records are pruned only after a collector cosigned them, so the log keeps everything", cfg.Audit.Retention)
	}
	return fmt.Sprintf("%s: records the collector cosigned are pruned once older than that", cfg.Audit.Retention)
}

// retentionLoop enforces audit.retention: every pruneInterval it removes
// the records that the collector cosigned and that are older than the
// retention in force (re-read each pass, so a reload applies). The first
// pass runs at once, so a daemon that was down catches up.
func (a *Agent) retentionLoop(ctx context.Context) {
	a.mu.Lock()
	every := pruneInterval(time.Duration(a.cfg.Audit.Retention))
	a.mu.Unlock()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		a.pruneOnce(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pruneOnce runs one retention pass: records below the shipper's cosigned
// size and older than now minus the retention are removed. Errors are
// logged; the next pass tries again (a record that is not removed is only
// kept longer).
func (a *Agent) pruneOnce(ctx context.Context, now time.Time) {
	if a.shipper == nil {
		return
	}
	a.mu.Lock()
	retention := time.Duration(a.cfg.Audit.Retention)
	a.mu.Unlock()
	if retention <= 0 {
		return
	}
	note := a.shipper.LastCosigned()
	if note == nil {
		return // nothing cosigned yet: nothing may go
	}
	// Not just the size the shipper says: the note must be this log's,
	// signed by its key, over the tree the log has at that size.
	cosigned, err := a.alog.CosignedSize([][]byte{note})
	if err != nil {
		a.log.Error("audit retention: the newest cosigned checkpoint does not match the log; nothing is pruned", "error", err)
		return
	}
	before := now.Add(-retention)
	n, err := a.alog.Prune(ctx, audit.PruneOptions{Below: cosigned, Before: before})
	if err != nil && ctx.Err() == nil {
		a.log.Error("audit retention: prune failed", "error", err, "removed", n)
		return
	}
	if n > 0 {
		p := a.alog.Pruned()
		a.log.Info("audit retention: records removed from this host", "removed", n,
			"pruned_below", p.Below, "newest_pruned", p.NewestTime, "cosigned", cosigned, "retention", retention.String())
	}
}

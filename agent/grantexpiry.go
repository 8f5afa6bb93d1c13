// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/agent/postgres"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/internal/atomicfile"
	"github.com/tollgate-dev/tollgate/policy"
)

// GrantsExpiredFile, inside state_dir, lists the grants whose expiry is
// recorded in the audit log.
const GrantsExpiredFile = "grants-expired.json"

// expiryMarks remembers which grant expiries are recorded. The audit log
// is the truth; the file only saves scanning the log. A crash between
// recording an expiry and marking it is resolved at start by looking in
// the log, so each expiry is recorded exactly once.
type expiryMarks struct {
	mu   sync.Mutex
	path string
	done map[string]time.Time // grant id → when its expiry was recorded
}

func openExpiryMarks(path string) (*expiryMarks, error) {
	m := &expiryMarks{path: path, done: map[string]time.Time{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &m.done); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return m, nil
}

func (m *expiryMarks) has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.done[id]
	return ok
}

// mark persists that the expiries of ids are recorded, forgetting grants
// that are no longer in the grants file.
func (m *expiryMarks) mark(ids []string, now time.Time, known func(string) bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]time.Time, len(m.done)+len(ids))
	for id, t := range m.done {
		if known(id) {
			next[id] = t
		}
	}
	for _, id := range ids {
		next[id] = now.UTC()
	}
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("save expiry marks: %w", err)
	}
	if err := atomicfile.WriteFile(m.path, b, 0o600); err != nil {
		return fmt.Errorf("save expiry marks: %w", err)
	}
	m.done = next
	return nil
}

// grantExpiryInterval is how often the daemon looks for grants that
// expired. Enforcement does not wait for it: every statement checks the
// grant's window itself; this only writes the expiry's record.
const grantExpiryInterval = time.Second

// grantExpiryLoop records each grant's expiry once, when its window has
// passed, including grants that expired while the daemon was down.
func (a *Agent) grantExpiryLoop(ctx context.Context, marks *expiryMarks) {
	if err := a.reconcileExpiries(ctx, marks); err != nil {
		a.log.Error("checking recorded grant expiries", "error", err)
	}
	tick := time.NewTicker(grantExpiryInterval)
	defer tick.Stop()
	for {
		if err := a.recordExpiries(marks, time.Now()); err != nil {
			a.log.Error("recording grant expiries", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// expiredUnmarked returns the grants that expired (not revoked) by now and
// whose expiry is not marked as recorded.
func (a *Agent) expiredUnmarked(marks *expiryMarks, now time.Time) []policy.Grant {
	var out []policy.Grant
	for _, g := range a.grants.List() {
		if g.Revoked.IsZero() && !now.Before(g.Until) && !marks.has(g.ID) {
			out = append(out, g)
		}
	}
	return out
}

// reconcileExpiries marks the expiries that a crash left recorded in the
// log but unmarked, so they are not recorded twice. Only grants that
// expired before this daemon started can have been recorded by an earlier
// run, so only they are looked up, once, at start.
func (a *Agent) reconcileExpiries(ctx context.Context, marks *expiryMarks) error {
	cand := a.expiredUnmarked(marks, a.started)
	if len(cand) == 0 {
		return nil
	}
	want := map[string]bool{}
	since := cand[0].Until
	for _, g := range cand {
		want[g.ID] = true
		if g.Until.Before(since) {
			since = g.Until
		}
	}
	var found []string
	err := a.alog.Select(ctx, audit.Filter{Since: since}, func(e audit.Entry) error {
		r, err := e.Record()
		if err != nil {
			return err
		}
		if r.Kind == audit.KindGrant && r.Detail[audit.DetailEvent] == "expired" && want[r.Detail[audit.DetailGrant]] {
			found = append(found, r.Detail[audit.DetailGrant])
			delete(want, r.Detail[audit.DetailGrant])
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	return marks.mark(found, time.Now(), a.grantKnown)
}

// recordExpiries records the expiry of every grant whose window passed by
// now and marks it; a grant whose record fails is tried again next time.
func (a *Agent) recordExpiries(marks *expiryMarks, now time.Time) error {
	var done []string
	var errs []error
	for _, g := range a.expiredUnmarked(marks, now) {
		// Stamped when written (record times never go back along seq);
		// the end of the window is Detail[audit.DetailUntil].
		rec := grantRecord(g, "expired", postgres.ApproverIdentity(g.By), nil)
		if err := a.record(rec); err != nil {
			errs = append(errs, fmt.Errorf("grant %s: %w", g.ID, err))
			continue
		}
		a.log.Info("grant expired", "grant", g.ID, "identity", g.Identity, "target", g.Target)
		done = append(done, g.ID)
	}
	if len(done) > 0 {
		if err := marks.mark(done, now, a.grantKnown); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *Agent) grantKnown(id string) bool {
	for _, g := range a.grants.List() {
		if g.ID == id {
			return true
		}
	}
	return false
}

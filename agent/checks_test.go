// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
)

func TestCheckSpace(t *testing.T) {
	for _, c := range []struct {
		free    uint64
		journal bool
		ok      bool
	}{
		{free: 1 << 30, journal: false, ok: true},
		{free: minStateFree + audit.DefaultJournalSize, journal: false, ok: true},
		{free: minStateFree + audit.DefaultJournalSize - 1, journal: false, ok: false},
		{free: minStateFree, journal: true, ok: true},
		{free: minStateFree - 1, journal: true, ok: false},
		{free: 0, journal: true, ok: false},
	} {
		err := checkSpace(c.free, c.journal)
		if (err == nil) != c.ok {
			t.Errorf("checkSpace(%d, journal %v) = %v, want ok=%v", c.free, c.journal, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "MiB free") {
			t.Errorf("checkSpace error %q does not say how much is free", err)
		}
	}
	// A real directory: statfs works and reports something.
	if err := stateDirSpace(t.TempDir()); err != nil && !strings.Contains(err.Error(), "MiB free") {
		t.Errorf("stateDirSpace: %v", err)
	}
}

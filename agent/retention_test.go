// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestPruneInterval(t *testing.T) {
	for _, tc := range []struct{ retention, want time.Duration }{
		{time.Second, time.Second},
		{30 * time.Second, 3 * time.Second},
		{24 * time.Hour, time.Hour},
		{400 * 24 * time.Hour, time.Hour},
	} {
		if got := pruneInterval(tc.retention); got != tc.want {
			t.Errorf("pruneInterval(%v) = %v, want %v", tc.retention, got, tc.want)
		}
	}
}

// TestRetentionText: without shipping, retention is reported as not
// enforced, and nothing would be pruned.
func TestRetentionText(t *testing.T) {
	cfg := policy.Default()
	if RetentionEnforced(cfg) || !strings.Contains(RetentionText(cfg), "not enforced") {
		t.Errorf("without ship: enforced %v, %q", RetentionEnforced(cfg), RetentionText(cfg))
	}
	cfg.Audit.Ship.URL = "https://collector.example"
	if !RetentionEnforced(cfg) || !strings.Contains(RetentionText(cfg), "400d") {
		t.Errorf("with ship: enforced %v, %q", RetentionEnforced(cfg), RetentionText(cfg))
	}
}

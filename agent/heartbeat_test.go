// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

func TestHeartbeatRecord(t *testing.T) {
	cs, err := readClock()
	if err != nil {
		t.Fatalf("adjtimex: %v", err)
	}
	r := heartbeatRecord(cs, nil, "sha256:abc", "v1")
	r.V, r.Time = audit.SchemaVersion, time.Now()
	if _, err := audit.Encode(r); err != nil {
		t.Fatal(err)
	}
	if r.Kind != audit.KindHeartbeat || r.Detail[audit.DetailConfig] != "sha256:abc" {
		t.Fatalf("record %+v", r)
	}
	if s := r.Detail[audit.DetailClockSync]; s != "synchronised" && s != "unsynchronised" {
		t.Fatalf("clock_sync %q", s)
	}
	for _, k := range []string{audit.DetailClockMaxError, audit.DetailClockEstError, audit.DetailClockOffset} {
		if _, err := strconv.ParseInt(r.Detail[k], 10, 64); err != nil {
			t.Errorf("%s = %q: %v", k, r.Detail[k], err)
		}
	}
	r = heartbeatRecord(clockState{}, errors.New("no adjtimex"), "h", "v1")
	if r.Detail[audit.DetailClockSync] != "unknown" || r.Error == "" {
		t.Fatalf("record without clock state %+v", r)
	}
}

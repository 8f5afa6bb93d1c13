// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// TestEvidencePostgres exports and verifies the log after real PostgreSQL
// sessions through the proxy (statements, results, an error, extended
// protocol), and replays one: the verifier's semantics hold on what the
// PostgreSQL handler records.
func TestEvidencePostgres(t *testing.T) {
	s := newPGSetup(t, "process", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"-c", "CREATE TABLE ev (id int, v text)", "-c", "INSERT INTO ev VALUES (1, 'a'), (2, 'b')", "-c", "SELECT * FROM ev"},
		{"-c", "SELECT * FROM no_such_table"},
		{"-c", "BEGIN; UPDATE ev SET v = 'c' WHERE id = 1; COMMIT;"},
	} {
		if out, errOut, err := s.psql(t, ctx, true, "", args...); err != nil && !strings.Contains(errOut, "no_such_table") {
			t.Fatalf("psql %v: %v\n%s\n%s", args, err, out, errOut)
		}
	}
	waitFor(t, "three sessions ended", func() bool { return sessionCount(t, s.d) >= 3 })
	pub := filepath.Join(s.d.cfg.StateDir, audit.HostPubFile)
	out := mustVerifyCLI(t, exportCLI(t, s.d, "pg.tar"), pub)
	t.Logf("verify:\n%s", out)
	if !strings.Contains(out, "3 started, 3 ended") || !strings.Contains(out, "statement ") || !strings.Contains(out, "result ") {
		t.Errorf("verify report:\n%s", out)
	}
	starts, _ := sessionRecords(s.d.records())
	for id := range starts {
		out, err := runTollgate("audit", "replay", id, "--config", s.d.cfgPath, "--speed", "0")
		if err != nil || !strings.Contains(out, "statement") || !strings.Contains(out, "session.end") {
			t.Fatalf("replay %s: %v\n%s", id, err, out)
		}
	}
}

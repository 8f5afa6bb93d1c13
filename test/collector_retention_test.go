// SPDX-License-Identifier: Apache-2.0

package test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/agent"
)

// waitPruned polls d's status until it pruned at least min records.
func waitPruned(t *testing.T, d *daemon, min uint64) agent.Status {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := d.status()
		if st.Log.Pruned.Below >= min {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing pruned: %+v %+v\n%s", st.Log.Pruned, st.Log.Shipping, d.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCollectorRetention: with audit.retention, a shipping host removes
// the records the collector cosigned once they are older than the
// retention, never one beyond the cosigned size; the collector still holds
// every record; the host's export of what is left verifies with the host
// key; an export or report that needs pruned records fails naming the
// range; a host that does not ship prunes nothing and says so.
func TestCollectorRetention(t *testing.T) {
	requireRoot(t)
	pg := startPostgres(t)
	c := newCollector(t, pg)
	d := startShippingDaemon(t, c, "retain", echoDaemonConfig(t), "  retention: 1s\n")
	hup(t, d, 20)
	first := shipped(t, c, d)
	if !strings.Contains(first.Log.Retention, "cosigned are pruned") {
		t.Errorf("status retention: %q", first.Log.Retention)
	}

	st := waitPruned(t, d, first.Log.Records/2)
	if st.Log.Pruned.Below > st.Log.Shipping.Cosigned {
		t.Fatalf("pruned below %d, beyond the cosigned size %d", st.Log.Pruned.Below, st.Log.Shipping.Cosigned)
	}
	t.Logf("pruned %+v of %d records; %s", st.Log.Pruned, st.Log.Records, st.Log.ShippingLag)

	// The collector holds everything; the host what is left, the same bytes.
	hup(t, d, 5)
	st = shipped(t, c, d)
	if n := len(storedRecords(t, c.conn(t), st.Log.ID)); uint64(n) != st.Log.Records {
		t.Errorf("collector holds %d records, the log has %d", n, st.Log.Records)
	}

	// The whole log exports as what is left, and verifies with the host key.
	dir := t.TempDir()
	bundle := filepath.Join(dir, "left.tar")
	out, err := exec.Command(tollgateBin, "audit", "export", "--config", d.cfgPath, "--out", bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	pub := filepath.Join(d.cfg.StateDir, "host.pub")
	if out, err := exec.Command(tollgateBin, "audit", "verify", bundle, "--key", pub).CombinedOutput(); err != nil {
		t.Fatalf("audit verify of the pruned log's export: %v\n%s", err, out)
	}

	// What needs pruned records fails, naming the range.
	since := st.Log.Pruned.NewestTime.Add(-time.Millisecond).Format(time.RFC3339Nano)
	out, err = exec.Command(tollgateBin, "audit", "export", "--config", d.cfgPath, "--out", filepath.Join(dir, "old.tar"),
		"--since", since).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "[0, ") || !strings.Contains(string(out), "pruned by retention") {
		t.Errorf("export since a pruned record: %v\n%s", err, out)
	}
	out, err = exec.Command(tollgateBin, "audit", "report", "--config", d.cfgPath, "--since", since).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pruned by retention") {
		t.Errorf("report since a pruned record: %v\n%s", err, out)
	}

	// Restarted, the log keeps its pruned state.
	d.stop()
	d.start()
	if p := d.status().Log.Pruned; p.Below < st.Log.Pruned.Below {
		t.Errorf("pruned after restart: %+v, before %+v", p, st.Log.Pruned)
	}

	// A host that does not ship keeps everything and says so.
	solo := startDaemon(t, echoDaemonConfig(t))
	if s := solo.status().Log.Retention; !strings.Contains(s, "not enforced") {
		t.Errorf("status of a host without shipping: retention %q", s)
	}
	text, _ := exec.Command(tollgateBin, "status", "--config", d.cfgPath).CombinedOutput()
	if !strings.Contains(string(text), "pruned") {
		t.Errorf("status text:\n%s", text)
	}
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
	"github.com/tollgate-dev/tollgate/audit/evidence"
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
// range; a host that does not ship prunes nothing and says so. A witnessed
// export verifies with the collector's key as a required witness.
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

	// An auditor keeps a checkpoint of the host's log now.
	trusted := filepath.Join(t.TempDir(), "trusted.note")
	if out, err := exec.Command(tollgateBin, "audit", "checkpoint", "--config", d.cfgPath, "--out", trusted).CombinedOutput(); err != nil {
		t.Fatalf("audit checkpoint: %v\n%s", err, out)
	}
	tb, err := os.ReadFile(trusted)
	if err != nil {
		t.Fatal(err)
	}
	tv, err := audit.ParseVerifierKey(first.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := audit.OpenCheckpoint(tb, tv)
	if err != nil {
		t.Fatal(err)
	}

	st := waitPruned(t, d, first.Log.Records/2)
	if st.Log.Pruned.Below > st.Log.Shipping.Cosigned {
		t.Fatalf("pruned below %d, beyond the cosigned size %d", st.Log.Pruned.Below, st.Log.Shipping.Cosigned)
	}
	t.Logf("pruned %+v of %d records; %s", st.Log.Pruned, st.Log.Records, st.Log.ShippingLag)

	// The collector holds everything; the host what is left, the same bytes.
	hup(t, d, 5)
	st = shipped(t, c, d)
	if n := len(storedRecords(t, c.conn(t), st.Log.ID)); uint64(n) < st.Log.Records {
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

	// A witnessed export ends at the newest checkpoint the collector
	// cosigned and verifies with the collector's key as a witness; the
	// bundle signed by the host alone does not.
	witnessed := filepath.Join(dir, "witnessed.tar")
	if out, err := exec.Command(tollgateBin, "audit", "export", "--config", d.cfgPath, "--witnessed", "--out", witnessed).CombinedOutput(); err != nil {
		t.Fatalf("audit export --witnessed: %v\n%s", err, out)
	}
	cpub := filepath.Join(c.dir, "collector.key.pub")
	out, err = exec.Command(tollgateBin, "audit", "verify", witnessed, "--key", pub, "--witness-key", cpub).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cosigned by") {
		t.Fatalf("audit verify --witness-key of a witnessed bundle: %v\n%s", err, out)
	}
	out, err = exec.Command(tollgateBin, "audit", "verify", bundle, "--key", pub, "--witness-key", cpub).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "no cosignature by witness") {
		t.Errorf("audit verify --witness-key of a bundle the collector did not cosign: %v\n%s", err, out)
	}

	// The collector exports the whole log, the records this host pruned
	// included, and a part of it; both verify offline with the host key
	// and the collector's key as witness.
	for _, args := range [][]string{nil, {"--from", "3", "--to", "10"}} {
		cb := filepath.Join(dir, fmt.Sprintf("collector-%d.tar", len(args)))
		cmd := append([]string{"collector", "export", "--config", c.cfgPath, "--host", "retain", "--out", cb}, args...)
		if out, err := exec.Command(tollgateBin, cmd...).CombinedOutput(); err != nil {
			t.Fatalf("collector export %v: %v\n%s", args, err, out)
		}
		out, err := exec.Command(tollgateBin, "audit", "verify", cb, "--key", pub, "--witness-key", cpub, "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("audit verify of the collector's export %v: %v\n%s", args, err, out)
		}
		var rep evidence.VerifyReport
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatal(err)
		}
		if want := [2]uint64{0, rep.TreeSize}; args != nil {
			want = [2]uint64{3, 10}
			if rep.Begin != want[0] || rep.End != want[1] {
				t.Errorf("collector export %v: records [%d, %d)", args, rep.Begin, rep.End)
			}
		} else if rep.Begin != 0 || rep.End != rep.TreeSize || rep.End <= st.Log.Pruned.Below {
			t.Errorf("collector export: records [%d, %d) of %d, host pruned below %d", rep.Begin, rep.End, rep.TreeSize, st.Log.Pruned.Below)
		}
	}

	// Records after the auditor's checkpoint, from the collector: the
	// bundle proves its tree consistent with that checkpoint when asked.
	after := filepath.Join(dir, "after.tar")
	from := fmt.Sprint(tcp.Size + 2)
	if out, err := exec.Command(tollgateBin, "collector", "export", "--config", c.cfgPath, "--host", "retain",
		"--from", from, "--out", after).CombinedOutput(); err != nil {
		t.Fatalf("collector export --from %s: %v\n%s", from, err, out)
	}
	out, err = exec.Command(tollgateBin, "audit", "verify", after, "--key", pub, "--trusted-checkpoint", trusted).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--prove-from") {
		t.Errorf("trusted checkpoint outside the collector's bundle without a proof: %v\n%s", err, out)
	}
	if out, err := exec.Command(tollgateBin, "collector", "export", "--config", c.cfgPath, "--host", "retain",
		"--from", from, "--prove-from", fmt.Sprint(tcp.Size), "--out", after).CombinedOutput(); err != nil {
		t.Fatalf("collector export --prove-from: %v\n%s", err, out)
	}
	out, err = exec.Command(tollgateBin, "audit", "verify", after, "--key", pub, "--trusted-checkpoint", trusted,
		"--witness-key", cpub).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "by proof") {
		t.Errorf("collector bundle with a consistency proof to the auditor's checkpoint: %v\n%s", err, out)
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

	// Restarted, the log keeps its pruned state, and says so in its
	// heartbeat (the one written at start), which reaches the collector.
	d.stop()
	d.start()
	if p := d.status().Log.Pruned; p.Below < st.Log.Pruned.Below {
		t.Errorf("pruned after restart: %+v, before %+v", p, st.Log.Pruned)
	}
	conn := c.conn(t)
	waitFor(t, "a heartbeat with pruned_below at the collector", func() bool {
		return count(t, conn, `SELECT count(*) FROM records WHERE origin = $1 AND kind = 'heartbeat'
			AND convert_from(data, 'UTF8') LIKE '%"pruned_below":"%'`, st.Log.ID) > 0
	})

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

// TestCollectorRetentionPartitions: with retention in collector.yaml, the
// day partitions of records older than it are dropped whole at start (and
// hourly), the leaf hash of every dropped record is kept, the tree the
// collector cosigned can still be rebuilt from them and the records left
// (so proofs over the dropped range still verify), younger records stay,
// and the host's log goes on being accepted.
func TestCollectorRetentionPartitions(t *testing.T) {
	pg := startPostgres(t)
	c := newCollectorWith(t, pg, "silence_after: 1h\nretention: 30d\n")
	h := newHostLog(t, "retain-pg", 0)
	old := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := range 60 { // 2025-01-01 12:00 to 2025-01-03 23:00: three days
		if _, err := h.log.Append(context.Background(), &audit.Record{Kind: audit.KindHeartbeat,
			Time: old.Add(time.Duration(i) * time.Hour), Detail: map[string]string{"n": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	h.add(t, 10)
	cred := h.enrolled(t, c)
	if code, b := post(t, c.url+collector.PathAddEntries, cred, h.body(t, 0, 70, h.key.Signer)); code != http.StatusOK {
		t.Fatalf("add-entries: %d %s", code, b)
	}
	conn := c.conn(t)
	if n := count(t, conn, "SELECT count(*) FROM records WHERE origin = $1", h.log.ID()); n != 70 {
		t.Fatalf("collector holds %d records before retention, want 70", n)
	}

	// The pass at start drops the three old days.
	c.stop()
	c.start()
	waitFor(t, "old partitions dropped", func() bool {
		return count(t, conn, "SELECT count(*) FROM dropped_partitions") == 3
	})
	if n := count(t, conn, "SELECT count(*) FROM pg_class WHERE relname IN ('records_20250101', 'records_20250102', 'records_20250103')"); n != 0 {
		t.Errorf("%d old partitions left", n)
	}
	if n := count(t, conn, "SELECT sum(records)::int FROM dropped_partitions"); n != 60 {
		t.Errorf("dropped_partitions counts %d records, want 60", n)
	}
	if n := count(t, conn, "SELECT count(*) FROM records WHERE origin = $1", h.log.ID()); n != 10 {
		t.Errorf("collector holds %d records after retention, want the 10 recent ones", n)
	}

	// Every leaf is still known: kept hashes for seq 0-59, records for
	// 60-69; they rebuild the root the host signed and the collector
	// cosigned.
	rows, err := conn.Query(context.Background(), `SELECT seq, hash FROM leaf_hashes WHERE origin = $1
		UNION ALL SELECT seq, sha256('\x00'::bytea || data) FROM records WHERE origin = $1 ORDER BY 1`, h.log.ID())
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	for rows.Next() {
		var seq int64
		var hash []byte
		if err := rows.Scan(&seq, &hash); err != nil {
			t.Fatal(err)
		}
		if seq != int64(len(leaves)) {
			t.Fatalf("leaf %d where %d belongs", seq, len(leaves))
		}
		es, err := h.log.Read(uint64(seq), 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(hash, audit.LeafHash(es[0].Bytes)) {
			t.Fatalf("leaf hash %d differs from the host's", seq)
		}
		leaves = append(leaves, hash)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var note []byte
	if err := conn.QueryRow(context.Background(), "SELECT checkpoint FROM log_state WHERE origin = $1", h.log.ID()).Scan(&note); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint(note, mustVerifier(t, h.key.VerifierKey))
	if err != nil {
		t.Fatal(err)
	}
	if root := rootOfHashes(t, leaves); cp.Size != 70 || !bytes.Equal(root, cp.Root) {
		t.Fatalf("tree rebuilt from kept leaf hashes: size %d, root %x, checkpoint root %x", cp.Size, root, cp.Root)
	}

	// The collector exports what it holds, and refuses dropped records,
	// naming them.
	hostPub := filepath.Join(t.TempDir(), "host.pub")
	if err := os.WriteFile(hostPub, []byte(h.key.VerifierKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := exec.Command(tollgateBin, "collector", "export", "--config", c.cfgPath, "--host", "retain-pg",
		"--out", filepath.Join(dir, "all.tar")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "records [0, 59]") || !strings.Contains(string(out), "retention") {
		t.Errorf("collector export over dropped days: %v\n%s", err, out)
	}
	recent := filepath.Join(dir, "recent.tar")
	if out, err := exec.Command(tollgateBin, "collector", "export", "--config", c.cfgPath, "--origin", h.log.ID(),
		"--from", "60", "--out", recent).CombinedOutput(); err != nil {
		t.Fatalf("collector export of the records left: %v\n%s", err, out)
	}
	if out, err := exec.Command(tollgateBin, "audit", "verify", recent, "--key", hostPub,
		"--witness-key", filepath.Join(c.dir, "collector.key.pub")).CombinedOutput(); err != nil {
		t.Fatalf("audit verify of records whose left proof comes from kept leaf hashes: %v\n%s", err, out)
	}

	// A report over the dropped days says it covers what is left.
	out, err = exec.Command(tollgateBin, "collector", "report", "--config", c.cfgPath, "--since", "2025-01-01", "-o", "json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dropped the records of 3 day(s) in this period (2025-01-01 to 2025-01-03)") {
		t.Errorf("collector report over dropped days: %v\n%s", err, out)
	}
	out, err = exec.Command(tollgateBin, "collector", "report", "--config", c.cfgPath, "--since", "2025-01-04", "-o", "json").CombinedOutput()
	if err != nil || strings.Contains(string(out), "dropped") {
		t.Errorf("collector report after the dropped days: %v\n%s", err, out)
	}

	// Ingest goes on.
	h.add(t, 5)
	if code, b := post(t, c.url+collector.PathAddEntries, cred, h.body(t, 70, 75, h.key.Signer)); code != http.StatusOK {
		t.Fatalf("add-entries after retention: %d %s", code, b)
	}
}

// rootOfHashes is the RFC 6962 root of leaf hashes.
func rootOfHashes(t *testing.T, leaves [][]byte) []byte {
	t.Helper()
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for _, l := range leaves {
		if err := rng.Append(l, nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

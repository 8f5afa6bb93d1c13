// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
	"github.com/tollgate-dev/tollgate/audit/report"
	"github.com/tollgate-dev/tollgate/audit/ship"
)

// startShippingDaemon starts a daemon named host that ships to c with a
// fresh enrollment token; audit are more lines of its audit section
// (indented by two spaces).
func startShippingDaemon(t *testing.T, c *collectorProc, host string, cfg daemonConfig, audit ...string) *daemon {
	t.Helper()
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(c.enroll(t, host)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, cfg)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("host_id: e2e-test"), []byte("host_id: "+host), 1)
	b = fmt.Appendf(b, "audit:\n  ship: {url: %q, token_file: %s, interval: 100ms}\n%s", c.url, tokFile, strings.Join(audit, ""))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cfg: cfg, cfgPath: path}
	d.start()
	t.Cleanup(d.stop)
	return d
}

// echoDaemonConfig is a daemon protecting a TCP echo service.
func echoDaemonConfig(t *testing.T) daemonConfig {
	echo := echoServer(t, "tcp4", "127.0.0.2:0", "echo")
	return newDaemonConfig(t, fmt.Sprintf("  - name: w\n    cgroup: %s", newCgroup(t)),
		fmt.Sprintf("  - name: echo\n    protocol: tcp\n    match: [\"127.0.0.2:%d\"]", echo.Port))
}

// localLines returns the host's records exactly as stored, read with the
// CLI (`audit tail -o json` prints the stored bytes).
func localLines(t *testing.T, d *daemon) [][]byte {
	t.Helper()
	out, err := exec.Command(tollgateBin, "audit", "tail", "--config", d.cfgPath, "-n", "1000000", "-o", "json").Output()
	if err != nil {
		t.Fatalf("audit tail: %v", err)
	}
	return bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
}

// shipped waits until the collector holds every record of d, then checks
// that it holds each exactly once, in order, byte for byte. Records the
// daemon still appends (signals it has not handled yet, heartbeats) make
// it look again, until the host's records and the collector's agree.
func shipped(t *testing.T, c *collectorProc, d *daemon) agent.Status {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	conn := c.conn(t)
	for {
		st := d.status()
		if s := st.Log.Shipping; s != nil && s.Shipped == st.Log.Records && s.LagRecords == 0 && s.Cosigned == s.Shipped {
			local := localLines(t, d)
			held := storedRecords(t, conn, st.Log.ID)
			// The host may have pruned its oldest records
			// (audit.retention): what it still has must be the
			// collector's, from there on.
			first, err := audit.Decode(local[0])
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(held)) == first.Seq+uint64(len(local)) {
				for i := range local {
					if !bytes.Equal(held[first.Seq+uint64(i)], local[i]) {
						t.Fatalf("%s: record %d differs:\n host      %s\n collector %s", st.HostID, first.Seq+uint64(i), local[i], held[first.Seq+uint64(i)])
					}
				}
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: collector holds %d records, host has %d from %d", st.HostID, len(held), len(local), first.Seq)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not shipped in time: %+v, %d records\n%s", st.HostID, st.Log.Shipping, st.Log.Records, d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hup(t *testing.T, d *daemon, n int) {
	for i := 0; i < n; i++ {
		d.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCollectorFleet: three daemons (one intercepting psql) ship to one
// collector, which is killed with SIGKILL while batches are in flight and
// restarted, and whose PostgreSQL is stopped with -m immediate and
// restarted; every record of every host arrives exactly once, in order,
// byte for byte, cosigned, and the fleet view shows all three.
func TestCollectorFleet(t *testing.T) {
	requireRoot(t)
	pg := startPostgres(t)
	c := newCollector(t, pg)

	secret := writeSecret(t, pgScramPass)
	cg := newCgroup(t)
	a := startShippingDaemon(t, c, "fleet-a", newDaemonConfig(t, fmt.Sprintf("  - name: pg-workload\n    cgroup: %s", cg),
		pgTargetYAML(pg, secret, "process", "")))
	b := startShippingDaemon(t, c, "fleet-b", echoDaemonConfig(t))
	d3 := startShippingDaemon(t, c, "fleet-c", echoDaemonConfig(t))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := runClient(t, ctx, cg, nil, "", "psql", "-X", "-At", "-d", pg.dsn(pgScramUser, pgDatabase),
		"-c", "SELECT 'fleet-probe' AS fleet_probe")
	if err != nil || !strings.Contains(out, "fleet-probe") {
		t.Fatalf("psql through tollgate: %v\n%s\n%s", err, out, errOut)
	}

	// Traffic while the collector dies mid-batch and comes back.
	conn := c.conn(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 6; i++ {
			hup(t, b, 20)
			hup(t, d3, 20)
		}
	}()
	waitFor(t, "first batches stored", func() bool {
		return count(t, conn, "SELECT count(*) FROM records") > 0
	})
	c.kill()
	time.Sleep(300 * time.Millisecond)
	c.start()
	<-done
	c.kill()
	c.start()

	// PostgreSQL stopped as by `pg_ctl -m immediate` (SIGQUIT: no
	// shutdown checkpoint, transactions in flight lost) while batches
	// arrive, then restarted: it recovers from its WAL, the collector
	// reconnects, the hosts resend what was not committed.
	done = make(chan struct{})
	go func() { defer close(done); hup(t, b, 40) }()
	waitFor(t, "more batches", func() bool {
		st := b.status()
		return st.Log.Shipping != nil && st.Log.Shipping.Shipped > 130
	})
	pg.cmd.Process.Signal(syscall.SIGQUIT)
	<-pg.done
	pg.cmd = nil
	time.Sleep(300 * time.Millisecond)
	pg.start()
	<-done

	for _, d := range []*daemon{a, b, d3} {
		st := shipped(t, c, d)
		t.Logf("%s: %d records shipped, %+v", st.HostID, st.Log.Records, st.Log.Shipping)
		if !strings.Contains(st.Log.ShippingLag, "lag 0 records") {
			t.Errorf("%s: status line %q", st.HostID, st.Log.ShippingLag)
		}
	}

	// The psql statement arrived with its session and fingerprint.
	ast := a.status()
	if n := count(t, c.conn(t), `SELECT count(*) FROM records WHERE origin = $1 AND kind = 'statement'
		AND fingerprint IS NOT NULL AND session IS NOT NULL AND convert_from(data, 'UTF8') LIKE '%fleet_probe%'`, ast.Log.ID); n == 0 {
		t.Errorf("the psql statement is not in the collector")
	}

	// The fleet report, from PostgreSQL, has the psql session's access row.
	rj, err := exec.Command(tollgateBin, "collector", "report", "--config", c.cfgPath, "--host", "fleet-a", "-o", "json").Output()
	if err != nil {
		t.Fatalf("collector report: %v", err)
	}
	var rep report.Report
	if err := json.Unmarshal(rj, &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, row := range rep.Access {
		if row.Target == "pg" && row.Classes["select"] > 0 && strings.Contains(row.Identity, "psql") {
			found = true
		}
	}
	if !found || rep.Records != int(ast.Log.Records) {
		t.Errorf("collector report of fleet-a: %d records (host has %d), access %+v", rep.Records, ast.Log.Records, rep.Access)
	}
	html := filepath.Join(t.TempDir(), "fleet.html")
	if out, err := exec.Command(tollgateBin, "collector", "report", "--config", c.cfgPath, "-o", "html", "--out", html).CombinedOutput(); err != nil {
		t.Errorf("collector report -o html: %v %s", err, out)
	}

	// Every cosignature kept beside the log verifies with the collector's key.
	pub, err := os.ReadFile(filepath.Join(c.dir, "collector.key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	ver, err := collector.NewCosignVerifier(string(pub))
	if err != nil {
		t.Fatal(err)
	}
	cos, err := ship.ReadCosigned(a.cfg.StateDir)
	if err != nil || len(cos) == 0 {
		t.Fatalf("cosigned checkpoints of fleet-a: %v, %d", err, len(cos))
	}
	for _, cs := range cos {
		if _, err := collector.VerifyCosigned(cs.Checkpoint, ver); err != nil {
			t.Errorf("cosigned checkpoint %d: %v", cs.Size, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(a.cfg.StateDir, ship.CredentialFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file: %v %v", err, fi)
	}

	hosts, mis := c.hosts(t)
	if len(hosts) != 3 || len(mis) != 0 {
		t.Fatalf("fleet view: %+v %+v", hosts, mis)
	}
	for _, h := range hosts {
		if h.Size == 0 || h.Cosigned != h.Size || h.Misbehavior != 0 || h.Silent {
			t.Errorf("fleet view row: %+v", h)
		}
	}
	text, err := exec.Command(tollgateBin, "collector", "hosts", "--config", c.cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(text), "fleet-a") {
		t.Errorf("collector hosts: %v\n%s", err, text)
	}
	t.Logf("collector hosts:\n%s", text)
}

// TestCollectorTamper: after shipping, a host whose log was edited, and a
// host whose state directory was rolled back to an older copy, are caught:
// the collector records the misbehavior with the signed checkpoints, the
// fleet view shows it, and the host's shipping stops with a clear error.
func TestCollectorTamper(t *testing.T) {
	requireRoot(t)
	pg := startPostgres(t)
	c := newCollector(t, pg)
	edit := startShippingDaemon(t, c, "tamper-edit", echoDaemonConfig(t))
	roll := startShippingDaemon(t, c, "tamper-roll", echoDaemonConfig(t))
	hup(t, edit, 10)
	hup(t, roll, 10)
	shipped(t, c, edit)
	shipped(t, c, roll)

	// Roll back: keep a copy of the state, ship more, restore the copy.
	roll.stop()
	backup := filepath.Join(t.TempDir(), "state")
	if out, err := exec.Command("cp", "-a", roll.cfg.StateDir, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	roll.start()
	hup(t, roll, 10)
	shipped(t, c, roll)
	roll.stop()
	os.RemoveAll(roll.cfg.StateDir)
	if out, err := exec.Command("cp", "-a", backup, roll.cfg.StateDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	roll.start()

	// Edit a shipped record, as root on the host could, and cover the
	// edit: rebuild the stored tree state and re-sign the newest
	// checkpoint with the host key (root can read it). The host's own
	// checks pass; only the collector, which holds the old tree, can tell.
	edit.stop()
	hostKey, err := audit.LoadOrCreateHostKey(edit.cfg.StateDir, "tamper-edit")
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(edit.cfg.StateDir, agent.LogFile), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("records"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
		v := append([]byte(nil), bk.Get(k)...)
		i := bytes.Index(v, []byte(`Z","kind"`))
		if i < 1 {
			return fmt.Errorf("record 2 has no time: %s", v)
		}
		v[i-1] = '0' + (v[i-1]-'0'+1)%10
		if err := bk.Put(k, v); err != nil {
			return err
		}
		rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
		var origin []byte
		if err := bk.ForEach(func(_, rec []byte) error {
			if origin == nil {
				r, err := audit.Decode(rec)
				if err != nil {
					return err
				}
				origin = []byte(r.Log)
			}
			return rng.Append(audit.LeafHash(rec), nil)
		}); err != nil {
			return err
		}
		if tx.Bucket([]byte("nodes")).Stats().KeyN != 0 {
			return fmt.Errorf("the log has stored nodes; this test covers small logs only")
		}
		tree := binary.BigEndian.AppendUint64(nil, rng.End())
		for _, h := range rng.Hashes() {
			tree = append(tree, h...)
		}
		if err := tx.Bucket([]byte("meta")).Put([]byte("tree"), tree); err != nil {
			return err
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return err
		}
		cp, err := audit.SignCheckpoint(string(origin), rng.End(), root, time.Now(), hostKey.Signer)
		if err != nil {
			return err
		}
		if err := tx.DeleteBucket([]byte("checkpoints")); err != nil {
			return err
		}
		cb, err := tx.CreateBucket([]byte("checkpoints"))
		if err != nil {
			return err
		}
		return cb.Put(binary.BigEndian.AppendUint64(nil, rng.End()), cp.Note)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	edit.start()
	hup(t, edit, 3)

	for _, tc := range []struct {
		d    *daemon
		kind string
	}{{roll, collector.MisbehaviorRollback}, {edit, collector.MisbehaviorFork}} {
		var st agent.Status
		deadline := time.Now().Add(30 * time.Second)
		for {
			st = tc.d.status()
			if st.Log.Shipping != nil && st.Log.Shipping.Halted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: shipping not halted: %+v\n%s", st.HostID, st.Log.Shipping, tc.d.stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(st.Log.Shipping.LastError, tc.kind) {
			t.Errorf("%s: last error %q does not name %s", st.HostID, st.Log.Shipping.LastError, tc.kind)
		}
		t.Logf("%s: %s", st.HostID, st.Log.ShippingLag)
		hosts, mis := c.hosts(t)
		found := false
		for _, m := range mis {
			if m.Origin == st.Log.ID && m.Kind == tc.kind {
				found = true
				v, _ := audit.ParseVerifierKey(st.HostKey)
				for _, n := range [][]byte{m.Stored, m.New} {
					if _, err := audit.OpenCheckpoint(n, v); err != nil {
						t.Errorf("%s: proof checkpoint does not verify with the host key: %v", tc.kind, err)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no %s misbehavior in %+v", st.HostID, tc.kind, mis)
		}
		for _, h := range hosts {
			if h.Origin == st.Log.ID && (h.Misbehavior == 0 || h.Halted == "") {
				t.Errorf("fleet view of %s: %+v", st.HostID, h)
			}
		}
	}
	text, _ := exec.Command(tollgateBin, "collector", "hosts", "--config", c.cfgPath).CombinedOutput()
	t.Logf("collector hosts:\n%s", text)
}

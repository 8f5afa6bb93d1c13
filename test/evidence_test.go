// SPDX-License-Identifier: Apache-2.0

package test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
)

// evidenceSessions runs n intercepted client sessions and waits until their
// records are durable.
func evidenceSessions(t *testing.T, s *interceptSetup, n int) {
	t.Helper()
	before := sessionCount(t, s.d)
	for i := range n {
		msg := fmt.Sprintf("evidence %d", i)
		res, _ := runChild(t, s.cgroup, "tcp", s.echo4.String(), msg)
		if r := res[0]; r.Err != "" || r.Reply != "echo4\n"+msg {
			t.Fatalf("client %d: %+v", i, r)
		}
	}
	waitFor(t, "session ends", func() bool { return sessionCount(t, s.d) >= before+n })
}

// sessionCount counts session.end records.
func sessionCount(t *testing.T, d *daemon) int {
	_, ends := sessionRecords(d.records())
	return len(ends)
}

// exportCLI runs `tollgate audit export` and returns the bundle path.
func exportCLI(t *testing.T, d *daemon, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	all := append([]string{"audit", "export", "--config", d.cfgPath, "--out", out}, args...)
	if msg, err := runTollgate(all...); err != nil {
		t.Fatalf("audit export %v: %v\n%s", args, err, msg)
	} else {
		t.Logf("audit export %v: %s", args, strings.TrimSpace(msg))
	}
	return out
}

// verifyCLI runs `tollgate audit verify` and returns its output and
// whether it exited 0. Any exit status but 0 and 1 is a test failure.
func verifyCLI(t *testing.T, bundle, pub string, args ...string) (string, bool) {
	t.Helper()
	all := append([]string{"audit", "verify", bundle, "--key", pub}, args...)
	out, err := runTollgate(all...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, true
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return out, false
	default:
		t.Fatalf("audit verify: %v\n%s", err, out)
		return "", false
	}
}

func mustVerifyCLI(t *testing.T, bundle, pub string, args ...string) string {
	t.Helper()
	out, ok := verifyCLI(t, bundle, pub, args...)
	if !ok || !strings.Contains(out, "VERIFIED") {
		t.Fatalf("bundle %s does not verify:\n%s", bundle, out)
	}
	return out
}

// bundleFile is one file of a bundle.
type bundleFile struct {
	name string
	data []byte
}

func readBundle(t *testing.T, path string) []bundleFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var out []bundleFile
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bundleFile{h.Name, b})
	}
}

func writeBundle(t *testing.T, files []bundleFile) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Size: int64(len(f.data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tampered.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tamper rewrites one file of a bundle and, like an attacker covering
// their tracks, the manifest's hashes.
func tamper(t *testing.T, bundle, name string, fixManifest bool, fn func([]byte) []byte) string {
	t.Helper()
	files := readBundle(t, bundle)
	found := false
	for i := range files {
		if files[i].name == name {
			files[i].data = fn(bytes.Clone(files[i].data))
			found = true
		}
	}
	if !found {
		t.Fatalf("no %s in %s", name, bundle)
	}
	if fixManifest {
		var m map[string]any
		for _, f := range files {
			if f.name == evidence.BundleManifest {
				if err := json.Unmarshal(f.data, &m); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, f := range files {
			if f.name != evidence.BundleManifest {
				sum := sha256.Sum256(f.data)
				m["files"].(map[string]any)[f.name] = "sha256:" + hex.EncodeToString(sum[:])
			}
		}
		for i := range files {
			if files[i].name == evidence.BundleManifest {
				files[i].data, _ = json.MarshalIndent(m, "", "  ")
			}
		}
	}
	return writeBundle(t, files)
}

// tamperLines edits records.jsonl line by line.
func tamperLines(t *testing.T, bundle string, fn func([][]byte) [][]byte) string {
	t.Helper()
	return tamper(t, bundle, evidence.BundleRecords, true, func(d []byte) []byte {
		lines := bytes.Split(bytes.TrimSuffix(d, []byte("\n")), []byte("\n"))
		return append(bytes.Join(fn(lines), []byte("\n")), '\n')
	})
}

// TestEvidenceBundle exports a bundle after real intercepted sessions, with
// the daemon running and stopped, verifies it with the host's public key,
// and checks that every kind of tampering is detected with a message that
// says what and where.
func TestEvidenceBundle(t *testing.T) {
	s := newInterceptSetup(t)
	pub := filepath.Join(s.d.cfg.StateDir, audit.HostPubFile)
	for name, mode := range map[string]os.FileMode{audit.HostKeyFile: 0o600, audit.HostPubFile: 0o644} {
		fi, err := os.Stat(filepath.Join(s.d.cfg.StateDir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v; want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	evidenceSessions(t, s, 6)

	// status shows the key and the last checkpoint.
	out, err := runTollgate("status", "--config", s.d.cfgPath)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	pubText, _ := os.ReadFile(pub)
	if !strings.Contains(out, strings.TrimSpace(string(pubText))) || !strings.Contains(out, "last checkpoint  size ") {
		t.Fatalf("status does not show the host key and last checkpoint:\n%s", out)
	}
	waitFor(t, "a checkpoint signed without asking", func() bool {
		st := s.d.status()
		return st.Log.CheckpointSize == st.Log.Records && st.Log.Records > 0
	})

	// A checkpoint the auditor keeps, then more traffic.
	trusted := filepath.Join(t.TempDir(), "trusted.note")
	if out, err := runTollgate("audit", "checkpoint", "--config", s.d.cfgPath, "--out", trusted); err != nil {
		t.Fatalf("audit checkpoint: %v\n%s", err, out)
	}
	evidenceSessions(t, s, 4)

	bundle := exportCLI(t, s.d, "all.tar")
	out = mustVerifyCLI(t, bundle, pub, "--trusted-checkpoint", trusted)
	t.Logf("verify:\n%s", out)
	if !strings.Contains(out, "10 started, 10 ended") || !strings.Contains(out, "trusted") {
		t.Errorf("report does not show the sessions and the trusted check:\n%s", out)
	}
	// The heartbeat at start carries the clock state.
	var hb *audit.Record
	for _, r := range s.d.records() {
		if r.Kind == audit.KindHeartbeat {
			hb = r
			break
		}
	}
	if hb == nil || hb.Detail[audit.DetailClockSync] == "" || hb.Detail[audit.DetailConfig] == "" {
		t.Errorf("heartbeat record %+v", hb)
	}

	// One session, with the records around it.
	starts, _ := sessionRecords(s.d.records())
	var sid string
	for id := range starts {
		sid = id
		break
	}
	sessBundle := exportCLI(t, s.d, "session.tar", "--session", sid)
	out = mustVerifyCLI(t, sessBundle, pub)
	if !strings.Contains(out, "1 started, 1 ended") {
		t.Errorf("session bundle:\n%s", out)
	}

	// Tampering.
	var m evidence.Manifest
	for _, f := range readBundle(t, bundle) {
		if f.name == evidence.BundleManifest {
			json.Unmarshal(f.data, &m)
		}
	}
	n := int(m.Records)
	otherKey, err := audit.LoadOrCreateHostKey(t.TempDir(), "e2e-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		bundle func() string
		want   []string
	}{
		{"one byte changed in a record", func() string {
			return tamperLines(t, bundle, func(ls [][]byte) [][]byte {
				i := bytes.Index(ls[n/2], []byte(`"kind":"`)) + 9
				ls[n/2][i] ^= 0x20 // session.end -> sEssion.end etc.: still JSON
				return ls
			})
		}, []string{fmt.Sprintf("seq %d", n/2)}},
		{"one byte changed, signed root", func() string {
			return tamperLines(t, bundle, func(ls [][]byte) [][]byte {
				i := bytes.Index(ls[n/2], []byte(`"time":"`)) + 20
				ls[n/2][i] = '0' + (ls[n/2][i]-'0'+1)%10 // another digit of the time
				return ls
			})
		}, []string{"another root", "was changed, removed, added or reordered"}},
		{"a record removed", func() string {
			return tamperLines(t, bundle, func(ls [][]byte) [][]byte { return append(ls[:5], ls[6:]...) })
		}, []string{"records.jsonl line 6 seq 6: seq 6 where 5 was expected: record 5 is missing"}},
		{"two records swapped", func() string {
			return tamperLines(t, bundle, func(ls [][]byte) [][]byte {
				ls[7], ls[8] = ls[8], ls[7]
				return ls
			})
		}, []string{"records.jsonl line 8 seq 8: seq 8 where 7 was expected"}},
		{"tail truncated", func() string {
			return tamperLines(t, bundle, func(ls [][]byte) [][]byte { return ls[:len(ls)-3] })
		}, []string{"records are missing (the tail was truncated or records removed)"}},
		{"a record appended without a checkpoint", func() string {
			return tamperLines(t, bundle, func(ls [][]byte) [][]byte {
				r, err := audit.Decode(ls[len(ls)-1])
				if err != nil {
					t.Fatal(err)
				}
				r.Seq++
				r.Kind = audit.KindError
				r.Error = "forged"
				b, _ := audit.Encode(r)
				return append(ls, b)
			})
		}, []string{fmt.Sprintf("seq %d is beyond the range", n), "a record was added without a checkpoint"}},
		{"a checkpoint signed by another key", func() string {
			return tamper(t, bundle, evidence.BundleCheckpoint, true, func(d []byte) []byte {
				text := d[:bytes.LastIndex(d, []byte("\n\n"))+1]
				msg, err := note.Sign(&note.Note{Text: string(text)}, otherKey.Signer)
				if err != nil {
					t.Fatal(err)
				}
				return msg
			})
		}, []string{"checkpoint.note: not signed by " + audit.KeyName("e2e-test")}},
		{"a modified manifest", func() string {
			return tamper(t, bundle, evidence.BundleManifest, false, func(d []byte) []byte {
				return bytes.Replace(d, []byte(fmt.Sprintf(`"end": %d`, m.End)), []byte(fmt.Sprintf(`"end": %d`, m.End-1)), 1)
			})
		}, []string{"MANIFEST.json: claims records"}},
		{"records changed, manifest not fixed", func() string {
			return tamper(t, bundle, evidence.BundleRecords, false, func(d []byte) []byte { return d[:len(d)/2] })
		}, []string{"MANIFEST.json: sha256 of records.jsonl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := verifyCLI(t, tc.bundle(), pub)
			if ok || !strings.Contains(out, "FAILED") {
				t.Fatalf("tampered bundle verifies:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("verify output does not mention %q:\n%s", w, out)
				}
			}
		})
	}
	// The wrong key: every signature fails.
	if out, ok := verifyCLI(t, bundle, otherKey.VerifierKey); ok || !strings.Contains(out, "checkpoint.note: not signed by") {
		t.Fatalf("bundle verifies with another key:\n%s", out)
	}

	// With the daemon stopped, export reads the state directory.
	s.d.stop()
	stopped := exportCLI(t, s.d, "stopped.tar")
	out = mustVerifyCLI(t, stopped, pub, "--trusted-checkpoint", trusted)
	if !strings.Contains(out, "agent.stop 1") {
		t.Errorf("export after stop lacks the stop record:\n%s", out)
	}
}

// TestEvidenceRollback rolls the whole store back to an earlier copy while
// the daemon is stopped: the bundle exported afterwards is consistent in
// itself, and the checkpoint an auditor took before the rollback exposes it.
func TestEvidenceRollback(t *testing.T) {
	s := newInterceptSetup(t)
	pub := filepath.Join(s.d.cfg.StateDir, audit.HostPubFile)
	db := filepath.Join(s.d.cfg.StateDir, agent.LogFile)
	evidenceSessions(t, s, 3)
	s.d.stop()
	// The store is the log file and its journal.
	saved, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	savedJournal, err := os.ReadFile(db + audit.JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}

	s.d.start()
	evidenceSessions(t, s, 4)
	trusted := filepath.Join(t.TempDir(), "trusted.note")
	if out, err := runTollgate("audit", "checkpoint", "--config", s.d.cfgPath, "--out", trusted); err != nil {
		t.Fatalf("audit checkpoint: %v\n%s", err, out)
	}
	s.d.stop()

	// Roll back and let the log grow a different history, past the
	// trusted size.
	if err := os.WriteFile(db, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+audit.JournalSuffix, savedJournal, 0o600); err != nil {
		t.Fatal(err)
	}
	s.d.start()
	evidenceSessions(t, s, 2)
	bundle := exportCLI(t, s.d, "rolled-back.tar")
	mustVerifyCLI(t, bundle, pub)
	out, ok := verifyCLI(t, bundle, pub, "--trusted-checkpoint", trusted)
	if ok || !strings.Contains(out, "trusted checkpoint: covers") || !strings.Contains(out, "rolled back") {
		t.Fatalf("rollback not detected:\n%s", out)
	}
	t.Logf("rolled back, smaller:\n%s", out)
	evidenceSessions(t, s, 6)
	bundle = exportCLI(t, s.d, "rolled-back-grown.tar")
	out, ok = verifyCLI(t, bundle, pub, "--trusted-checkpoint", trusted)
	if ok || !strings.Contains(out, "different root") {
		t.Fatalf("rollback past the trusted size not detected:\n%s", out)
	}
	t.Logf("rolled back, grown again:\n%s", out)
}

// TestEvidenceCrashConsistency kills the daemon with SIGKILL during heavy
// appends, many times. After each restart the daemon accepts its file (tree,
// records and last checkpoint agree, or it would refuse to start), the last
// checkpoint covers no more than the records, and an export verifies.
func TestEvidenceCrashConsistency(t *testing.T) {
	s := newInterceptSetup(t)
	pub := filepath.Join(s.d.cfg.StateDir, audit.HostPubFile)
	const rounds = 20
	cg := filepath.Join(cgroup2Root(t), s.cgroup)
	var killedAt []uint64
	for round := range rounds {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { evidenceLoad(ctx, cg, s.echo4.String()) })
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		s.d.kill()
		cancel()
		wg.Wait()

		s.d.start()
		st := s.d.status()
		if st.Log.CheckpointSize > st.Log.Records || !st.Log.Healthy {
			t.Fatalf("round %d: checkpoint size %d, records %d, healthy %v", round, st.Log.CheckpointSize, st.Log.Records, st.Log.Healthy)
		}
		killedAt = append(killedAt, st.Log.Records)
		if round%5 == 4 || round == rounds-1 {
			bundle := exportCLI(t, s.d, fmt.Sprintf("round%d.tar", round))
			out := mustVerifyCLI(t, bundle, pub)
			if round == rounds-1 {
				t.Logf("after %d kills (log sizes %v):\n%s", rounds, killedAt, out)
			}
		}
	}
	if killedAt[len(killedAt)-1] < 200 {
		t.Errorf("only %d records after %d rounds: the load did not run", killedAt[len(killedAt)-1], rounds)
	}
}

// evidenceLoad opens intercepted connections, many at a time, until ctx
// ends. Connections fail while the daemon is down; that is the point.
func evidenceLoad(ctx context.Context, cgroupDir, addr string) {
	for ctx.Err() == nil {
		f, err := os.Open(cgroupDir)
		if err != nil {
			return
		}
		cmd := exec.CommandContext(ctx, os.Args[0], addr, "50", "64")
		cmd.Env = append(os.Environ(), childEnv+"=many")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		_ = cmd.Run()
		f.Close()
	}
}

// TestEvidenceReplayReport replays a real intercepted session and builds
// the access report in every format, with the daemon running and stopped.
func TestEvidenceReplayReport(t *testing.T) {
	s := newInterceptSetup(t)
	evidenceSessions(t, s, 3)
	starts, _ := sessionRecords(s.d.records())
	var sid string
	for id := range starts {
		sid = id
	}
	cast := filepath.Join(t.TempDir(), "session.cast")
	for _, running := range []bool{true, false} {
		if !running {
			s.d.stop()
		}
		out, err := runTollgate("audit", "replay", sid, "--config", s.d.cfgPath, "--speed", "0", "--cast", cast)
		if err != nil {
			t.Fatalf("replay (running %v): %v\n%s", running, err, out)
		}
		if !strings.Contains(out, "session  "+sid) || !strings.Contains(out, "session.start") || !strings.Contains(out, "session.end") ||
			!strings.Contains(out, "process  pid") {
			t.Fatalf("replay (running %v):\n%s", running, out)
		}
		b, err := os.ReadFile(cast)
		if err != nil || !strings.Contains(strings.SplitN(string(b), "\n", 2)[0], `"version":2`) {
			t.Fatalf("cast %q: %v", b, err)
		}
		for _, format := range []string{"text", "csv", "json", "html"} {
			out, err := runTollgate("audit", "report", "--config", s.d.cfgPath, "-o", format)
			if err != nil {
				t.Fatalf("report -o %s: %v\n%s", format, err, out)
			}
			want := map[string]string{"text": "ACCESS BY IDENTITY AND TARGET", "csv": "identity,auth,target,sessions",
				"json": `"access": [`, "html": `<figure id="chart-sessions">`}[format]
			if !strings.Contains(out, want) || !strings.Contains(out, "echo") {
				t.Fatalf("report -o %s lacks %q or the target:\n%s", format, want, out)
			}
		}
	}
	if out, err := runTollgate("audit", "replay", "no-such-session", "--config", s.d.cfgPath); err == nil || !strings.Contains(out, "no records of the session") {
		t.Fatalf("replay of an unknown session: %v\n%s", err, out)
	}
}

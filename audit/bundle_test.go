// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/audit"
)

// Fixed test keys, so that fuzz seeds stay valid across runs. Never use them
// for anything else.
const (
	testSignerKey   = "PRIVATE+KEY+tollgate/test-host+701737bc+AeVqKDbQWk1XX3tYCoSxJ4tSX6S6Oc2t0ZfC2kbNepxn"
	testVerifierKey = "tollgate/test-host+701737bc+ASU1LlvNMG1sMvpd5ix6B9esAFztcFGtWRmivMnpxGfZ"
	otherSignerKey  = "PRIVATE+KEY+tollgate/test-host+b60d7c5a+AQs+/OuN+bscGIP2yTka4Ff+6MdOtRoaRv/wqLGL0YKf"
)

func testKey(t testing.TB, skey string) (*audit.HostKey, note.Verifier) {
	t.Helper()
	k, err := audit.ParseHostKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.ParseVerifierKey(k.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, v
}

// evidenceLog is a keyed log with a realistic history.
type evidenceLog struct {
	path string
	l    *audit.Log
	key  *audit.HostKey
	v    note.Verifier
	ids  []string // session ids in order
	next int      // next session number
}

// newEvidenceLog opens a keyed log whose checkpoints are only signed when
// the test asks (or at Close).
func newEvidenceLog(t testing.TB, path string) *evidenceLog {
	t.Helper()
	key, v := testKey(t, testSignerKey)
	e := &evidenceLog{path: path, key: key, v: v}
	e.open(t)
	return e
}

func (e *evidenceLog) open(t testing.TB) {
	t.Helper()
	l, err := audit.Open(e.path, audit.Options{HostID: "test-host", Key: e.key, NoSync: true, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.l = l
	t.Cleanup(func() { l.Close() })
}

func (e *evidenceLog) add(t testing.TB, r *audit.Record) {
	t.Helper()
	if _, err := e.l.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// start writes a daemon start and a heartbeat.
func (e *evidenceLog) start(t testing.TB) {
	e.add(t, &audit.Record{Kind: audit.KindAgentStart, Detail: map[string]string{"version": "test"}})
	e.add(t, &audit.Record{Kind: audit.KindHeartbeat, Detail: map[string]string{"clock_sync": "synchronised", "config": "sha256:x"}})
}

// sessions writes n complete sessions of a few statements each, and
// signs a checkpoint after every cpEvery sessions (0: never).
func (e *evidenceLog) sessions(t testing.TB, n, cpEvery int) {
	t.Helper()
	for range n {
		id := fmt.Sprintf("sess-%04d", e.next)
		e.next++
		e.ids = append(e.ids, id)
		e.add(t, &audit.Record{Kind: audit.KindSessionStart, Session: id, Target: "db",
			Process: &audit.Process{Pid: 42, UID: 1000, Comm: "psql"}})
		for j := range 3 {
			e.add(t, &audit.Record{Kind: audit.KindStatement, Session: id,
				Statement: &audit.Statement{Text: fmt.Sprintf("SELECT %d FROM t", j), Classes: []string{"select"}},
				Decision:  &audit.Decision{Action: "allow", Rule: "reads"}})
			e.add(t, &audit.Record{Kind: audit.KindResult, Session: id, Detail: map[string]string{"tag": "SELECT 1"}})
		}
		e.add(t, &audit.Record{Kind: audit.KindSessionEnd, Session: id, Bytes: &audit.Bytes{Up: 10, Down: 20}, CloseReason: "client close"})
		if cpEvery > 0 && e.next%cpEvery == 0 {
			if _, err := e.l.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (e *evidenceLog) export(t testing.TB, opts audit.ExportOptions) []byte {
	t.Helper()
	return exportBundle(t, e.l, opts)
}

func exportBundle(t testing.TB, l *audit.Log, opts audit.ExportOptions) []byte {
	t.Helper()
	ex, err := l.PrepareExport(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := ex.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func verify(t testing.TB, b []byte, v note.Verifier, trusted []byte) *audit.VerifyReport {
	t.Helper()
	rep, err := audit.Verify(bytes.NewReader(b), audit.VerifyOptions{Key: v, Trusted: trusted})
	if err != nil && !errors.Is(err, audit.ErrVerifyFailed) {
		t.Fatal(err)
	}
	if (err == nil) != rep.OK {
		t.Fatalf("Verify error %v with OK=%v", err, rep.OK)
	}
	return rep
}

func mustVerify(t testing.TB, b []byte, v note.Verifier, trusted []byte) *audit.VerifyReport {
	t.Helper()
	rep := verify(t, b, v, trusted)
	if !rep.OK {
		t.Fatalf("bundle does not verify:\n%s", failures(rep))
	}
	return rep
}

func failures(rep *audit.VerifyReport) string {
	var sb strings.Builder
	for _, p := range rep.Failures {
		sb.WriteString("  " + p.String() + "\n")
	}
	return sb.String()
}

// tarFile is one file of a bundle.
type tarFile struct {
	name string
	data []byte
}

func untar(t testing.TB, b []byte) []tarFile {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []tarFile
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarFile{h.Name, data})
	}
}

func retar(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Size: int64(len(f.data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	return buf.Bytes()
}

// edit returns the bundle with file name changed by fn.
func edit(t testing.TB, b []byte, name string, fn func([]byte) []byte) []byte {
	t.Helper()
	files := untar(t, b)
	found := false
	for i := range files {
		if files[i].name == name {
			files[i].data = fn(bytes.Clone(files[i].data))
			found = true
		}
	}
	if !found {
		t.Fatalf("no %s in the bundle", name)
	}
	return retar(t, files)
}

func fileOf(t testing.TB, b []byte, name string) []byte {
	t.Helper()
	for _, f := range untar(t, b) {
		if f.name == name {
			return f.data
		}
	}
	t.Fatalf("no %s in the bundle", name)
	return nil
}

// editLines edits records.jsonl as a list of lines.
func editLines(t testing.TB, b []byte, fn func([][]byte) [][]byte) []byte {
	return edit(t, b, audit.BundleRecords, func(d []byte) []byte {
		lines := bytes.Split(bytes.TrimSuffix(d, []byte("\n")), []byte("\n"))
		lines = fn(lines)
		return append(bytes.Join(lines, []byte("\n")), '\n')
	})
}

// fixManifest recomputes the manifest's hash of records.jsonl, as a
// tamperer covering their tracks would.
func fixManifest(t testing.TB, b []byte) []byte {
	t.Helper()
	files := untar(t, b)
	var m map[string]any
	for _, f := range files {
		if f.name == audit.BundleManifest {
			json.Unmarshal(f.data, &m)
		}
	}
	for _, f := range files {
		if f.name != audit.BundleManifest {
			m["files"].(map[string]any)[f.name] = sha(f.data)
		}
	}
	for i := range files {
		if files[i].name == audit.BundleManifest {
			files[i].data, _ = json.Marshal(m)
		}
	}
	return retar(t, files)
}

func sha(b []byte) string {
	h := sha256Sum(b)
	return "sha256:" + fmt.Sprintf("%x", h)
}

func TestExportVerify(t *testing.T) {
	e := newEvidenceLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.start(t)
	e.sessions(t, 40, 7)
	b := e.export(t, audit.ExportOptions{Tool: "test"})
	rep := mustVerify(t, b, e.v, nil)
	if rep.Begin != 0 || rep.End != e.l.Size() || rep.Records != e.l.Size() || rep.TreeSize != e.l.Size() {
		t.Errorf("report range [%d,%d) of %d, %d records; log size %d", rep.Begin, rep.End, rep.TreeSize, rep.Records, e.l.Size())
	}
	// One every 7 sessions, and one when the first records after open
	// were stored, unless the indexer stored them together with the
	// first forced one.
	if rep.Checkpoints < 5 || rep.Checkpoints > 6 || rep.ConsistencyProofs != rep.Checkpoints {
		t.Errorf("%d checkpoints, %d consistency proofs; want 5 or 6 of each", rep.Checkpoints, rep.ConsistencyProofs)
	}
	if rep.Sessions.Started != 40 || rep.Sessions.Ended != 40 || rep.Sessions.Statements != 120 || rep.Sessions.Open != 0 {
		t.Errorf("sessions %+v", rep.Sessions)
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings: %v", rep.Warnings)
	}
	// The manifest says what is in the bundle.
	var m audit.Manifest
	if err := json.Unmarshal(fileOf(t, b, audit.BundleManifest), &m); err != nil {
		t.Fatal(err)
	}
	if m.Format != audit.BundleFormat || m.Log != e.l.ID() || m.Records != e.l.Size() || len(m.Files) != 6+len(m.Checkpoints) ||
		m.HostKey != testVerifierKey {
		t.Errorf("manifest %+v", m)
	}
	// Records are the exact stored bytes.
	entries, _ := e.l.Read(0, 10000)
	var want bytes.Buffer
	for _, en := range entries {
		want.Write(en.Bytes)
		want.WriteByte('\n')
	}
	if !bytes.Equal(fileOf(t, b, audit.BundleRecords), want.Bytes()) {
		t.Error("records.jsonl is not the stored bytes")
	}
	// The same files in another order verify too (a re-packed bundle).
	files := untar(t, b)
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	mustVerify(t, retar(t, files), e.v, nil)
}

func TestExportFilters(t *testing.T) {
	e := newEvidenceLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.start(t)
	e.sessions(t, 10, 3)
	mid := time.Now()
	time.Sleep(10 * time.Millisecond)
	e.sessions(t, 10, 3)

	// A session, with its interleaved neighbours.
	id := e.ids[4]
	b := e.export(t, audit.ExportOptions{Session: id})
	rep := mustVerify(t, b, e.v, nil)
	if rep.Records != 8 || rep.Sessions.Started != 1 || rep.Sessions.Ended != 1 {
		t.Errorf("session export: %d records, sessions %+v", rep.Records, rep.Sessions)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(fileOf(t, b, audit.BundleRecords)), []byte("\n")) {
		r, err := audit.Decode(line)
		if err != nil || r.Session != id {
			t.Fatalf("session export holds %s", line)
		}
	}
	// Since: from the middle, sessions start inside the range.
	rep = mustVerify(t, e.export(t, audit.ExportOptions{Since: mid}), e.v, nil)
	if rep.Sessions.Started != 10 || rep.Begin == 0 || rep.End != e.l.Size() {
		t.Errorf("since export: [%d,%d), sessions %+v", rep.Begin, rep.End, rep.Sessions)
	}
	// Until: the first half.
	rep = mustVerify(t, e.export(t, audit.ExportOptions{Until: mid}), e.v, nil)
	if rep.Sessions.Started != 10 || rep.Begin != 0 || rep.End >= e.l.Size() || rep.TreeSize != e.l.Size() {
		t.Errorf("until export: [%d,%d) of %d, sessions %+v", rep.Begin, rep.End, rep.TreeSize, rep.Sessions)
	}
	// A window that cuts a session: its end without its start is fine
	// when the range starts after 0.
	rep = mustVerify(t, exportRange(t, e, 5, e.l.Size()), e.v, nil)
	if rep.Sessions.StartedBefore != 1 {
		t.Errorf("cut window: sessions %+v", rep.Sessions)
	}
	if _, err := e.l.PrepareExport(context.Background(), audit.ExportOptions{Session: "nope"}); !errors.Is(err, audit.ErrNoRecords) {
		t.Errorf("unknown session: %v", err)
	}
	if _, err := e.l.PrepareExport(context.Background(), audit.ExportOptions{Session: id, Since: mid}); err == nil {
		t.Error("session and since together accepted")
	}
}

// exportRange exports seq [begin, end) by time: the records' own times.
func exportRange(t testing.TB, e *evidenceLog, begin, end uint64) []byte {
	t.Helper()
	first, _ := e.l.Read(begin, 1)
	r, _ := first[0].Record()
	opts := audit.ExportOptions{Since: r.Time}
	if end < e.l.Size() {
		after, _ := e.l.Read(end, 1)
		ra, _ := after[0].Record()
		opts.Until = ra.Time
	}
	return e.export(t, opts)
}

// TestVerifyDetectsTampering changes a valid bundle in every way an
// attacker might and checks that each is detected, with a message that says
// what and where.
func TestVerifyDetectsTampering(t *testing.T) {
	e := newEvidenceLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.start(t)
	e.sessions(t, 30, 5)
	good := e.export(t, audit.ExportOptions{})
	mustVerify(t, good, e.v, nil)
	n := int(e.l.Size())
	otherKey, _ := testKey(t, otherSignerKey)

	for _, tc := range []struct {
		name   string
		bundle func() []byte
		want   []string // substrings of some failure
	}{
		{"one byte changed in a record", func() []byte {
			return fixManifest(t, editLines(t, good, func(ls [][]byte) [][]byte {
				i := bytes.Index(ls[100], []byte("SELECT"))
				ls[100][i] = 'Z'
				return ls
			}))
		}, []string{"checkpoints/", "another root", "seq ["}},
		{"one byte changed, manifest not fixed", func() []byte {
			return editLines(t, good, func(ls [][]byte) [][]byte {
				ls[100][len(ls[100])-3] ^= 0x20
				return ls
			})
		}, []string{"sha256 of records.jsonl"}},
		{"record made invalid JSON", func() []byte {
			return editLines(t, good, func(ls [][]byte) [][]byte {
				ls[7] = ls[7][:len(ls[7])-1]
				return ls
			})
		}, []string{"records.jsonl line 8 seq 7: not a valid record"}},
		{"record removed", func() []byte {
			return fixManifest(t, editLines(t, good, func(ls [][]byte) [][]byte {
				return append(ls[:50], ls[51:]...)
			}))
		}, []string{"line 51 seq 51: seq 51 where 50 was expected: record 50 is missing"}},
		{"two records swapped", func() []byte {
			return fixManifest(t, editLines(t, good, func(ls [][]byte) [][]byte {
				ls[60], ls[61] = ls[61], ls[60]
				return ls
			}))
		}, []string{"seq 61 where 60 was expected", "out of order"}},
		{"tail truncated", func() []byte {
			return fixManifest(t, editLines(t, good, func(ls [][]byte) [][]byte { return ls[:len(ls)-5] }))
		}, []string{"records are missing", fmt.Sprintf("has %d records", n-5)}},
		{"record appended without a checkpoint", func() []byte {
			return fixManifest(t, editLines(t, good, func(ls [][]byte) [][]byte {
				r, _ := audit.Decode(ls[len(ls)-1])
				r.Seq++
				b, _ := audit.Encode(r)
				return append(ls, b)
			}))
		}, []string{fmt.Sprintf("seq %d is beyond the range", n), "added without a checkpoint"}},
		{"checkpoint signed by another key", func() []byte {
			return fixManifest(t, edit(t, good, audit.BundleCheckpoint, func(d []byte) []byte {
				text := d[:bytes.LastIndex(d, []byte("\n\n"))+1]
				msg, _ := note.Sign(&note.Note{Text: string(text)}, otherKey.Signer)
				return msg
			}))
		}, []string{"checkpoint.note: not signed by tollgate/test-host+701737bc (signed by tollgate/test-host+b60d7c5a)"}},
		{"checkpoint size changed", func() []byte {
			return fixManifest(t, edit(t, good, audit.BundleCheckpoint, func(d []byte) []byte {
				return bytes.Replace(d, []byte(fmt.Sprintf("\n%d\n", n)), []byte(fmt.Sprintf("\n%d\n", n-1)), 1)
			}))
		}, []string{"checkpoint.note: signature of tollgate/test-host+701737bc does not verify"}},
		{"manifest count changed", func() []byte {
			return edit(t, good, audit.BundleManifest, func(d []byte) []byte {
				return bytes.Replace(d, []byte(fmt.Sprintf(`"records": %d`, n)), []byte(fmt.Sprintf(`"records": %d`, n+1)), 1)
			})
		}, []string{"MANIFEST.json: claims records"}},
		{"manifest hash changed", func() []byte {
			return edit(t, good, audit.BundleManifest, func(d []byte) []byte {
				i := bytes.Index(d, []byte(`"sha256:`)) + 8
				d[i] ^= 1
				return d
			})
		}, []string{"MANIFEST.json: sha256 of"}},
		{"manifest lists a missing file", func() []byte {
			files := untar(t, good)
			var out []tarFile
			for _, f := range files {
				if f.name != audit.BundleVerifyMD {
					out = append(out, f)
				}
			}
			return retar(t, out)
		}, []string{"VERIFY.md: missing", "MANIFEST.json: lists VERIFY.md"}},
		{"extra file", func() []byte {
			return retar(t, append(untar(t, good), tarFile{"notes.txt", []byte("x")}))
		}, []string{"notes.txt: unexpected file"}},
		{"earlier checkpoint removed", func() []byte {
			var out []tarFile
			for _, f := range untar(t, good) {
				if !strings.HasPrefix(f.name, audit.BundleCheckpointsDir) || len(out) > 100 {
					out = append(out, f)
				}
			}
			return fixManifest(t, retar(t, out))
		}, []string{"MANIFEST.json: lists checkpoints"}},
		{"range proof hash changed", func() []byte {
			return fixManifest(t, edit(t, exportRange(t, e, 50, 150), audit.BundleRangeProof, func(d []byte) []byte {
				var rp audit.RangeProof
				json.Unmarshal(d, &rp)
				rp.Left[0][0] ^= 1
				out, _ := json.Marshal(rp)
				return out
			}))
		}, []string{"another root"}},
		{"manifest claims another session", func() []byte {
			return edit(t, exportRange(t, e, 50, 150), audit.BundleManifest, func(d []byte) []byte {
				return bytes.Replace(d, []byte(`"since"`), []byte(`"session": "sess-0001", "since"`), 1)
			})
		}, []string{"claims both a session and a time filter", "claims the records of session"}},
		{"not a tar", func() []byte { return []byte("hello") }, []string{"not a readable tar archive"}},
		{"empty", func() []byte { return nil }, []string{"missing from the bundle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.bundle()
			rep := verify(t, b, e.v, nil)
			if tc.want == nil {
				return
			}
			if rep.OK {
				t.Fatal("tampered bundle verifies")
			}
			all := failures(rep)
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no failure mentions %q; failures:\n%s", w, all)
				}
			}
			t.Logf("failures:\n%s", all)
		})
	}
}

// TestVerifyRollback restores an earlier copy of the store and lets the
// log grow a different history: a checkpoint taken before catches it.
func TestVerifyRollback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.db")
	e := newEvidenceLog(t, path)
	e.start(t)
	e.sessions(t, 10, 0)
	e.l.Close()
	// The rollback restores the log file and its journal, which would
	// otherwise store the later records again.
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	savedJournal, err := os.ReadFile(path + audit.JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	e.open(t)
	e.sessions(t, 10, 0)
	cp, err := e.l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	trusted := cp.Note
	small := e.l.Size()

	// An honest export later verifies against the trusted checkpoint.
	e.sessions(t, 5, 0)
	rep := mustVerify(t, e.export(t, audit.ExportOptions{}), e.v, trusted)
	if !strings.Contains(rep.Trusted, "recomputed") {
		t.Errorf("trusted: %q", rep.Trusted)
	}
	e.l.Close()

	// Roll back: restore the copy and grow again.
	if err := os.WriteFile(path, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+audit.JournalSuffix, savedJournal, 0o600); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	e.sessions(t, 3, 0)
	b := e.export(t, audit.ExportOptions{})
	// Alone, the bundle is self-consistent...
	mustVerify(t, b, e.v, nil)
	// ...but not with what the auditor saw before: smaller tree.
	rep = verify(t, b, e.v, trusted)
	if rep.OK || !strings.Contains(failures(rep), "trusted checkpoint: covers") || !strings.Contains(failures(rep), "rolled back") {
		t.Fatalf("rollback to a smaller tree not detected:\n%s", failures(rep))
	}
	// Grown past the trusted size: a different root at that size.
	e.sessions(t, 20, 0)
	if e.l.Size() <= small {
		t.Fatal("did not grow past the trusted size")
	}
	rep = verify(t, e.export(t, audit.ExportOptions{}), e.v, trusted)
	if rep.OK || !strings.Contains(failures(rep), "different root") {
		t.Fatalf("rewritten history not detected:\n%s", failures(rep))
	}
	t.Logf("failures:\n%s", failures(rep))
}

// TestVerifyTrustedOutsideRange needs a consistency proof for a trusted
// checkpoint outside the exported records.
func TestVerifyTrustedOutsideRange(t *testing.T) {
	e := newEvidenceLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.start(t)
	e.sessions(t, 5, 0)
	cp, _ := e.l.Checkpoint(context.Background())
	e.sessions(t, 5, 0)
	later, _ := e.l.Read(cp.Size+10, 1)
	r, _ := later[0].Record()
	mid := r.Time
	b := e.export(t, audit.ExportOptions{Since: mid})
	rep := verify(t, b, e.v, cp.Note)
	if rep.OK || !strings.Contains(failures(rep), "--prove-from") {
		t.Fatalf("trusted checkpoint outside the range accepted:\n%s", failures(rep))
	}
	b = e.export(t, audit.ExportOptions{Since: mid, ProveFrom: []uint64{cp.Size}})
	rep = mustVerify(t, b, e.v, cp.Note)
	if !strings.Contains(rep.Trusted, "by proof") {
		t.Errorf("trusted: %q", rep.Trusted)
	}
	// A trusted checkpoint of another log (a new epoch) is refused.
	other := newEvidenceLog(t, filepath.Join(t.TempDir(), "audit.db"))
	other.start(t)
	ocp, _ := other.l.Checkpoint(context.Background())
	rep = verify(t, e.export(t, audit.ExportOptions{}), e.v, ocp.Note)
	if rep.OK || !strings.Contains(failures(rep), "new log") {
		t.Fatalf("trusted checkpoint of another log accepted:\n%s", failures(rep))
	}
}

// TestVerifySemantics checks the semantic rules on records a faulty or
// malicious writer could produce (all properly signed).
func TestVerifySemantics(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records []*audit.Record
		fail    string
		warn    string
	}{
		{"end without start", []*audit.Record{{Kind: audit.KindSessionEnd, Session: "a"}}, "never started", ""},
		{"statement after end", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"},
			{Kind: audit.KindSessionEnd, Session: "a"}, {Kind: audit.KindStatement, Session: "a"}}, "after its end", ""},
		{"started twice", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"}, {Kind: audit.KindSessionStart, Session: "a"}}, "starts again", ""},
		{"result without statement", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"}, {Kind: audit.KindResult, Session: "a"}}, "without a prior statement", ""},
		{"decision without request", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"}, {Kind: audit.KindApprovalDecision, Session: "a"}}, "without a prior request", ""},
		{"votes and final decision match their request", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"},
			{Kind: audit.KindApprovalRequest, Session: "a", Detail: map[string]string{"approval": "ap-1"}},
			{Kind: audit.KindApprovalDecision, Session: "a", Detail: map[string]string{"approval": "ap-1", "final": "false"}},
			{Kind: audit.KindApprovalDecision, Session: "a", Detail: map[string]string{"approval": "ap-1"}}}, "", ""},
		{"decision for another session's approval", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"},
			{Kind: audit.KindSessionStart, Session: "b"},
			{Kind: audit.KindApprovalRequest, Session: "a", Detail: map[string]string{"approval": "ap-1"}},
			{Kind: audit.KindApprovalDecision, Session: "b", Detail: map[string]string{"approval": "ap-1"}}}, "approval decision ap-1 in session b without a prior request", ""},
		{"statement without session", []*audit.Record{{Kind: audit.KindStatement}}, "without a session", ""},
		{"unknown kind", []*audit.Record{{Kind: "session.teleport", Session: "a"}}, `kind "session.teleport" is unknown`, ""},
		{"crash cuts a session", []*audit.Record{{Kind: audit.KindAgentStart}, {Kind: audit.KindSessionStart, Session: "a"},
			{Kind: audit.KindAgentStart}}, "", "cut them (a)"},
		{"statement of a cut session", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"},
			{Kind: audit.KindAgentStart}, {Kind: audit.KindStatement, Session: "a"}}, "daemon restart had cut", ""},
		{"clock not synchronised", []*audit.Record{{Kind: audit.KindHeartbeat, Detail: map[string]string{"clock_sync": "unsynchronised"}}}, "", "not synchronised"},
		{"heartbeat gap", []*audit.Record{{Kind: audit.KindHeartbeat, Time: time.Now().Add(-time.Hour)},
			{Kind: audit.KindHeartbeat, Time: time.Now()}}, "", "no heartbeat for 1h0m0s"},
		{"open session is fine", []*audit.Record{{Kind: audit.KindSessionStart, Session: "a"}, {Kind: audit.KindStatement, Session: "a"}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEvidenceLog(t, filepath.Join(t.TempDir(), "audit.db"))
			for _, r := range tc.records {
				e.add(t, r)
			}
			rep := verify(t, e.export(t, audit.ExportOptions{}), e.v, nil)
			all := failures(rep)
			if tc.fail == "" && !rep.OK {
				t.Fatalf("failures:\n%s", all)
			}
			if tc.fail != "" && !strings.Contains(all, tc.fail) {
				t.Fatalf("no failure mentions %q:\n%s", tc.fail, all)
			}
			var warns []string
			for _, w := range rep.Warnings {
				warns = append(warns, w.String())
			}
			if tc.warn != "" && !strings.Contains(strings.Join(warns, "\n"), tc.warn) {
				t.Fatalf("no warning mentions %q: %v", tc.warn, warns)
			}
			if tc.warn == "" && tc.fail == "" && len(warns) > 0 {
				t.Fatalf("warnings: %v", warns)
			}
		})
	}
}

// TestExportReadOnly exports from a stopped log and covers only what was
// signed.
func TestExportReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	e := newEvidenceLog(t, path)
	e.start(t)
	e.sessions(t, 3, 0)
	size := e.l.Size()
	e.l.Close() // signs the last records
	ro := openLog(t, path, audit.Options{ReadOnly: true})
	rep := mustVerify(t, exportBundle(t, ro, audit.ExportOptions{}), e.v, nil)
	if rep.TreeSize != size || rep.End != size {
		t.Fatalf("read-only export covers [%d,%d) of %d, log size %d", rep.Begin, rep.End, rep.TreeSize, size)
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// TestVerifyLongAndPartialLines: a line longer than any record, and bytes
// after the last newline, are reported where they are.
func TestVerifyLongAndPartialLines(t *testing.T) {
	e := newEvidenceLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.start(t)
	e.sessions(t, 2, 0)
	good := e.export(t, audit.ExportOptions{})
	long := editLines(t, good, func(ls [][]byte) [][]byte {
		return append(ls[:3], append([][]byte{bytes.Repeat([]byte("x"), audit.MaxRecordSize+10)}, ls[3:]...)...)
	})
	rep := verify(t, long, e.v, nil)
	if all := failures(rep); rep.OK || !strings.Contains(all, "records.jsonl line 4 seq 3: not a valid record: line of 4194314 bytes, longer than the largest record") ||
		!strings.Contains(all, "line 5 seq 3: seq 3 where 4 was expected") {
		t.Fatalf("long line:\n%s", all)
	}
	huge := editLines(t, good, func(ls [][]byte) [][]byte {
		return append(ls[:3], append([][]byte{bytes.Repeat([]byte("x"), audit.MaxRecordSize+3<<20)}, ls[3:]...)...)
	})
	rep = verify(t, huge, e.v, nil)
	if all := failures(rep); rep.OK || !strings.Contains(all, "records.jsonl line 4: line longer than the largest record") ||
		!strings.Contains(all, "line 5 seq 3: seq 3 where 4 was expected") {
		t.Fatalf("huge line:\n%s", all)
	}
	partial := edit(t, good, audit.BundleRecords, func(d []byte) []byte { return d[:len(d)-1] })
	rep = verify(t, partial, e.v, nil)
	if all := failures(rep); rep.OK || !strings.Contains(all, "bytes after the last newline") {
		t.Fatalf("partial line:\n%s", all)
	}
}

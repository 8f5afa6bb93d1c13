// SPDX-License-Identifier: Apache-2.0

package evidence_test

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
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

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
	return edit(t, b, evidence.BundleRecords, func(d []byte) []byte {
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
		if f.name == evidence.BundleManifest {
			json.Unmarshal(f.data, &m)
		}
	}
	for _, f := range files {
		if f.name != evidence.BundleManifest {
			m["files"].(map[string]any)[f.name] = sha(f.data)
		}
	}
	for i := range files {
		if files[i].name == evidence.BundleManifest {
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
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.Start(t)
	e.Sessions(t, 40, 7)
	b := e.Export(t, evidence.ExportOptions{Tool: "test"})
	rep := evidencetest.MustVerify(t, b, e.Verifier, nil)
	if rep.Begin != 0 || rep.End != e.Log.Size() || rep.Records != e.Log.Size() || rep.TreeSize != e.Log.Size() {
		t.Errorf("report range [%d,%d) of %d, %d records; log size %d", rep.Begin, rep.End, rep.TreeSize, rep.Records, e.Log.Size())
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
	var m evidence.Manifest
	if err := json.Unmarshal(fileOf(t, b, evidence.BundleManifest), &m); err != nil {
		t.Fatal(err)
	}
	if m.Format != evidence.BundleFormat || m.Log != e.Log.ID() || m.Records != e.Log.Size() || len(m.Files) != 6+len(m.Checkpoints) ||
		m.HostKey != evidencetest.VerifierKey {
		t.Errorf("manifest %+v", m)
	}
	// Records are the exact stored bytes.
	entries, _ := e.Log.Read(0, 10000)
	var want bytes.Buffer
	for _, en := range entries {
		want.Write(en.Bytes)
		want.WriteByte('\n')
	}
	if !bytes.Equal(fileOf(t, b, evidence.BundleRecords), want.Bytes()) {
		t.Error("records.jsonl is not the stored bytes")
	}
	// The same files in another order verify too (a re-packed bundle).
	files := untar(t, b)
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	evidencetest.MustVerify(t, retar(t, files), e.Verifier, nil)
}

func TestExportFilters(t *testing.T) {
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.Start(t)
	e.Sessions(t, 10, 3)
	mid := time.Now()
	time.Sleep(10 * time.Millisecond)
	e.Sessions(t, 10, 3)

	// A session, with its interleaved neighbours.
	id := e.IDs[4]
	b := e.Export(t, evidence.ExportOptions{Session: id})
	rep := evidencetest.MustVerify(t, b, e.Verifier, nil)
	if rep.Records != 8 || rep.Sessions.Started != 1 || rep.Sessions.Ended != 1 {
		t.Errorf("session export: %d records, sessions %+v", rep.Records, rep.Sessions)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(fileOf(t, b, evidence.BundleRecords)), []byte("\n")) {
		r, err := audit.Decode(line)
		if err != nil || r.Session != id {
			t.Fatalf("session export holds %s", line)
		}
	}
	// Since: from the middle, sessions start inside the range.
	rep = evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{Since: mid}), e.Verifier, nil)
	if rep.Sessions.Started != 10 || rep.Begin == 0 || rep.End != e.Log.Size() {
		t.Errorf("since export: [%d,%d), sessions %+v", rep.Begin, rep.End, rep.Sessions)
	}
	// Until: the first half.
	rep = evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{Until: mid}), e.Verifier, nil)
	if rep.Sessions.Started != 10 || rep.Begin != 0 || rep.End >= e.Log.Size() || rep.TreeSize != e.Log.Size() {
		t.Errorf("until export: [%d,%d) of %d, sessions %+v", rep.Begin, rep.End, rep.TreeSize, rep.Sessions)
	}
	// A window that cuts a session: its end without its start is fine
	// when the range starts after 0.
	rep = evidencetest.MustVerify(t, exportRange(t, e, 5, e.Log.Size()), e.Verifier, nil)
	if rep.Sessions.StartedBefore != 1 {
		t.Errorf("cut window: sessions %+v", rep.Sessions)
	}
	if _, err := evidence.PrepareExport(context.Background(), e.Log, evidence.ExportOptions{Session: "nope"}); !errors.Is(err, audit.ErrNoRecords) {
		t.Errorf("unknown session: %v", err)
	}
	if _, err := evidence.PrepareExport(context.Background(), e.Log, evidence.ExportOptions{Session: id, Since: mid}); err == nil {
		t.Error("session and since together accepted")
	}
}

// exportRange exports seq [begin, end) by time: the records' own times.
func exportRange(t testing.TB, e *evidencetest.KeyedLog, begin, end uint64) []byte {
	t.Helper()
	first, _ := e.Log.Read(begin, 1)
	r, _ := first[0].Record()
	opts := evidence.ExportOptions{Since: r.Time}
	if end < e.Log.Size() {
		after, _ := e.Log.Read(end, 1)
		ra, _ := after[0].Record()
		opts.Until = ra.Time
	}
	return e.Export(t, opts)
}

// TestVerifyDetectsTampering changes a valid bundle in every way an
// attacker might and checks that each is detected, with a message that says
// what and where.
func TestVerifyDetectsTampering(t *testing.T) {
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.Start(t)
	e.Sessions(t, 30, 5)
	good := e.Export(t, evidence.ExportOptions{})
	evidencetest.MustVerify(t, good, e.Verifier, nil)
	n := int(e.Log.Size())
	otherKey, _ := evidencetest.Key(t, evidencetest.OtherSignerKey)

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
			return fixManifest(t, edit(t, good, evidence.BundleCheckpoint, func(d []byte) []byte {
				text := d[:bytes.LastIndex(d, []byte("\n\n"))+1]
				msg, _ := note.Sign(&note.Note{Text: string(text)}, otherKey.Signer)
				return msg
			}))
		}, []string{"checkpoint.note: not signed by tollgate/test-host+701737bc (signed by tollgate/test-host+b60d7c5a)"}},
		{"checkpoint size changed", func() []byte {
			return fixManifest(t, edit(t, good, evidence.BundleCheckpoint, func(d []byte) []byte {
				return bytes.Replace(d, []byte(fmt.Sprintf("\n%d\n", n)), []byte(fmt.Sprintf("\n%d\n", n-1)), 1)
			}))
		}, []string{"checkpoint.note: signature of tollgate/test-host+701737bc does not verify"}},
		{"manifest count changed", func() []byte {
			return edit(t, good, evidence.BundleManifest, func(d []byte) []byte {
				return bytes.Replace(d, []byte(fmt.Sprintf(`"records": %d`, n)), []byte(fmt.Sprintf(`"records": %d`, n+1)), 1)
			})
		}, []string{"MANIFEST.json: claims records"}},
		{"manifest hash changed", func() []byte {
			return edit(t, good, evidence.BundleManifest, func(d []byte) []byte {
				i := bytes.Index(d, []byte(`"sha256:`)) + 8
				d[i] ^= 1
				return d
			})
		}, []string{"MANIFEST.json: sha256 of"}},
		{"manifest lists a missing file", func() []byte {
			files := untar(t, good)
			var out []tarFile
			for _, f := range files {
				if f.name != evidence.BundleVerifyMD {
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
				if !strings.HasPrefix(f.name, evidence.BundleCheckpointsDir) || len(out) > 100 {
					out = append(out, f)
				}
			}
			return fixManifest(t, retar(t, out))
		}, []string{"MANIFEST.json: lists checkpoints"}},
		{"range proof hash changed", func() []byte {
			return fixManifest(t, edit(t, exportRange(t, e, 50, 150), evidence.BundleRangeProof, func(d []byte) []byte {
				var rp evidence.RangeProof
				json.Unmarshal(d, &rp)
				rp.Left[0][0] ^= 1
				out, _ := json.Marshal(rp)
				return out
			}))
		}, []string{"another root"}},
		{"manifest claims another session", func() []byte {
			return edit(t, exportRange(t, e, 50, 150), evidence.BundleManifest, func(d []byte) []byte {
				return bytes.Replace(d, []byte(`"since"`), []byte(`"session": "sess-0001", "since"`), 1)
			})
		}, []string{"claims both a session and a time filter", "claims the records of session"}},
		{"not a tar", func() []byte { return []byte("hello") }, []string{"not a readable tar archive"}},
		{"empty", func() []byte { return nil }, []string{"missing from the bundle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.bundle()
			rep := evidencetest.Verify(t, b, e.Verifier, nil)
			if tc.want == nil {
				return
			}
			if rep.OK {
				t.Fatal("tampered bundle verifies")
			}
			all := evidencetest.Failures(rep)
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
	e := evidencetest.NewKeyedLog(t, path)
	e.Start(t)
	e.Sessions(t, 10, 0)
	e.Log.Close()
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
	e.Open(t)
	e.Sessions(t, 10, 0)
	cp, err := e.Log.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	trusted := cp.Note
	small := e.Log.Size()

	// An honest export later verifies against the trusted checkpoint.
	e.Sessions(t, 5, 0)
	rep := evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{}), e.Verifier, trusted)
	if !strings.Contains(rep.Trusted, "recomputed") {
		t.Errorf("trusted: %q", rep.Trusted)
	}
	e.Log.Close()

	// Roll back: restore the copy and grow again.
	if err := os.WriteFile(path, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+audit.JournalSuffix, savedJournal, 0o600); err != nil {
		t.Fatal(err)
	}
	e.Open(t)
	e.Sessions(t, 3, 0)
	b := e.Export(t, evidence.ExportOptions{})
	// Alone, the bundle is self-consistent...
	evidencetest.MustVerify(t, b, e.Verifier, nil)
	// ...but not with what the auditor saw before: smaller tree.
	rep = evidencetest.Verify(t, b, e.Verifier, trusted)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "trusted checkpoint: covers") || !strings.Contains(evidencetest.Failures(rep), "rolled back") {
		t.Fatalf("rollback to a smaller tree not detected:\n%s", evidencetest.Failures(rep))
	}
	// Grown past the trusted size: a different root at that size.
	e.Sessions(t, 20, 0)
	if e.Log.Size() <= small {
		t.Fatal("did not grow past the trusted size")
	}
	rep = evidencetest.Verify(t, e.Export(t, evidence.ExportOptions{}), e.Verifier, trusted)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "different root") {
		t.Fatalf("rewritten history not detected:\n%s", evidencetest.Failures(rep))
	}
	t.Logf("failures:\n%s", evidencetest.Failures(rep))
}

// TestVerifyTrustedOutsideRange needs a consistency proof for a trusted
// checkpoint outside the exported records.
func TestVerifyTrustedOutsideRange(t *testing.T) {
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.Start(t)
	e.Sessions(t, 5, 0)
	cp, _ := e.Log.Checkpoint(context.Background())
	e.Sessions(t, 5, 0)
	later, _ := e.Log.Read(cp.Size+10, 1)
	r, _ := later[0].Record()
	mid := r.Time
	b := e.Export(t, evidence.ExportOptions{Since: mid})
	rep := evidencetest.Verify(t, b, e.Verifier, cp.Note)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "--prove-from") {
		t.Fatalf("trusted checkpoint outside the range accepted:\n%s", evidencetest.Failures(rep))
	}
	b = e.Export(t, evidence.ExportOptions{Since: mid, ProveFrom: []uint64{cp.Size}})
	rep = evidencetest.MustVerify(t, b, e.Verifier, cp.Note)
	if !strings.Contains(rep.Trusted, "by proof") {
		t.Errorf("trusted: %q", rep.Trusted)
	}
	// A trusted checkpoint of another log (a new epoch) is refused.
	other := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	other.Start(t)
	ocp, _ := other.Log.Checkpoint(context.Background())
	rep = evidencetest.Verify(t, e.Export(t, evidence.ExportOptions{}), e.Verifier, ocp.Note)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "new log") {
		t.Fatalf("trusted checkpoint of another log accepted:\n%s", evidencetest.Failures(rep))
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
			e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
			for _, r := range tc.records {
				e.Add(t, r)
			}
			rep := evidencetest.Verify(t, e.Export(t, evidence.ExportOptions{}), e.Verifier, nil)
			all := evidencetest.Failures(rep)
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
	e := evidencetest.NewKeyedLog(t, path)
	e.Start(t)
	e.Sessions(t, 3, 0)
	size := e.Log.Size()
	e.Log.Close() // signs the last records
	ro := evidencetest.OpenLog(t, path, audit.Options{ReadOnly: true})
	rep := evidencetest.MustVerify(t, evidencetest.ExportBundle(t, ro, evidence.ExportOptions{}), e.Verifier, nil)
	if rep.TreeSize != size || rep.End != size {
		t.Fatalf("read-only export covers [%d,%d) of %d, log size %d", rep.Begin, rep.End, rep.TreeSize, size)
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// TestVerifyLongAndPartialLines: a line longer than any record, and bytes
// after the last newline, are reported where they are.
func TestVerifyLongAndPartialLines(t *testing.T) {
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.Start(t)
	e.Sessions(t, 2, 0)
	good := e.Export(t, evidence.ExportOptions{})
	long := editLines(t, good, func(ls [][]byte) [][]byte {
		return append(ls[:3], append([][]byte{bytes.Repeat([]byte("x"), audit.MaxRecordSize+10)}, ls[3:]...)...)
	})
	rep := evidencetest.Verify(t, long, e.Verifier, nil)
	if all := evidencetest.Failures(rep); rep.OK || !strings.Contains(all, "records.jsonl line 4 seq 3: not a valid record: line of 4194314 bytes, longer than the largest record") ||
		!strings.Contains(all, "line 5 seq 3: seq 3 where 4 was expected") {
		t.Fatalf("long line:\n%s", all)
	}
	huge := editLines(t, good, func(ls [][]byte) [][]byte {
		return append(ls[:3], append([][]byte{bytes.Repeat([]byte("x"), audit.MaxRecordSize+3<<20)}, ls[3:]...)...)
	})
	rep = evidencetest.Verify(t, huge, e.Verifier, nil)
	if all := evidencetest.Failures(rep); rep.OK || !strings.Contains(all, "records.jsonl line 4: line longer than the largest record") ||
		!strings.Contains(all, "line 5 seq 3: seq 3 where 4 was expected") {
		t.Fatalf("huge line:\n%s", all)
	}
	partial := edit(t, good, evidence.BundleRecords, func(d []byte) []byte { return d[:len(d)-1] })
	rep = evidencetest.Verify(t, partial, e.Verifier, nil)
	if all := evidencetest.Failures(rep); rep.OK || !strings.Contains(all, "bytes after the last newline") {
		t.Fatalf("partial line:\n%s", all)
	}
}

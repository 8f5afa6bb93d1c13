// SPDX-License-Identifier: Apache-2.0

package evidence_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// newWitness returns a collector cosigner and its verifier.
func newWitness(t *testing.T, name string) (*collector.Cosigner, note.Verifier) {
	t.Helper()
	skey, vkey, err := collector.GenerateCosignKey(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := collector.ParseCosigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := collector.NewCosignVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return c, v
}

// cosignedAt signs a checkpoint of e's log at size with the host key, as
// the shipper does, and has w cosign it, as the collector does.
func cosignedAt(t *testing.T, e *evidencetest.KeyedLog, size uint64, w *collector.Cosigner) []byte {
	t.Helper()
	root, err := e.Log.Root(size)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.SignCheckpoint(e.Log.ID(), size, root, time.Now(), e.Key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	line, err := w.Cosign(cp.Note)
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(cp.Note), line...)
}

func verifyWitnessed(t *testing.T, b []byte, v note.Verifier, witnesses ...note.Verifier) *evidence.VerifyReport {
	t.Helper()
	rep, err := evidence.Verify(bytes.NewReader(b), evidence.VerifyOptions{Key: v, Witnesses: witnesses})
	if err != nil && !errors.Is(err, evidence.ErrVerifyFailed) {
		t.Fatal(err)
	}
	return rep
}

// TestWitnessCosignature: a bundle ending at a checkpoint the collector
// cosigned verifies with the collector's key as a required witness; a
// bundle without that cosignature, with a forged one, or checked against
// another witness's key fails.
func TestWitnessCosignature(t *testing.T) {
	ctx := context.Background()
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.Start(t)
	e.Sessions(t, 10, 0)
	w, wv := newWitness(t, "collector.example")
	_, ov := newWitness(t, "collector.example")
	cosigned := [][]byte{cosignedAt(t, e, 20, w), cosignedAt(t, e, 35, w)}
	e.Sessions(t, 3, 0) // the shipping lag: records not cosigned yet

	// Witnessed: the bundle ends at the newest cosigned checkpoint.
	b := e.Export(t, evidence.ExportOptions{Witnessed: true, Cosigned: cosigned})
	rep := verifyWitnessed(t, b, e.Verifier, wv)
	if !rep.OK || rep.TreeSize != 35 || rep.End != 35 || len(rep.Witnesses) != 1 {
		t.Fatalf("witnessed bundle: ok %v, tree %d, end %d, witnesses %v\n%s", rep.OK, rep.TreeSize, rep.End, rep.Witnesses, evidencetest.Failures(rep))
	}
	// Without witnesses asked for, it is an ordinary bundle.
	evidencetest.MustVerify(t, b, e.Verifier, nil)

	// Another witness's key: its cosignature is missing.
	rep = verifyWitnessed(t, b, e.Verifier, wv, ov)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "no cosignature by witness") {
		t.Fatalf("witness that did not cosign accepted:\n%s", evidencetest.Failures(rep))
	}
	// A bundle signed now has no cosignature.
	rep = verifyWitnessed(t, e.Export(t, evidence.ExportOptions{}), e.Verifier, wv)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "no cosignature by witness") {
		t.Fatalf("unwitnessed bundle accepted:\n%s", evidencetest.Failures(rep))
	}
	// A cosignature line whose signature does not verify.
	forged := edit(t, b, evidence.BundleCheckpoint, func(n []byte) []byte {
		i := bytes.LastIndex(n, []byte("— collector.example "))
		j := i + len("— collector.example ") + 20
		n = bytes.Clone(n)
		if n[j] == 'A' {
			n[j] = 'B'
		} else {
			n[j] = 'A'
		}
		return n
	})
	rep = verifyWitnessed(t, fixManifest(t, forged), e.Verifier, wv)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "does not verify") {
		t.Fatalf("forged cosignature accepted:\n%s", evidencetest.Failures(rep))
	}
	// The cosignature of another checkpoint moved onto this one.
	moved := edit(t, b, evidence.BundleCheckpoint, func(n []byte) []byte {
		first := cosigned[0]
		line := first[bytes.LastIndex(first, []byte("— collector.example ")):]
		return append(n[:bytes.LastIndex(n, []byte("— collector.example "))], line...)
	})
	rep = verifyWitnessed(t, fixManifest(t, moved), e.Verifier, wv)
	if rep.OK || !strings.Contains(evidencetest.Failures(rep), "does not verify") {
		t.Fatalf("cosignature of another checkpoint accepted:\n%s", evidencetest.Failures(rep))
	}

	// Retention's bound: the newest cosigned size, checked against the tree.
	if n, err := e.Log.CosignedSize(cosigned); err != nil || n != 35 {
		t.Fatalf("cosigned size: %d, %v", n, err)
	}
	if _, err := e.Log.CosignedSize(nil); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("cosigned size of nothing: %v", err)
	}
	otherLog := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	otherLog.Start(t)
	otherLog.Sessions(t, 10, 0)
	if _, err := e.Log.CosignedSize([][]byte{cosignedAt(t, otherLog, 50, w)}); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("cosigned size from another log's checkpoint: %v", err)
	}

	// Nothing cosigned: a witnessed export says so.
	if _, err := evidence.PrepareExport(ctx, e.Log, evidence.ExportOptions{Witnessed: true}); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("witnessed export without cosignatures: %v", err)
	}
	// A cosigned checkpoint of another tree of this log: the log was
	// rewritten after the witness saw it.
	root, _ := e.Log.Root(20)
	bad := bytes.Clone(root)
	bad[0] ^= 1
	cp, err := audit.SignCheckpoint(e.Log.ID(), 20, bad, time.Now(), e.Key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := w.Cosign(cp.Note)
	rewritten := [][]byte{append(cp.Note, line...)}
	if _, err := evidence.PrepareExport(ctx, e.Log, evidence.ExportOptions{Witnessed: true, Cosigned: rewritten}); !errors.Is(err, audit.ErrCorrupt) {
		t.Fatalf("witnessed export of a rewritten log: %v", err)
	}
	if _, err := e.Log.CosignedSize(rewritten); !errors.Is(err, audit.ErrCorrupt) {
		t.Fatalf("cosigned size of a rewritten log: %v", err)
	}
}

// logSource reads records from a Log, as the collector's store does from
// PostgreSQL.
type logSource struct{ l *audit.Log }

func (s logSource) EachRecord(_ context.Context, begin, end uint64, fn func(uint64, []byte) error) error {
	for next := begin; next < end; {
		es, err := s.l.Read(next, int(end-next))
		if err != nil {
			return err
		}
		for _, e := range es {
			if err := fn(e.Seq, e.Bytes); err != nil {
				return err
			}
			next++
		}
	}
	return nil
}

// TestNewExport: a bundle planned from another store (the collector's)
// verifies, with the witness's cosignature; a plan whose records or proof
// do not lead to the checkpoint's root is refused before anything is
// written.
func TestNewExport(t *testing.T) {
	ctx := context.Background()
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	e.Start(t)
	e.Sessions(t, 40, 0)
	w, wv := newWitness(t, "collector.example")
	n := e.Log.Size()
	cp, err := audit.OpenCheckpoint(cosignedAt(t, e, n, w), e.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	plan := func(begin, end uint64) evidence.BundlePlan {
		left, right, err := e.Log.RangeProof(begin, end, n)
		if err != nil {
			t.Fatal(err)
		}
		rp := evidence.RangeProof{Begin: begin, End: end, Size: n}
		for _, h := range left {
			rp.Left = append(rp.Left, h)
		}
		for _, h := range right {
			rp.Right = append(rp.Right, h)
		}
		return evidence.BundlePlan{Log: e.Log.ID(), HostKey: e.Key.VerifierKey, Checkpoint: cp, Range: rp,
			Records: logSource{e.Log}, Tool: "test"}
	}
	for _, r := range [][2]uint64{{0, n}, {17, 250}, {n - 1, n}} {
		ex, err := evidence.NewExport(ctx, plan(r[0], r[1]))
		if err != nil {
			t.Fatalf("plan %v: %v", r, err)
		}
		var buf bytes.Buffer
		if _, err := ex.WriteTo(ctx, &buf); err != nil {
			t.Fatal(err)
		}
		rep := verifyWitnessed(t, buf.Bytes(), e.Verifier, wv)
		if !rep.OK || rep.Begin != r[0] || rep.End != r[1] {
			t.Fatalf("bundle of %v: ok %v [%d, %d)\n%s", r, rep.OK, rep.Begin, rep.End, evidencetest.Failures(rep))
		}
	}
	bad := plan(17, 250)
	bad.Range.Left[0][3] ^= 1
	if _, err := evidence.NewExport(ctx, bad); !errors.Is(err, audit.ErrCorrupt) {
		t.Fatalf("plan with a wrong left hash: %v", err)
	}
	short := plan(17, 250)
	short.Range.End = 249
	if _, err := evidence.NewExport(ctx, short); err == nil {
		t.Fatal("plan whose range proof does not fit accepted")
	}
}

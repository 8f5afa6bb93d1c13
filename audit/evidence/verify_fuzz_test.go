// SPDX-License-Identifier: Apache-2.0

package evidence_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// seedDir holds genuine bundles signed with the fixed test key. Fuzzing
// runs the target's setup in every worker process, so the genuine bundles
// must be the same in all of them: they are files, made once (or again with
// TOLLGATE_UPDATE_SEEDS=1).
const seedDir = "testdata/bundles"

// fuzzSeeds returns small genuine bundles: a whole log, a time range with a
// proof from an extra size, and a session.
func fuzzSeeds(f *testing.F) [][]byte {
	names := []string{"whole.tar", "range.tar", "session.tar"}
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(seedDir, n))
		if err != nil || os.Getenv("TOLLGATE_UPDATE_SEEDS") == "1" {
			out = nil
			break
		}
		out = append(out, b)
	}
	if out != nil {
		return out
	}
	out = makeSeeds(f)
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		f.Fatal(err)
	}
	for i, n := range names {
		if err := os.WriteFile(filepath.Join(seedDir, n), out[i], 0o644); err != nil {
			f.Fatal(err)
		}
	}
	return out
}

// makeSeeds builds the genuine bundles.
func makeSeeds(f *testing.F) [][]byte {
	e := evidencetest.NewKeyedLog(f, filepath.Join(f.TempDir(), "audit.db"))
	e.Start(f)
	e.Sessions(f, 6, 2)
	e.Add(f, &audit.Record{Kind: audit.KindSessionStart, Session: "open"})
	e.Add(f, &audit.Record{Kind: audit.KindHeartbeat, Detail: map[string]string{"clock_sync": "unsynchronised"}})
	whole := e.Export(f, evidence.ExportOptions{})
	first, _ := e.Log.Read(9, 1)
	r, _ := first[0].Record()
	ranged := e.Export(f, evidence.ExportOptions{Since: r.Time, ProveFrom: []uint64{3}})
	session := e.Export(f, evidence.ExportOptions{Session: e.IDs[3]})
	return [][]byte{whole, ranged, session}
}

// bundleContent is what a bundle says, independent of tar framing and
// manifest formatting: the file contents, and the manifest decoded with
// its informational fields cleared.
func bundleContent(t testing.TB, b []byte) (map[string]string, evidence.Manifest, bool) {
	files := map[string]string{}
	var m evidence.Manifest
	for _, f := range untar(t, b) {
		if f.name == evidence.BundleManifest {
			if err := json.Unmarshal(f.data, &m); err != nil {
				return nil, m, false
			}
			m.Created, m.Tool = time.Time{}, ""
			continue
		}
		files[f.name] = string(f.data)
	}
	return files, m, true
}

// FuzzVerify feeds corrupted bundles to the reader and verifier: they must
// never crash, and whatever passes must say exactly what a genuine bundle
// said (the only differences allowed are tar framing, manifest formatting
// and the manifest's created/tool fields, which prove nothing). Seeds from
// testdata/fuzz/FuzzVerify that are not derived from this run's genuine
// bundles can only pass if they are genuine bundles of an earlier run.
func FuzzVerify(f *testing.F) {
	seeds := fuzzSeeds(f)
	type genuine struct {
		files map[string]string
		m     evidence.Manifest
	}
	var known []genuine
	for _, s := range seeds {
		f.Add(s)
		files, m, _ := bundleContent(f, s)
		known = append(known, genuine{files, m})
	}
	_, v := evidencetest.Key(f, evidencetest.SignerKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := evidence.Verify(bytes.NewReader(b), evidence.VerifyOptions{Key: v, Workers: 1})
		if err == nil && !rep.OK || err != nil && rep.OK {
			t.Fatalf("err %v with OK %v", err, rep.OK)
		}
		if !rep.OK {
			if len(rep.Failures) == 0 {
				t.Fatal("failed without a failure listed")
			}
			return
		}
		files, m, ok := bundleContent(t, b)
		if !ok {
			t.Fatal("verified bundle has an undecodable manifest")
		}
		for _, g := range known {
			if reflect.DeepEqual(files, g.files) && reflect.DeepEqual(m, g.m) {
				return
			}
		}
		t.Fatalf("a bundle that differs from every genuine one verifies:\n%+v", m)
	})
}

// FuzzOpenCheckpoint: checkpoint notes never crash the parser, and only
// genuine checkpoints (those of the seed bundles) open.
func FuzzOpenCheckpoint(f *testing.F) {
	var genuine []*audit.Checkpoint
	_, v := evidencetest.Key(f, evidencetest.SignerKey)
	for _, b := range fuzzSeeds(f) {
		for _, file := range untar(f, b) {
			if file.name == evidence.BundleCheckpoint || strings.HasPrefix(file.name, evidence.BundleCheckpointsDir) {
				cp, err := audit.OpenCheckpoint(file.data, v)
				if err != nil {
					f.Fatal(err)
				}
				genuine = append(genuine, cp)
				f.Add(file.data)
			}
		}
	}
	f.Add([]byte("tollgate/x\n1\nAAAA\ntime x\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := audit.OpenCheckpoint(b, v)
		if err != nil {
			if !errors.Is(err, audit.ErrBadSignature) && !errors.Is(err, audit.ErrMalformedCheckpoint) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		for _, g := range genuine {
			// Only the signature lines can vary (note ignores
			// signatures by unknown keys).
			if c.Origin == g.Origin && c.Size == g.Size && bytes.Equal(c.Root, g.Root) && c.Time.Equal(g.Time) {
				return
			}
		}
		t.Fatalf("forged checkpoint opens: %+v", c)
	})
}

// TestSeedBundlesVerify keeps the committed genuine bundles genuine.
func TestSeedBundlesVerify(t *testing.T) {
	_, v := evidencetest.Key(t, evidencetest.SignerKey)
	for _, n := range []string{"whole.tar", "range.tar", "session.tar"} {
		b, err := os.ReadFile(filepath.Join(seedDir, n))
		if err != nil {
			t.Skipf("no seed bundles yet (run FuzzVerify once): %v", err)
		}
		evidencetest.MustVerify(t, b, v, nil)
	}
}

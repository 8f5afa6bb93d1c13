// SPDX-License-Identifier: Apache-2.0

package evidence

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/audit"
)

// Limits of the bundle reader: beyond them a bundle is refused, so that a
// hostile bundle cannot make the verifier use unbounded memory.
const (
	maxBundleFile    = 64 << 20 // any file but records.jsonl
	maxBundleEntries = 4 * maxBundleCheckpoints
	maxListed        = 100 // failures and warnings listed in a report
)

// ErrVerifyFailed is returned by Verify when the bundle does not verify; the
// report says what failed and where.
var ErrVerifyFailed = errors.New("evidence bundle does not verify")

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Key is the host's verifier key, as the auditor obtained it out of
	// band. Required.
	Key note.Verifier
	// Trusted is a checkpoint note the auditor kept from earlier
	// (optional): the bundle must be consistent with it, which detects a
	// log rolled back or rewritten behind it.
	Trusted []byte
	// Witnesses are the keys of witnesses (the collector's cosigning key,
	// C2SP cosignature/v1) each of which must have cosigned
	// checkpoint.note, so that the whole bundle is covered by a tree the
	// witness saw before the host could rewrite it. A missing or invalid
	// cosignature is a failure.
	Witnesses []note.Verifier
	// Workers is the number of goroutines hashing and parsing records;
	// zero means GOMAXPROCS.
	Workers int
}

// Problem is one failure or warning, with where it was found.
type Problem struct {
	// File is the bundle file, "" for the bundle as a whole.
	File string `json:"file,omitempty"`
	// Line is the 1-based line in records.jsonl, 0 if none.
	Line uint64 `json:"line,omitempty"`
	// Seq is the record's seq, if known.
	Seq *uint64 `json:"seq,omitempty"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// String formats the problem after where it was found: "records.jsonl
// line 8 seq 7: message".
func (p Problem) String() string {
	var where []string
	if p.File != "" {
		where = append(where, p.File)
	}
	if p.Line > 0 {
		where = append(where, "line "+strconv.FormatUint(p.Line, 10))
	}
	if p.Seq != nil {
		where = append(where, "seq "+strconv.FormatUint(*p.Seq, 10))
	}
	if len(where) == 0 {
		return p.Message
	}
	return strings.Join(where, " ") + ": " + p.Message
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// OK is true only if every check passed.
	OK bool `json:"ok"`
	// BundleSHA256 is the SHA-256 of the bundle as read (chain of
	// custody).
	BundleSHA256 string `json:"bundle_sha256"`
	// Key is the name and hash of the key checked against.
	Key string `json:"key"`
	// Log is the origin of the signed checkpoint.
	Log string `json:"log"`
	// Begin and End delimit the verified records, seq [Begin, End).
	Begin uint64 `json:"begin"`
	End   uint64 `json:"end"`
	// Records is the number of record lines read.
	Records uint64 `json:"records"`
	// TreeSize and CheckpointTime are those of checkpoint.note.
	TreeSize       uint64    `json:"tree_size"`
	CheckpointTime time.Time `json:"checkpoint_time"`
	// Checkpoints is the number of earlier checkpoints verified.
	Checkpoints int `json:"checkpoints"`
	// ConsistencyProofs is the number of consistency proofs verified.
	ConsistencyProofs int `json:"consistency_proofs"`
	// Trusted describes the check against the auditor's checkpoint.
	Trusted string `json:"trusted,omitempty"`
	// Witnesses names the witness keys whose cosignature on
	// checkpoint.note verified.
	Witnesses []string `json:"witnesses,omitempty"`
	// FirstTime and LastTime are the times of the first and last record.
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	// Kinds counts the records by kind.
	Kinds map[string]uint64 `json:"kinds"`
	// Sessions summarises the sessions seen.
	Sessions SessionSummary `json:"sessions"`
	// Failures are the checks that failed; FailuresOmitted counts those
	// beyond the listed ones.
	Failures        []Problem `json:"failures"`
	FailuresOmitted int       `json:"failures_omitted,omitempty"`
	// Warnings are facts an auditor should see that are not tampering
	// (a crash cut sessions, the clock was not synchronised).
	Warnings        []Problem `json:"warnings"`
	WarningsOmitted int       `json:"warnings_omitted,omitempty"`
	// Elapsed is how long verification took.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// SessionSummary counts sessions in a verified bundle.
type SessionSummary struct {
	// Started and Ended count session.start and session.end records.
	Started int `json:"started"`
	Ended   int `json:"ended"`
	// StartedBefore counts sessions whose start precedes the bundle.
	StartedBefore int `json:"started_before"`
	// Open counts sessions still open at the end of the bundle.
	Open int `json:"open"`
	// Interrupted counts sessions cut by a daemon restart.
	Interrupted int `json:"interrupted"`
	// Statements counts statement records.
	Statements uint64 `json:"statements"`
}

func (r *VerifyReport) fail(p Problem) {
	if len(r.Failures) >= maxListed {
		r.FailuresOmitted++
		return
	}
	r.Failures = append(r.Failures, p)
}

func (r *VerifyReport) warn(p Problem) {
	if len(r.Warnings) >= maxListed {
		r.WarningsOmitted++
		return
	}
	r.Warnings = append(r.Warnings, p)
}

// failf adds a failure about a file.
func (r *VerifyReport) failf(file, format string, args ...any) {
	r.fail(Problem{File: file, Message: fmt.Sprintf(format, args...)})
}

// bundleFile is one small file of the bundle.
type bundleFile struct {
	data []byte
	sum  []byte
}

// verifier holds the state of one Verify.
type verifier struct {
	opts VerifyOptions
	rep  *VerifyReport

	files   map[string]*bundleFile // every file but records.jsonl
	recSum  []byte                 // sha256 of records.jsonl, nil if absent
	entries int

	// From the small files, once parsed (nil or zero until then).
	cp      *audit.Checkpoint
	rng     *RangeProof
	earlier []*audit.Checkpoint
	trusted *audit.Checkpoint
	parsed  bool

	// Records.
	recs *recordState
	// chunk is the read size for records.jsonl (verifyChunk; tests set
	// a small one to cross chunk boundaries often).
	chunk int
}

// Verify reads an evidence bundle from r and checks it as VERIFY.md
// describes, offline: signatures with opts.Key, origin, contiguous seq,
// every record against the signed root, consistency between checkpoints
// and with opts.Trusted, the manifest, and the records' semantics. It fails
// closed: anything it does not understand is a failure. The report lists
// every failure with where it was found; the error is ErrVerifyFailed if
// there is any, or a usage error (no key).
func Verify(r io.Reader, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Key == nil {
		return nil, errors.New("verify: no key given")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	rep := &VerifyReport{Kinds: map[string]uint64{}, Failures: []Problem{}, Warnings: []Problem{},
		Key: fmt.Sprintf("%s+%08x", opts.Key.Name(), opts.Key.KeyHash())}
	v := &verifier{opts: opts, rep: rep, files: map[string]*bundleFile{}, chunk: verifyChunk}

	if opts.Trusted != nil {
		cp, err := audit.OpenCheckpoint(opts.Trusted, opts.Key)
		if err != nil {
			rep.failf("trusted checkpoint", "%v", err)
		} else {
			v.trusted = cp
		}
	}

	whole := sha256.New()
	v.read(io.TeeReader(r, whole))
	// The rest of the stream (tar padding) is part of what was handed
	// over; hash it too.
	_, _ = io.Copy(io.Discard, io.TeeReader(r, whole))
	rep.BundleSHA256 = hex.EncodeToString(whole.Sum(nil))

	v.parseSmallFiles()
	v.finish()
	rep.Elapsed = time.Since(start)
	rep.OK = len(rep.Failures) == 0 && rep.FailuresOmitted == 0
	if !rep.OK {
		return rep, ErrVerifyFailed
	}
	return rep, nil
}

// read walks the tar archive.
func (v *verifier) read(r io.Reader) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			v.rep.failf("", "not a readable tar archive: %v", err)
			return
		}
		if v.entries++; v.entries > maxBundleEntries {
			v.rep.failf("", "more than %d entries: not a tollgate evidence bundle", maxBundleEntries)
			return
		}
		name := hdr.Name
		switch hdr.Typeflag {
		case tar.TypeDir:
			if d := strings.TrimSuffix(name, "/"); d == "checkpoints" || d == "proofs" {
				continue
			}
			v.rep.failf(name, "unexpected directory in the bundle")
			continue
		case tar.TypeReg:
		default:
			v.rep.failf(name, "unexpected entry of type %q (only regular files belong in a bundle)", hdr.Typeflag)
			continue
		}
		if !knownBundleFile(name) {
			v.rep.failf(name, "unexpected file: not part of a tollgate evidence bundle")
			continue
		}
		if _, dup := v.files[name]; dup || name == BundleRecords && v.recSum != nil {
			v.rep.failf(name, "appears twice in the bundle")
			continue
		}
		if name == BundleRecords {
			v.parseSmallFiles()
			v.recSum = v.readRecords(tr, hdr.Size)
			continue
		}
		if hdr.Size > maxBundleFile {
			v.rep.failf(name, "%d bytes, more than the %d a bundle file may have", hdr.Size, maxBundleFile)
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxBundleFile+1))
		if err != nil {
			v.rep.failf(name, "cannot read: %v", err)
			return
		}
		sum := sha256.Sum256(data)
		v.files[name] = &bundleFile{data: data, sum: sum[:]}
	}
}

// knownBundleFile reports whether name is a file a bundle may hold.
func knownBundleFile(name string) bool {
	switch name {
	case BundleManifest, BundleRecords, BundleCheckpoint, BundleRangeProof, BundleConsistency, BundleHostPub, BundleVerifyMD:
		return true
	}
	size, ok := checkpointFileSize(name)
	return ok && size > 0
}

// checkpointFileSize parses "checkpoints/<size>.note".
func checkpointFileSize(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, BundleCheckpointsDir)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".note")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s || path.Clean(name) != name {
		return 0, false
	}
	return n, true
}

// parseSmallFiles parses the checkpoints and the range proof as far as
// they have been read, once: the record stream needs them to check roots
// at checkpoint sizes as it goes.
func (v *verifier) parseSmallFiles() {
	if v.parsed {
		return
	}
	f := v.files[BundleCheckpoint]
	rf := v.files[BundleRangeProof]
	if f == nil || rf == nil {
		return // not yet: records.jsonl came first, or files are missing
	}
	v.parsed = true
	cp, err := audit.OpenCheckpoint(f.data, v.opts.Key)
	if err != nil {
		v.rep.failf(BundleCheckpoint, "%v", err)
	} else {
		v.cp = cp
		v.rep.Log, v.rep.TreeSize, v.rep.CheckpointTime = cp.Origin, cp.Size, cp.Time
	}
	for _, w := range v.opts.Witnesses {
		if err := checkCosigned(f.data, w); err != nil {
			v.rep.failf(BundleCheckpoint, "%v", err)
			continue
		}
		v.rep.Witnesses = append(v.rep.Witnesses, fmt.Sprintf("%s+%08x", w.Name(), w.KeyHash()))
	}
	var rp RangeProof
	if err := strictJSON(rf.data, &rp); err != nil {
		v.rep.failf(BundleRangeProof, "not a range proof: %v", err)
	} else if err := checkRangeProof(&rp); err != nil {
		v.rep.failf(BundleRangeProof, "%v", err)
	} else {
		v.rng = &rp
		v.rep.Begin, v.rep.End = rp.Begin, rp.End
		if v.cp != nil && rp.Size != v.cp.Size {
			v.rep.failf(BundleRangeProof, "proves a tree of size %d, checkpoint.note signs size %d", rp.Size, v.cp.Size)
		}
	}
	var names []string
	for name := range v.files {
		if _, ok := checkpointFileSize(name); ok {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		x, _ := checkpointFileSize(a)
		y, _ := checkpointFileSize(b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	for _, name := range names {
		size, _ := checkpointFileSize(name)
		c, err := audit.OpenCheckpoint(v.files[name].data, v.opts.Key)
		switch {
		case err != nil:
			v.rep.failf(name, "%v", err)
			continue
		case c.Size != size:
			v.rep.failf(name, "signs size %d, but the file name says %d", c.Size, size)
			continue
		case v.cp != nil && c.Origin != v.cp.Origin:
			v.rep.failf(name, "origin %q differs from checkpoint.note's %q", c.Origin, v.cp.Origin)
			continue
		case v.cp != nil && c.Size >= v.cp.Size:
			v.rep.failf(name, "size %d is not below checkpoint.note's %d", c.Size, v.cp.Size)
			continue
		case v.rng != nil && (c.Size < v.rng.Begin || c.Size > v.rng.End):
			v.rep.failf(name, "size %d is outside the exported range [%d, %d]", c.Size, v.rng.Begin, v.rng.End)
			continue
		}
		v.earlier = append(v.earlier, c)
	}
}

// checkCosigned checks that the note msg carries a valid signature by the
// witness key w (other signatures are the host's and other witnesses').
func checkCosigned(msg []byte, w note.Verifier) error {
	_, err := note.Open(msg, note.VerifierList(w))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unverified):
		return fmt.Errorf("no cosignature by witness %s+%08x: the checkpoint was not cosigned by it (export with --witnessed?)", w.Name(), w.KeyHash())
	case errors.As(err, &invalid):
		return fmt.Errorf("the cosignature of witness %s+%08x does not verify", w.Name(), w.KeyHash())
	default:
		return fmt.Errorf("cosignature of witness %s+%08x: %v", w.Name(), w.KeyHash(), err)
	}
}

// checkRangeProof checks that the hash counts fit the compact ranges.
func checkRangeProof(rp *RangeProof) error {
	if rp.Begin > rp.End || rp.End > rp.Size {
		return fmt.Errorf("range [%d, %d) does not fit a tree of size %d", rp.Begin, rp.End, rp.Size)
	}
	if want := compact.RangeSize(0, rp.Begin); len(rp.Left) != want {
		return fmt.Errorf("%d left hashes, [0, %d) needs %d", len(rp.Left), rp.Begin, want)
	}
	if want := compact.RangeSize(rp.End, rp.Size); len(rp.Right) != want {
		return fmt.Errorf("%d right hashes, [%d, %d) needs %d", len(rp.Right), rp.End, rp.Size, want)
	}
	return nil
}

// strictJSON decodes b into v, refusing unknown fields and trailing data.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// finish runs every check that needs the whole bundle.
func (v *verifier) finish() {
	for _, name := range []string{BundleManifest, BundleCheckpoint, BundleRangeProof, BundleConsistency, BundleHostPub, BundleVerifyMD} {
		if v.files[name] == nil {
			v.rep.failf(name, "missing from the bundle")
		}
	}
	if v.recSum == nil {
		v.rep.failf(BundleRecords, "missing from the bundle")
	}
	if v.cp == nil || v.rng == nil {
		return // reported: nothing can be checked against a root
	}
	rs := v.recs
	if rs == nil {
		rs = v.newRecordState()
	}
	rs.finishTree()
	v.checkConsistency(rs)
	v.checkTrusted(rs)
	v.checkManifest(rs)
	v.checkHostPub()
}

// checkConsistency verifies the chain of checkpoints with the consistency
// proofs, and that no proof is unaccounted for.
func (v *verifier) checkConsistency(rs *recordState) {
	f := v.files[BundleConsistency]
	if f == nil {
		return
	}
	var cps ConsistencyProofs
	if err := strictJSON(f.data, &cps); err != nil {
		v.rep.failf(BundleConsistency, "not a list of consistency proofs: %v", err)
		return
	}
	type key struct{ from, to uint64 }
	proofs := map[key][][]byte{}
	for i, p := range cps.Proofs {
		k := key{p.From, p.To}
		if _, dup := proofs[k]; dup {
			v.rep.failf(BundleConsistency, "proof %d: a second proof from %d to %d", i, p.From, p.To)
			continue
		}
		hs := make([][]byte, len(p.Hashes))
		for j, h := range p.Hashes {
			hs[j] = h
		}
		proofs[k] = hs
	}
	chain := append(slices.Clone(v.earlier), v.cp)
	for i := 0; i+1 < len(chain); i++ {
		a, b := chain[i], chain[i+1]
		k := key{a.Size, b.Size}
		hs, ok := proofs[k]
		if !ok {
			v.rep.failf(BundleConsistency, "no consistency proof from checkpoint size %d to %d", a.Size, b.Size)
			continue
		}
		delete(proofs, k)
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, hs, a.Root, b.Root); err != nil {
			v.rep.failf(BundleConsistency, "checkpoint size %d is not consistent with size %d: %v", a.Size, b.Size, err)
			continue
		}
		v.rep.ConsistencyProofs++
	}
	v.rep.Checkpoints = len(v.earlier)
	// Proofs from sizes the exporter was asked for (--prove-from): they
	// serve a trusted checkpoint; any other proof is unexplained.
	for k, hs := range proofs {
		if k.to != v.cp.Size {
			v.rep.failf(BundleConsistency, "unexpected proof from %d to %d", k.from, k.to)
			continue
		}
		if v.trusted != nil && v.trusted.Size == k.from && k.from > 0 {
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, k.from, k.to, hs, v.trusted.Root, v.cp.Root); err != nil {
				rs.trustedFailure(fmt.Sprintf("the consistency proof from size %d does not lead from its root to the bundle's: %v", k.from, err))
			} else {
				rs.trustedProved = true
				v.rep.ConsistencyProofs++
			}
		}
		rs.provedFrom = append(rs.provedFrom, k.from)
	}
}

// checkTrusted relates the auditor's checkpoint to the bundle.
func (v *verifier) checkTrusted(rs *recordState) {
	t := v.trusted
	if t == nil {
		return
	}
	const file = "trusted checkpoint"
	switch {
	case t.Origin != v.cp.Origin:
		v.rep.failf(file, "is of log %q, the bundle of %q: the host started a new log since (the old one was lost, deleted or replaced)", t.Origin, v.cp.Origin)
		return
	case t.Size > v.cp.Size:
		v.rep.failf(file, "covers %d records, the bundle's signed tree only %d: records were removed or the store was rolled back to an earlier copy", t.Size, v.cp.Size)
		return
	case t.Size == v.cp.Size:
		if !bytes.Equal(t.Root, v.cp.Root) {
			v.rep.failf(file, "signs a different root at the same size %d: the log was rewritten (fork or rollback)", t.Size)
			return
		}
		v.rep.Trusted = fmt.Sprintf("size %d: identical to checkpoint.note", t.Size)
		return
	}
	if rs.trustedMsg != "" {
		v.rep.failf(file, "size %d: %s", t.Size, rs.trustedMsg)
		return
	}
	if root, ok := rs.roots[t.Size]; ok && rs.treeOK {
		if !bytes.Equal(root, t.Root) {
			v.rep.failf(file, "size %d: the bundle's records give a different root than the one you hold: the log was rewritten or rolled back and re-grown since", t.Size)
			return
		}
		v.rep.Trusted = fmt.Sprintf("size %d: root recomputed from the records matches", t.Size)
		return
	}
	for _, c := range v.earlier {
		if c.Size == t.Size {
			if !bytes.Equal(c.Root, t.Root) {
				v.rep.failf(file, "size %d: checkpoints/%d.note signs a different root: the log was rewritten", t.Size, t.Size)
				return
			}
			v.rep.Trusted = fmt.Sprintf("size %d: matches checkpoints/%d.note", t.Size, t.Size)
			return
		}
	}
	if rs.trustedProved {
		v.rep.Trusted = fmt.Sprintf("size %d: consistent with the bundle by proof", t.Size)
		return
	}
	v.rep.failf(file, "size %d is outside the exported records [%d, %d) and no proof from it is included; export again with --prove-from %d", t.Size, v.rng.Begin, v.rng.End, t.Size)
}

// checkManifest checks the manifest's hashes and claims.
func (v *verifier) checkManifest(rs *recordState) {
	f := v.files[BundleManifest]
	if f == nil {
		return
	}
	var m Manifest
	if err := strictJSON(f.data, &m); err != nil {
		v.rep.failf(BundleManifest, "not a manifest: %v", err)
		return
	}
	bad := func(format string, args ...any) { v.rep.failf(BundleManifest, format, args...) }
	if m.Format != BundleFormat {
		bad("format %q, this verifier knows %q", m.Format, BundleFormat)
		return
	}
	present := map[string][]byte{}
	for name, bf := range v.files {
		if name != BundleManifest {
			present[name] = bf.sum
		}
	}
	if v.recSum != nil {
		present[BundleRecords] = v.recSum
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range m.Files {
			if !yield(k) {
				return
			}
		}
	}) {
		want := m.Files[name]
		sum, ok := present[name]
		if !ok {
			bad("lists %s, which is not in the bundle", name)
			continue
		}
		if got := "sha256:" + hex.EncodeToString(sum); got != want {
			bad("sha256 of %s is %s, the manifest says %s", name, got, want)
		}
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range present {
			if !yield(k) {
				return
			}
		}
	}) {
		if _, ok := m.Files[name]; !ok {
			bad("does not list %s, which is in the bundle", name)
		}
	}
	if m.Log != v.cp.Origin {
		bad("log %q, the checkpoint's origin is %q", m.Log, v.cp.Origin)
	}
	if m.Begin != v.rng.Begin || m.End != v.rng.End || m.Records != m.End-m.Begin || m.Records != rs.lines {
		bad("claims records [%d, %d) (%d), the range proof covers [%d, %d) and records.jsonl has %d lines",
			m.Begin, m.End, m.Records, v.rng.Begin, v.rng.End, rs.lines)
	}
	if m.TreeSize != v.cp.Size {
		bad("tree_size %d, checkpoint.note signs %d", m.TreeSize, v.cp.Size)
	}
	if !m.CheckpointTime.Equal(v.cp.Time) {
		bad("checkpoint_time %s, checkpoint.note says %s", m.CheckpointTime.Format(time.RFC3339Nano), v.cp.Time.Format(time.RFC3339Nano))
	}
	var sizes []uint64
	for _, c := range v.earlier {
		sizes = append(sizes, c.Size)
	}
	if !slices.Equal(m.Checkpoints, sizes) && !(len(m.Checkpoints) == 0 && len(sizes) == 0) {
		bad("lists checkpoints %v, the bundle holds valid checkpoints %v", m.Checkpoints, sizes)
	}
	slices.Sort(rs.provedFrom)
	if !slices.Equal(m.ProvedFrom, rs.provedFrom) && !(len(m.ProvedFrom) == 0 && len(rs.provedFrom) == 0) {
		bad("lists proofs from sizes %v, proofs/consistency.json has extra proofs from %v", m.ProvedFrom, rs.provedFrom)
	}
	if rs.lines > 0 && (!m.FirstTime.Equal(v.rep.FirstTime) || !m.LastTime.Equal(v.rep.LastTime)) {
		bad("first/last time %s / %s, the records say %s / %s", m.FirstTime.Format(time.RFC3339Nano), m.LastTime.Format(time.RFC3339Nano),
			v.rep.FirstTime.Format(time.RFC3339Nano), v.rep.LastTime.Format(time.RFC3339Nano))
	}
	v.checkFilters(&m, rs)
	if key := strings.TrimSpace(m.HostKey); key != "" {
		if kv, err := audit.ParseVerifierKey(key); err != nil || kv.Name() != v.opts.Key.Name() || kv.KeyHash() != v.opts.Key.KeyHash() {
			bad("names host key %q, not the key given (%s)", key, v.rep.Key)
		}
	}
}

// checkFilters checks the manifest's claims about how the records were
// selected against the records.
func (v *verifier) checkFilters(m *Manifest, rs *recordState) {
	bad := func(format string, args ...any) { v.rep.failf(BundleManifest, format, args...) }
	if m.Session != "" && (m.Since != "" || m.Until != "") {
		bad("claims both a session and a time filter, which export does not combine")
	}
	if m.Session != "" && rs.lines > 0 && (rs.firstSession != m.Session || string(rs.lastSession) != m.Session) {
		bad("claims the records of session %q, but the first and last records belong to %q and %q", m.Session, rs.firstSession, string(rs.lastSession))
	}
	for _, f := range []struct {
		name, val string
		ok        func(t time.Time) bool
	}{
		{"since", m.Since, func(t time.Time) bool { return !v.rep.FirstTime.Before(t) }},
		{"until", m.Until, func(t time.Time) bool { return v.rep.LastTime.Before(t) }},
	} {
		if f.val == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.val)
		if err != nil {
			bad("%s %q is not an RFC 3339 time", f.name, f.val)
			continue
		}
		if rs.lines > 0 && !f.ok(t) {
			bad("claims %s %s, which the first or last record's time contradicts", f.name, f.val)
		}
	}
}

// checkHostPub checks that host.pub is the key the auditor gave.
func (v *verifier) checkHostPub() {
	f := v.files[BundleHostPub]
	if f == nil {
		return
	}
	kv, err := audit.ParseVerifierKey(string(f.data))
	if err != nil {
		v.rep.failf(BundleHostPub, "not a verifier key: %v", err)
		return
	}
	if kv.Name() != v.opts.Key.Name() || kv.KeyHash() != v.opts.Key.KeyHash() {
		v.rep.failf(BundleHostPub, "is key %s+%08x, not the key given (%s)", kv.Name(), kv.KeyHash(), v.rep.Key)
	}
}

// leafHasher is a per-worker leaf hasher.
type leafHasher struct {
	h   hash.Hash
	buf []byte
	pre [1]byte // the leaf prefix, a field so that Write does not allocate
}

func newLeafHasher() *leafHasher {
	return &leafHasher{h: sha256.New(), buf: make([]byte, 0, audit.HashSize)}
}

// sum returns the RFC 6962 leaf hash of data into dst.
func (lh *leafHasher) sum(dst *[audit.HashSize]byte, data []byte) {
	lh.h.Reset()
	lh.pre[0] = 0 // rfc6962.RFC6962LeafHashPrefix
	lh.h.Write(lh.pre[:])
	lh.h.Write(data)
	copy(dst[:], lh.h.Sum(lh.buf[:0]))
}

// SPDX-License-Identifier: Apache-2.0

package evidence

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// Evidence bundle layout. A bundle is a tar archive (POSIX ustar/PAX) of
// regular files; Export writes them in this order, so that a verifier
// reading it as a stream has everything it needs before the records.
const (
	// BundleFormat is the "format" of MANIFEST.json.
	BundleFormat = "tollgate-evidence/1"

	// BundleHostPub is the host's verifier key text (informational:
	// trust comes from the key the auditor was given).
	BundleHostPub = "host.pub"
	// BundleVerifyMD explains the verification algorithm.
	BundleVerifyMD = "VERIFY.md"
	// BundleCheckpoint is the newest signed checkpoint, at the tree size
	// the range proof leads to.
	BundleCheckpoint = "checkpoint.note"
	// BundleCheckpointsDir holds earlier signed checkpoints whose size
	// lies within the exported range, as <size>.note.
	BundleCheckpointsDir = "checkpoints/"
	// BundleRangeProof proves the exported records are leaves
	// [begin, end) of the tree of BundleCheckpoint.
	BundleRangeProof = "proofs/range.json"
	// BundleConsistency holds consistency proofs between consecutive
	// checkpoints of the bundle, and from any extra sizes asked for.
	BundleConsistency = "proofs/consistency.json"
	// BundleRecords has the exported records, exactly as stored, one per
	// line ("\n"-terminated), in seq order.
	BundleRecords = "records.jsonl"
	// BundleManifest describes the bundle and hashes every other file.
	BundleManifest = "MANIFEST.json"
)

// maxBundleCheckpoints bounds the earlier checkpoints a bundle carries
// (about 1 KiB each with its consistency proof). Ranges with more are
// thinned evenly, always keeping the first and the last.
const maxBundleCheckpoints = 1000

//go:embed verify.md
var verifyMD string

// Manifest is MANIFEST.json: what the bundle holds and the SHA-256 of every
// other file in it. It is not signed: the verifier checks every claim in it
// against the signed checkpoint and the files.
type Manifest struct {
	// Format is BundleFormat.
	Format string `json:"format"`
	// Log is the log id, the checkpoints' origin.
	Log string `json:"log"`
	// HostKey is the verifier key text of host.pub.
	HostKey string `json:"host_key"`
	// Begin is the seq of the first exported record.
	Begin uint64 `json:"begin"`
	// End is the seq after the last exported record.
	End uint64 `json:"end"`
	// Records is End-Begin, the number of lines of records.jsonl.
	Records uint64 `json:"records"`
	// TreeSize is the size of the tree checkpoint.note signs.
	TreeSize uint64 `json:"tree_size"`
	// CheckpointTime is when checkpoint.note was signed.
	CheckpointTime time.Time `json:"checkpoint_time"`
	// Checkpoints are the sizes of the earlier checkpoints in
	// checkpoints/, ascending.
	Checkpoints []uint64 `json:"checkpoints"`
	// ProvedFrom are extra sizes with a consistency proof to TreeSize.
	ProvedFrom []uint64 `json:"proved_from,omitempty"`
	// FirstTime and LastTime are the times of the first and last record.
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	// Since, Until and Session are the export filters, as given.
	Since   string `json:"since,omitempty"`
	Until   string `json:"until,omitempty"`
	Session string `json:"session,omitempty"`
	// Created is when the bundle was written; Tool what wrote it.
	Created time.Time `json:"created"`
	Tool    string    `json:"tool"`
	// Files maps every other file of the bundle to "sha256:<hex>".
	Files map[string]string `json:"files"`
}

// RangeProof is proofs/range.json: the compact ranges left and right of the
// exported records in the tree of Size leaves.
type RangeProof struct {
	// Begin and End delimit the exported records, seq [Begin, End).
	Begin uint64 `json:"begin"`
	End   uint64 `json:"end"`
	// Size is the tree size of checkpoint.note.
	Size uint64 `json:"size"`
	// Left are the hashes of the perfect subtrees covering [0, Begin),
	// left to right; Right those covering [End, Size).
	Left  []Hash `json:"left"`
	Right []Hash `json:"right"`
}

// ConsistencyProofs is proofs/consistency.json.
type ConsistencyProofs struct {
	Proofs []ConsistencyProof `json:"proofs"`
}

// ConsistencyProof is an RFC 6962 consistency proof from the tree of From
// leaves to the tree of To leaves.
type ConsistencyProof struct {
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
	Hashes []Hash `json:"hashes"`
}

// Hash is a tree hash, standard base64 in JSON.
type Hash []byte

// MarshalJSON encodes h as a base64 string.
func (h Hash) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.StdEncoding.EncodeToString(h))
}

// UnmarshalJSON decodes a base64 string of exactly audit.HashSize bytes.
func (h *Hash) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(v) != audit.HashSize {
		return fmt.Errorf("hash %q is not base64 of %d bytes", s, audit.HashSize)
	}
	*h = v
	return nil
}

func toHashes(hs [][]byte) []Hash {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

// ExportOptions select what Export writes.
type ExportOptions struct {
	// Since and Until select the records with since <= time < until (zero:
	// unbounded), as the contiguous seq range from the first record at or
	// after Since to the last before Until: records in between are all
	// exported whatever their time, so nothing is left out of the range.
	Since, Until time.Time
	// Session selects the contiguous range from the session's first record
	// to its last (every record in between, of any session, is exported,
	// so the verifier can prove none of the session's records is
	// missing). It cannot be combined with Since or Until.
	Session string
	// Without Since, Until or Session, the bundle holds every record left:
	// from Log.Pruned().Below (0 unless records were pruned) to the
	// checkpoint. A selection that could include pruned records fails
	// with audit.ErrPruned.
	//
	// ProveFrom adds a consistency proof from each of these tree sizes to
	// the bundle's tree size: for auditors who hold a checkpoint outside
	// the exported range (see VerifyOptions.Trusted).
	ProveFrom []uint64
	// Tool names what wrote the bundle ("tollgate <version>").
	Tool string
	// Witnessed ends the bundle at the newest checkpoint a witness (the
	// collector) cosigned, taken from Cosigned, instead of a checkpoint
	// signed now: checkpoint.note then carries the witness's cosignature
	// line, which `audit verify --witness-key` requires. Records after
	// that checkpoint (the shipping lag) are left out.
	Witnessed bool
	// Cosigned are the cosigned checkpoint notes kept beside the log
	// (audit/ship's cosigned.jsonl), oldest first; used with Witnessed.
	Cosigned [][]byte
}

// Export is a planned evidence bundle: the range, checkpoints and proofs
// are fixed by PrepareExport; WriteTo writes the bundle.
type Export struct {
	l        *audit.Log // nil for a bundle from NewExport
	records  RecordSource
	m        Manifest
	cp       *audit.Checkpoint
	earlier  []*audit.Checkpoint
	rng      RangeProof
	cons     ConsistencyProofs
	recSize  int64
	recHash  []byte
	vkeyText string
}

// PrepareExport plans a bundle of l. On a read-write Log with a key it first
// signs any unsigned records, so the bundle covers everything durable; a
// read-only Log exports up to its newest checkpoint (records after it,
// left unsigned by a crash, are signed when the daemon runs again). It
// reads the selected records once to find the range and hash them, so that
// every error comes before WriteTo writes anything. A selection of no
// signed records fails with audit.ErrNoRecords, one that could include
// pruned records with audit.ErrPruned.
func PrepareExport(ctx context.Context, l *audit.Log, opts ExportOptions) (*Export, error) {
	if opts.Session != "" && (!opts.Since.IsZero() || !opts.Until.IsZero()) {
		return nil, errors.New("export: a session selects its own range; do not combine it with since or until")
	}
	var cp *audit.Checkpoint
	var err error
	if opts.Witnessed {
		cp, err = l.CosignedCheckpoint(opts.Cosigned)
	} else {
		cp, err = l.Checkpoint(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	vkey, err := l.VerifierKey()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if vkey == "" {
		return nil, fmt.Errorf("export: the log has no signing key recorded: %w", audit.ErrNoCheckpoint)
	}
	n := cp.Size
	e := &Export{l: l, records: l, cp: cp, vkeyText: vkey}
	begin, end, err := l.SelectRange(ctx, n, audit.Filter{Session: opts.Session, Since: opts.Since, Until: opts.Until})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	e.m = Manifest{
		Format: BundleFormat, Log: l.ID(), HostKey: vkey, Begin: begin, End: end, Records: end - begin,
		TreeSize: n, CheckpointTime: cp.Time, Session: opts.Session, Tool: opts.Tool,
		Files: map[string]string{}, Checkpoints: []uint64{},
	}
	if !opts.Since.IsZero() {
		e.m.Since = opts.Since.UTC().Format(time.RFC3339Nano)
	}
	if !opts.Until.IsZero() {
		e.m.Until = opts.Until.UTC().Format(time.RFC3339Nano)
	}

	// Earlier checkpoints within the range, thinned, and the chain of
	// consistency proofs through them to the tree size.
	cps, err := l.Checkpoints(begin, min(end, n-1))
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	e.earlier = thinCheckpoints(cps, maxBundleCheckpoints)
	var sizes []uint64
	for _, c := range e.earlier {
		sizes = append(sizes, c.Size)
		e.m.Checkpoints = append(e.m.Checkpoints, c.Size)
	}
	sizes = append(sizes, n)
	e.cons.Proofs = []ConsistencyProof{}
	for i := 0; i+1 < len(sizes); i++ {
		if err := e.addConsistency(sizes[i], sizes[i+1]); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	for _, from := range slices.Compact(slices.Sorted(slices.Values(opts.ProveFrom))) {
		if from > n {
			return nil, fmt.Errorf("export: cannot prove from size %d, the signed tree has %d: %w", from, n, audit.ErrRange)
		}
		if slices.Contains(sizes, from) && from != n {
			continue // the chain proves it already
		}
		if err := e.addConsistency(from, n); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		e.m.ProvedFrom = append(e.m.ProvedFrom, from)
	}

	left, right, err := l.RangeProof(begin, end, n)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	e.rng = RangeProof{Begin: begin, End: end, Size: n, Left: toHashes(left), Right: toHashes(right)}

	if err := e.scan(ctx, nil); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return e, nil
}

// scan is the first pass over the records: size, hash and times for the
// manifest. With leaf, it also gets each record's leaf hash.
func (e *Export) scan(ctx context.Context, leaf func(seq uint64, b []byte) error) error {
	h := sha256.New()
	var size int64
	first := true
	begin, end := e.m.Begin, e.m.End
	err := e.records.EachRecord(ctx, begin, end, func(seq uint64, b []byte) error {
		if first {
			r, err := audit.DecodeFast(b)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			e.m.FirstTime, first = r.Time, false
		}
		if seq == end-1 {
			r, err := audit.DecodeFast(b)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			e.m.LastTime = r.Time
		}
		h.Write(b)
		h.Write([]byte{'\n'})
		size += int64(len(b)) + 1
		if leaf != nil {
			return leaf(seq, b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.recSize, e.recHash = size, h.Sum(nil)
	return nil
}

// RecordSource reads the records of a log for an evidence bundle. An
// *audit.Log is one; the collector's PostgreSQL store is another.
type RecordSource interface {
	// EachRecord calls fn with every record in [begin, end), in seq
	// order, with its exact stored bytes; it fails if any is missing.
	EachRecord(ctx context.Context, begin, end uint64, fn func(seq uint64, b []byte) error) error
}

// BundlePlan describes a bundle made from a store other than an audit.Log (the
// collector's PostgreSQL): what the store has instead of the Log's tree.
type BundlePlan struct {
	// Log is the log id, the checkpoint's origin.
	Log string
	// HostKey is the host's verifier key text (host.pub).
	HostKey string
	// Checkpoint is checkpoint.note, as the host signed it (cosignature
	// lines included).
	Checkpoint *audit.Checkpoint
	// Range proves records [Range.Begin, Range.End) in the tree of
	// Checkpoint.Size leaves.
	Range RangeProof
	// Records reads the records.
	Records RecordSource
	// Consistency are proofs from earlier tree sizes to Checkpoint.Size,
	// for auditors who hold a checkpoint outside the range (the store
	// checked them against the roots it has).
	Consistency []ConsistencyProof
	// Tool names what wrote the bundle.
	Tool string
}

// NewExport plans a bundle from p, for stores that hold a log's records
// and tree hashes but are not a Log. It reads the records once, and
// refuses the plan unless the records and the range proof lead to the
// checkpoint's root: it never writes a bundle that does not verify. The
// bundle has no earlier checkpoints or consistency proofs.
func NewExport(ctx context.Context, p BundlePlan) (*Export, error) {
	cp, rp := p.Checkpoint, p.Range
	if cp == nil || p.Records == nil || p.HostKey == "" {
		return nil, errors.New("export: a plan needs a checkpoint, a host key and records")
	}
	if cp.Origin != p.Log || rp.Size != cp.Size || rp.End <= rp.Begin {
		return nil, fmt.Errorf("export: range [%d, %d) of a tree of %d for checkpoint %s at %d: %w",
			rp.Begin, rp.End, rp.Size, cp.Origin, cp.Size, audit.ErrRange)
	}
	if err := checkRangeProof(&rp); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	e := &Export{records: p.Records, cp: cp, vkeyText: p.HostKey, rng: rp,
		cons: ConsistencyProofs{Proofs: []ConsistencyProof{}}}
	e.m = Manifest{Format: BundleFormat, Log: p.Log, HostKey: p.HostKey, Begin: rp.Begin, End: rp.End,
		Records: rp.End - rp.Begin, TreeSize: cp.Size, CheckpointTime: cp.Time, Tool: p.Tool,
		Files: map[string]string{}, Checkpoints: []uint64{}}
	for _, c := range p.Consistency {
		if c.To != cp.Size || c.From == 0 || c.From >= cp.Size {
			return nil, fmt.Errorf("export: consistency proof from %d to %d in a bundle of tree size %d: %w", c.From, c.To, cp.Size, audit.ErrRange)
		}
		e.cons.Proofs = append(e.cons.Proofs, c)
		e.m.ProvedFrom = append(e.m.ProvedFrom, c.From)
	}
	acc, err := audit.NewCompactRange(rp.Begin, hashBytes(rp.Left))
	if err != nil {
		return nil, fmt.Errorf("export: left of the range: %w", err)
	}
	lh := newLeafHasher()
	var leaf [audit.HashSize]byte
	err = e.scan(ctx, func(seq uint64, b []byte) error {
		lh.sum(&leaf, b)
		acc.Append(&leaf)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	root, err := acc.RootWith(rp.Size, hashBytes(rp.Right))
	if err != nil {
		return nil, fmt.Errorf("export: the range proof: %w", err)
	}
	if !bytes.Equal(root, cp.Root) {
		return nil, fmt.Errorf("export: records [%d, %d) and the range proof lead to root %x, the checkpoint signs %x: %w",
			rp.Begin, rp.End, root, cp.Root, audit.ErrCorrupt)
	}
	return e, nil
}

func hashBytes(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

// addConsistency adds the proof from size from to size to.
func (e *Export) addConsistency(from, to uint64) error {
	p, err := e.l.ConsistencyProof(from, to)
	if err != nil {
		return err
	}
	e.cons.Proofs = append(e.cons.Proofs, ConsistencyProof{From: from, To: to, Hashes: toHashes(p)})
	return nil
}

// thinCheckpoints keeps at most max checkpoints, evenly spread, always the
// first and the last.
func thinCheckpoints(cps []*audit.Checkpoint, max int) []*audit.Checkpoint {
	if len(cps) <= max {
		return cps
	}
	out := make([]*audit.Checkpoint, 0, max)
	for i := range max {
		out = append(out, cps[i*(len(cps)-1)/(max-1)])
	}
	return out
}

// Manifest returns the bundle's manifest as planned (Files is filled by
// WriteTo).
func (e *Export) Manifest() Manifest { return e.m }

// WriteTo writes the bundle as a tar archive to w. It reads the records a
// second time and fails if they differ from what PrepareExport read.
func (e *Export) WriteTo(ctx context.Context, w io.Writer) (*Manifest, error) {
	tw := tar.NewWriter(w)
	created := time.Now().UTC().Truncate(time.Second)
	e.m.Created = created
	put := func(name string, data []byte) error {
		if err := writeTarFile(tw, name, created, int64(len(data)), func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		}); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		e.m.Files[name] = "sha256:" + hex.EncodeToString(sum[:])
		return nil
	}
	if err := put(BundleHostPub, []byte(e.vkeyText+"\n")); err != nil {
		return nil, err
	}
	if err := put(BundleVerifyMD, []byte(verifyMD)); err != nil {
		return nil, err
	}
	if err := put(BundleCheckpoint, e.cp.Note); err != nil {
		return nil, err
	}
	for _, c := range e.earlier {
		if err := put(BundleCheckpointsDir+strconv.FormatUint(c.Size, 10)+".note", c.Note); err != nil {
			return nil, err
		}
	}
	rj, err := json.MarshalIndent(e.rng, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode range proof: %w", err)
	}
	if err := put(BundleRangeProof, append(rj, '\n')); err != nil {
		return nil, err
	}
	cj, err := json.MarshalIndent(e.cons, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode consistency proofs: %w", err)
	}
	if err := put(BundleConsistency, append(cj, '\n')); err != nil {
		return nil, err
	}

	h := sha256.New()
	err = writeTarFile(tw, BundleRecords, created, e.recSize, func(w io.Writer) error {
		bw := &hashWriter{w: w, h: h}
		return e.records.EachRecord(ctx, e.m.Begin, e.m.End, func(seq uint64, b []byte) error {
			if _, err := bw.Write(b); err != nil {
				return err
			}
			_, err := bw.Write([]byte{'\n'})
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if sum := h.Sum(nil); !bytes.Equal(sum, e.recHash) {
		return nil, fmt.Errorf("export: records changed between two reads: %w", audit.ErrCorrupt)
	}
	e.m.Files[BundleRecords] = "sha256:" + hex.EncodeToString(e.recHash)

	mj, err := json.MarshalIndent(e.m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := writeTarFile(tw, BundleManifest, created, int64(len(mj)+1), func(w io.Writer) error {
		_, err := w.Write(append(mj, '\n'))
		return err
	}); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	m := e.m
	return &m, nil
}

// writeTarFile writes one regular file of size bytes produced by fill.
func writeTarFile(tw *tar.Writer, name string, mtime time.Time, size int64, fill func(io.Writer) error) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write bundle %s: %w", name, err)
	}
	if err := fill(tw); err != nil {
		return fmt.Errorf("write bundle %s: %w", name, err)
	}
	return nil
}

// hashWriter writes to w and hashes what it wrote.
type hashWriter struct {
	w io.Writer
	h hash.Hash
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	return n, err
}

// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// HashSize is the size of a tree hash (SHA-256).
const HashSize = sha256.Size

// hasher is the RFC 6962 tree hasher: leaf = SHA-256(0x00 ‖ data), node =
// SHA-256(0x01 ‖ left ‖ right), empty tree = SHA-256("").
var hasher = rfc6962.DefaultHasher

// rangeFactory makes compact ranges with RFC 6962 node hashing. It is
// stateless; compact ranges only merge when they come from the same factory.
var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// LeafHash returns the RFC 6962 leaf hash of a record's stored bytes.
func LeafHash(data []byte) []byte { return hasher.HashLeaf(data) }

// EmptyRoot returns the root of the empty tree.
func EmptyRoot() []byte { return hasher.EmptyRoot() }

// storedLevel is the lowest level of the nodes the log stores. Nodes below
// it cover at most 2^(storedLevel-1) records and are recomputed from the
// records when a proof needs them (at most 255 leaf hashes per node of a
// proof). Every commit that stores a node writes at least one more page
// (the nodes bucket's tail), which is what the tree costs on the durable
// path: from level 4 up (format 2) nearly every commit of 16 or more
// records stored one, about a tenth of the bytes written at 256
// producers; from level 8 up it is one node per 128 records, and most
// commits touch no node at all.
const storedLevel = 8

// nodeKey is the key of a node in the nodes bucket: the end of the leaf
// range the node covers ((index+1)·2^level) as 8-byte big-endian, then the
// level. A node becomes perfect exactly when the leaf before its end is
// appended, so keys only ever grow: the bucket is append-only like the
// records, pages fill completely, and a commit touches only its tail.
func nodeKey(id compact.NodeID) []byte {
	k := make([]byte, 9)
	binary.BigEndian.PutUint64(k, (id.Index+1)<<id.Level)
	k[8] = byte(id.Level)
	return k
}

// encodeTree encodes the tree state stored under meta/tree: the size, then
// the compact range hashes of [0, size).
func encodeTree(r *compact.Range) []byte {
	b := make([]byte, 0, 8+HashSize*len(r.Hashes()))
	b = binary.BigEndian.AppendUint64(b, r.End())
	for _, h := range r.Hashes() {
		b = append(b, h...)
	}
	return b
}

// decodeTree decodes meta/tree; a missing value is the empty tree.
func decodeTree(v []byte) (*compact.Range, error) {
	if v == nil {
		return rangeFactory.NewEmptyRange(0), nil
	}
	if len(v) < 8 || (len(v)-8)%HashSize != 0 {
		return nil, fmt.Errorf("meta tree is %d bytes: %w", len(v), ErrCorrupt)
	}
	size := binary.BigEndian.Uint64(v)
	var hashes [][]byte
	for b := v[8:]; len(b) > 0; b = b[HashSize:] {
		hashes = append(hashes, bytes.Clone(b[:HashSize]))
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("meta tree: %w: %w", ErrCorrupt, err)
	}
	return r, nil
}

// writerHasher is RFC 6962 leaf hashing for the single writer goroutine
// (for records no producer prepared): it reuses one SHA-256 state instead
// of allocating one per hash. Not safe for concurrent use.
type writerHasher struct {
	h   hash.Hash
	pre [1]byte
}

func newWriterHasher() *writerHasher { return &writerHasher{h: sha256.New()} }

// leaf returns H(0x00 ‖ data).
func (w *writerHasher) leaf(data []byte) []byte {
	w.h.Reset()
	w.pre[0] = rfc6962.RFC6962LeafHashPrefix
	w.h.Write(w.pre[:])
	w.h.Write(data)
	return w.h.Sum(make([]byte, 0, HashSize))
}

// rangeRoot is the root of a compact range starting at 0, with the empty
// tree's root for an empty range.
func rangeRoot(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return hasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

// merkleTree is the txHook that maintains the RFC 6962 tree of a Log and
// signs its checkpoints: leaf and perfect-node hashes go to the nodes
// bucket, the compact range of [0, size) to meta/tree, and signed
// checkpoints to the checkpoints bucket, all in the transaction that stores
// the records. Only the writer goroutine calls its hook methods.
type merkleTree struct {
	logger   *slog.Logger
	signer   note.Signer // nil: no checkpoints
	vkey     string      // verifier key text of signer
	interval time.Duration
	now      func() time.Time

	// wh hashes leaves the producers did not, for the writer goroutine.
	wh *writerHasher

	// origin is the log id, set by open.
	origin string
	// rng is the committed compact range [0, size).
	rng leafAcc
	// lastSigned is when this process last signed (monotonic clock),
	// zero before the first checkpoint it signs.
	lastSigned time.Time

	// Staged state of the open transaction: staged is valid while
	// stagedOn (its storage is reused from batch to batch).
	staged    leafAcc
	stagedOn  bool
	stagedCP  *Checkpoint
	nodes     *bolt.Bucket
	visitErr  error
	visitorFn compact.VisitFn
	storeFn   func(level uint, index uint64, h *[HashSize]byte)

	// last is the newest stored checkpoint (nil if none); read by any
	// goroutine.
	last atomic.Pointer[Checkpoint]
	// signedMu guards lastSigned for readers outside the writer.
	signedMu sync.Mutex
}

// newMerkleTree returns the tree hook; signer may be nil.
func newMerkleTree(logger *slog.Logger, signer note.Signer, vkey string, interval time.Duration) *merkleTree {
	t := &merkleTree{logger: logger, signer: signer, vkey: vkey, interval: interval, now: time.Now, wh: newWriterHasher()}
	t.visitorFn = t.visit
	t.storeFn = t.store
	return t
}

// visit stores a node the compact range reports as complete, if it is at
// a stored level.
func (t *merkleTree) visit(id compact.NodeID, hash []byte) {
	if t.visitErr != nil || id.Level < storedLevel {
		return
	}
	if err := t.nodes.Put(nodeKey(id), hash); err != nil {
		t.visitErr = fmt.Errorf("put node %d/%d: %w", id.Level, id.Index, err)
	}
}

// store is visit for the writer's leafAcc.
func (t *merkleTree) store(level uint, index uint64, h *[HashSize]byte) {
	if level >= storedLevel {
		// bbolt keeps the value until the commit: not h's storage.
		t.visit(compact.NewNodeID(level, index), bytes.Clone(h[:]))
	}
}

// open brings the tree up to the records (a format 1 log gets its tree
// built here, once, in one transaction; records are only read), records the
// signer's key, and loads the committed state. It checks that the newest
// checkpoint matches the tree, so a file whose tree, records and
// checkpoints disagree is refused.
func (t *merkleTree) open(db *bolt.DB) error {
	var behind bool
	err := db.View(func(tx *bolt.Tx) error {
		st, err := loadState(tx)
		if err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		rng, err := decodeTree(meta.Get(metaTree))
		if err != nil {
			return err
		}
		if rng.End() > st.size {
			return fmt.Errorf("tree has %d leaves, log %d records: %w", rng.End(), st.size, ErrCorrupt)
		}
		k := meta.Get(metaKey)
		behind = rng.End() < st.size || !currentFormat(st.format) || (t.signer != nil && k == nil)
		if t.signer != nil && k != nil && string(k) != t.vkey {
			return fmt.Errorf("log checkpoints are signed by %q, not by the host key %q: %w", k, t.vkey, ErrKeyMismatch)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if behind {
		if err := db.Update(t.catchUp); err != nil {
			return fmt.Errorf("build Merkle tree: %w", err)
		}
	}
	return db.View(t.load)
}

// catchUp extends the tree over records it does not cover yet, stores the
// signer's key and sets the current format version.
func (t *merkleTree) catchUp(tx *bolt.Tx) error {
	st, err := loadState(tx)
	if err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	rng, err := decodeTree(meta.Get(metaTree))
	if err != nil {
		return err
	}
	if from := rng.End(); from < st.size {
		t.logger.Info("building audit log Merkle tree", "from", from, "to", st.size, "format", st.format)
		t.nodes = tx.Bucket(bucketNodes)
		t.nodes.FillPercent = 1.0
		t.visitErr = nil
		c := tx.Bucket(bucketRecords).Cursor()
		seq := from
		for k, v := c.Seek(u64(from)); k != nil && seq < st.size; k, v = c.Next() {
			if len(k) != 8 || binary.BigEndian.Uint64(k) != seq {
				return fmt.Errorf("record %d missing: %w", seq, ErrCorrupt)
			}
			if err := rng.Append(hasher.HashLeaf(v), t.visitorFn); err != nil {
				return fmt.Errorf("append leaf %d: %w", seq, err)
			}
			if t.visitErr != nil {
				return t.visitErr
			}
			seq++
		}
		t.nodes = nil
		if seq != st.size {
			return fmt.Errorf("records end at %d, size %d: %w", seq, st.size, ErrCorrupt)
		}
		if err := meta.Put(metaTree, encodeTree(rng)); err != nil {
			return fmt.Errorf("put tree: %w", err)
		}
	}
	if t.signer != nil && meta.Get(metaKey) == nil {
		if err := meta.Put(metaKey, []byte(t.vkey)); err != nil {
			return fmt.Errorf("put key: %w", err)
		}
	}
	if !currentFormat(st.format) {
		if err := meta.Put(metaFormat, u64(formatVersion)); err != nil {
			return fmt.Errorf("put format: %w", err)
		}
	}
	return nil
}

// load reads the committed tree state and newest checkpoint, and checks
// that they agree with each other and with the records.
func (t *merkleTree) load(tx *bolt.Tx) error {
	st, err := loadState(tx)
	if err != nil {
		return err
	}
	rng, err := decodeTree(tx.Bucket(bucketMeta).Get(metaTree))
	if err != nil {
		return err
	}
	if rng.End() != st.size {
		return fmt.Errorf("tree has %d leaves, log %d records: %w", rng.End(), st.size, ErrCorrupt)
	}
	if err := checkTreeState(tx, rng); err != nil {
		return err
	}
	cp, err := lastCheckpoint(tx)
	if err != nil {
		return err
	}
	if cp != nil {
		if cp.Origin != st.id || cp.Size > st.size {
			return fmt.Errorf("checkpoint of %s at size %d in log %s of size %d: %w", cp.Origin, cp.Size, st.id, st.size, ErrCorrupt)
		}
		root, err := rootAt(tx, cp.Size)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, cp.Root) {
			return fmt.Errorf("checkpoint at size %d signs root %x, the tree has %x: %w", cp.Size, cp.Root, root, ErrCorrupt)
		}
	}
	t.origin = st.id
	if err := t.rng.setRange(rng); err != nil {
		return fmt.Errorf("meta tree: %w: %w", ErrCorrupt, err)
	}
	t.last.Store(cp)
	return nil
}

// checkTreeState checks that the stored compact range agrees with the
// stored nodes and with the records: the tree covers exactly the stored
// records. Nodes below storedLevel are recomputed from the records, and so
// is the lowest stored node holding the last record, so a record changed
// or added at the end behind the log's back is found.
func checkTreeState(tx *bolt.Tx, rng *compact.Range) error {
	size := rng.End()
	if size == 0 {
		return nil
	}
	nodes := tx.Bucket(bucketNodes)
	ids := compact.RangeNodes(0, size, nil)
	got, err := getNodes(tx, ids)
	if err != nil {
		return err
	}
	for i, id := range ids {
		if !bytes.Equal(got[i], rng.Hashes()[i]) {
			return fmt.Errorf("tree node %d/%d does not match the tree state: %w", id.Level, id.Index, ErrCorrupt)
		}
	}
	last := compact.NewNodeID(storedLevel, (size-1)>>storedLevel)
	if _, end := last.Coverage(); end <= size {
		h, err := computeNode(tx, last)
		if err != nil {
			return err
		}
		if !bytes.Equal(h, nodes.Get(nodeKey(last))) {
			return fmt.Errorf("tree node %d/%d does not match the records: %w", last.Level, last.Index, ErrCorrupt)
		}
	}
	return nil
}

// computeNode computes a node's hash from the records it covers, or from
// the leaf hashes kept for pruned records.
func computeNode(tx *bolt.Tx, id compact.NodeID) ([]byte, error) {
	begin, end := id.Coverage()
	records := tx.Bucket(bucketRecords)
	leaves := tx.Bucket(bucketLeaves)
	r := rangeFactory.NewEmptyRange(begin)
	for seq := begin; seq < end; seq++ {
		var leaf []byte
		if rec := records.Get(u64(seq)); rec != nil {
			leaf = hasher.HashLeaf(rec)
		} else if leaves != nil {
			// A copy: the node may be this leaf, and bbolt's memory is
			// valid only in the transaction.
			leaf = bytes.Clone(leaves.Get(u64(seq)))
		}
		if len(leaf) != HashSize {
			return nil, fmt.Errorf("record %d missing: %w", seq, ErrCorrupt)
		}
		if err := r.Append(leaf, nil); err != nil {
			return nil, fmt.Errorf("node %d/%d: %w", id.Level, id.Index, err)
		}
	}
	if len(r.Hashes()) != 1 {
		return nil, fmt.Errorf("node %d/%d is not a perfect subtree: %w", id.Level, id.Index, ErrRange)
	}
	return r.Hashes()[0], nil
}

// leaf appends a record's leaf hash to the staged range, storing the leaf
// and every node that became perfect.
func (t *merkleTree) leaf(tx *bolt.Tx, seq uint64, data []byte, hash *[HashSize]byte) error {
	if !t.stagedOn {
		t.staged.copyFrom(&t.rng)
		t.stagedOn = true
		t.nodes = tx.Bucket(bucketNodes)
		t.nodes.FillPercent = 1.0
		t.visitErr = nil
	}
	if t.staged.size != seq {
		return fmt.Errorf("leaf %d appended to a tree of size %d: %w", seq, t.staged.size, ErrCorrupt)
	}
	if hash == nil {
		// Not prepared by the producer: hash here.
		hash = (*[HashSize]byte)(t.wh.leaf(data))
	}
	t.staged.appendVisit(hash, t.storeFn)
	return t.visitErr
}

// seal stores the tree state of the batch and, when due, a checkpoint.
func (t *merkleTree) seal(tx *bolt.Tx, size uint64, force bool) error {
	rng := &t.rng
	if t.stagedOn {
		rng = &t.staged
	}
	if rng.size != size {
		return fmt.Errorf("tree of size %d sealed at log size %d: %w", rng.size, size, ErrCorrupt)
	}
	if t.stagedOn {
		if err := tx.Bucket(bucketMeta).Put(metaTree, rng.encode()); err != nil {
			return fmt.Errorf("put tree: %w", err)
		}
	}
	if !t.due(size, force) {
		return nil
	}
	cp := &Checkpoint{Origin: t.origin, Size: size, Root: rng.root(), Time: t.now().UTC()}
	var err error
	cp.Note, err = signCheckpoint(cp, t.signer)
	if err != nil {
		return err
	}
	cps := tx.Bucket(bucketCheckpoints)
	cps.FillPercent = 1.0
	if cps.Get(u64(size)) != nil {
		return fmt.Errorf("checkpoint at size %d exists already: %w", size, ErrCorrupt)
	}
	if err := cps.Put(u64(size), cp.Note); err != nil {
		return fmt.Errorf("put checkpoint %d: %w", size, err)
	}
	t.stagedCP = cp
	return nil
}

// due reports whether a checkpoint should be signed at size: there is a
// signer, records after the last checkpoint, and either force or the
// interval has passed since this process last signed.
func (t *merkleTree) due(size uint64, force bool) bool {
	if t.signer == nil || size == 0 {
		return false
	}
	if last := t.last.Load(); last != nil && last.Size >= size {
		return false
	}
	if force {
		return true
	}
	t.signedMu.Lock()
	defer t.signedMu.Unlock()
	return t.lastSigned.IsZero() || time.Since(t.lastSigned) >= t.interval
}

// sealDue reports whether there are unsigned records to checkpoint.
func (t *merkleTree) sealDue(size uint64) bool { return t.due(size, true) }

// sinceSigned is how long ago this process last signed a checkpoint, and
// false before the first one.
func (t *merkleTree) sinceSigned() (time.Duration, bool) {
	t.signedMu.Lock()
	defer t.signedMu.Unlock()
	if t.lastSigned.IsZero() {
		return 0, false
	}
	return time.Since(t.lastSigned), true
}

// done swaps in the staged state after a commit, or drops it.
func (t *merkleTree) done(committed bool) {
	if committed {
		if t.stagedOn {
			// Swap, so that both keep their storage.
			t.rng, t.staged = t.staged, t.rng
		}
		if t.stagedCP != nil {
			t.last.Store(t.stagedCP)
			t.signedMu.Lock()
			t.lastSigned = time.Now()
			t.signedMu.Unlock()
		}
	}
	t.stagedOn, t.stagedCP, t.nodes, t.visitErr = false, nil, nil, nil
}

// lastCheckpoint returns the newest stored checkpoint, nil if there is none.
func lastCheckpoint(tx *bolt.Tx) (*Checkpoint, error) {
	k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
	if k == nil {
		return nil, nil
	}
	return storedCheckpoint(k, v)
}

// storedCheckpoint parses a checkpoints bucket entry (without checking the
// signature: the store is the signer's own).
func storedCheckpoint(k, v []byte) (*Checkpoint, error) {
	if len(k) != 8 {
		return nil, fmt.Errorf("checkpoint key of %d bytes: %w", len(k), ErrCorrupt)
	}
	cp, err := parseCheckpointNote(bytes.Clone(v))
	if err != nil {
		return nil, fmt.Errorf("stored checkpoint %d: %w: %w", binary.BigEndian.Uint64(k), ErrCorrupt, err)
	}
	if cp.Size != binary.BigEndian.Uint64(k) {
		return nil, fmt.Errorf("checkpoint stored at %d has size %d: %w", binary.BigEndian.Uint64(k), cp.Size, ErrCorrupt)
	}
	return cp, nil
}

// treeSize returns the size of the stored tree, failing for a log without
// one (format 1, never opened read-write since).
func treeSize(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(metaTree)
	if v == nil {
		size, err := readSize(meta)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			return 0, nil
		}
		return 0, ErrNoTree
	}
	if len(v) < 8 {
		return 0, fmt.Errorf("meta tree is %d bytes: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// getNodes returns the hashes of ids: stored, or computed from the
// records below storedLevel.
func getNodes(tx *bolt.Tx, ids []compact.NodeID) ([][]byte, error) {
	nodes := tx.Bucket(bucketNodes)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		if id.Level < storedLevel {
			h, err := computeNode(tx, id)
			if err != nil {
				return nil, err
			}
			hashes[i] = h
			continue
		}
		h := nodes.Get(nodeKey(id))
		if len(h) != HashSize {
			return nil, fmt.Errorf("tree node %d/%d missing: %w", id.Level, id.Index, ErrCorrupt)
		}
		hashes[i] = bytes.Clone(h)
	}
	return hashes, nil
}

// checkSizes checks that sizes are within the stored tree.
func checkSizes(tx *bolt.Tx, sizes ...uint64) error {
	n, err := treeSize(tx)
	if err != nil {
		return err
	}
	for _, s := range sizes {
		if s > n {
			return fmt.Errorf("size %d beyond the tree size %d: %w", s, n, ErrRange)
		}
	}
	return nil
}

// rangeHashes returns the compact range hashes of [begin, end).
func rangeHashes(tx *bolt.Tx, begin, end uint64) ([][]byte, error) {
	if err := checkSizes(tx, begin, end); err != nil {
		return nil, err
	}
	if begin > end {
		return nil, fmt.Errorf("range [%d, %d): %w", begin, end, ErrRange)
	}
	return getNodes(tx, compact.RangeNodes(begin, end, nil))
}

// rootAt returns the tree root at size from the stored nodes.
func rootAt(tx *bolt.Tx, size uint64) ([]byte, error) {
	hashes, err := rangeHashes(tx, 0, size)
	if err != nil {
		return nil, err
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("root at %d: %w", size, err)
	}
	return rangeRoot(r)
}

// inclusionProof returns the RFC 6962 inclusion proof of leaf index in the
// tree of size.
func inclusionProof(tx *bolt.Tx, index, size uint64) ([][]byte, error) {
	if err := checkSizes(tx, size); err != nil {
		return nil, err
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRange, err)
	}
	hashes, err := getNodes(tx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// consistencyProof returns the RFC 6962 consistency proof between the trees
// of size1 and size2 (empty when size1 is 0 or equals size2).
func consistencyProof(tx *bolt.Tx, size1, size2 uint64) ([][]byte, error) {
	if err := checkSizes(tx, size1, size2); err != nil {
		return nil, err
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRange, err)
	}
	hashes, err := getNodes(tx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// leafAcc is the compact range [0, size) of a tree built leaf by leaf, as
// compact.Range keeps it (the roots of the perfect subtrees that size
// decomposes into, largest first), with RFC 6962 node hashing into fixed
// arrays and one reused buffer: compact.Range allocates for every node,
// which made the tree a fifth of the verifier's time and a good part of
// its cost in the writer.
type leafAcc struct {
	size   uint64
	hashes [][HashSize]byte
	buf    [1 + 2*HashSize]byte
	// cur is the node being merged in append (a field, not a local,
	// so that handing it to visit does not allocate).
	cur [HashSize]byte
}

// init starts the range [0, size) from its compact range hashes.
func (a *leafAcc) init(size uint64, hashes [][]byte) error {
	if want := compact.RangeSize(0, size); len(hashes) != want {
		return fmt.Errorf("%d hashes, [0, %d) needs %d", len(hashes), size, want)
	}
	a.size, a.hashes = size, make([][HashSize]byte, len(hashes), 64)
	for i, h := range hashes {
		if len(h) != HashSize {
			return fmt.Errorf("hash %d is %d bytes", i, len(h))
		}
		a.hashes[i] = [HashSize]byte(h)
	}
	return nil
}

// children sets h to H(0x01 ‖ l ‖ h).
func (a *leafAcc) children(l, h *[HashSize]byte) {
	a.buf[0] = 1 // rfc6962.RFC6962NodeHashPrefix
	copy(a.buf[1:], l[:])
	copy(a.buf[1+HashSize:], h[:])
	*h = sha256.Sum256(a.buf[:])
}

// append adds a leaf hash: every subtree the new leaf completes is merged.
func (a *leafAcc) append(leaf *[HashSize]byte) { a.appendVisit(leaf, nil) }

// appendVisit is append, calling visit (if not nil) for every node the
// new leaf completes, bottom up (not for the leaf itself). h is valid only
// during the call.
func (a *leafAcc) appendVisit(leaf *[HashSize]byte, visit func(level uint, index uint64, h *[HashSize]byte)) {
	a.cur = *leaf
	level := uint(0)
	for s := a.size; s&1 == 1; s >>= 1 {
		n := len(a.hashes) - 1
		a.children(&a.hashes[n], &a.cur)
		a.hashes = a.hashes[:n]
		level++
		if visit != nil {
			// The node covering the new leaf a.size at this level.
			visit(level, a.size>>level, &a.cur)
		}
	}
	a.hashes = append(a.hashes, a.cur)
	a.size++
}

// copyFrom makes a a copy of b, reusing a's storage.
func (a *leafAcc) copyFrom(b *leafAcc) {
	a.size = b.size
	a.hashes = append(a.hashes[:0], b.hashes...)
}

// setRange sets a to the compact range r, which must begin at 0.
func (a *leafAcc) setRange(r *compact.Range) error {
	if r.Begin() != 0 {
		return fmt.Errorf("range begins at %d", r.Begin())
	}
	return a.init(r.End(), r.Hashes())
}

// encode is encodeTree of the range.
func (a *leafAcc) encode() []byte {
	b := make([]byte, 0, 8+HashSize*len(a.hashes))
	b = binary.BigEndian.AppendUint64(b, a.size)
	for i := range a.hashes {
		b = append(b, a.hashes[i][:]...)
	}
	return b
}

// root returns the root hash of [0, size).
func (a *leafAcc) root() []byte {
	n := len(a.hashes)
	if n == 0 {
		return hasher.EmptyRoot()
	}
	h := a.hashes[n-1]
	for i := n - 2; i >= 0; i-- {
		a.children(&a.hashes[i], &h)
	}
	return h[:]
}

// compact returns the range as a compact.Range, to merge with others.
func (a *leafAcc) compact() (*compact.Range, error) {
	hs := make([][]byte, len(a.hashes))
	for i := range a.hashes {
		hs[i] = bytes.Clone(a.hashes[i][:])
	}
	return rangeFactory.NewRange(0, a.size, hs)
}

// CompactRange is the compact range [0, Size()) of an RFC 6962 tree built
// leaf by leaf, as the log's writer keeps its own: node hashes go into
// fixed arrays, nothing is allocated per leaf. It is exported for readers
// that rebuild a tree from records, such as audit/evidence's exporter and
// verifier, which prove records against a signed root.
type CompactRange struct{ a leafAcc }

// NewCompactRange starts the range [0, size) from its compact range hashes,
// left to right (the left side of Log.RangeProof); an empty range starts
// from none.
func NewCompactRange(size uint64, hashes [][]byte) (*CompactRange, error) {
	c := &CompactRange{}
	if err := c.a.init(size, hashes); err != nil {
		return nil, err
	}
	return c, nil
}

// Size returns the number of leaves in the range.
func (c *CompactRange) Size() uint64 { return c.a.size }

// Append adds the next leaf hash (LeafHash of the record's bytes).
func (c *CompactRange) Append(leaf *[HashSize]byte) { c.a.append(leaf) }

// Root returns the root of the tree of Size() leaves.
func (c *CompactRange) Root() []byte { return c.a.root() }

// RootWith returns the root of the tree of size leaves whose leaves
// [Size(), size) have the compact range hashes right (the right side of
// Log.RangeProof): with the range's own leaves, it is what proves them
// against a checkpoint's root.
func (c *CompactRange) RootWith(size uint64, right [][]byte) ([]byte, error) {
	rr, err := rangeFactory.NewRange(c.a.size, size, right)
	if err != nil {
		return nil, fmt.Errorf("right hashes: %w", err)
	}
	full, err := c.a.compact()
	if err != nil {
		return nil, fmt.Errorf("left hashes: %w", err)
	}
	if err := full.AppendRange(rr, nil); err != nil {
		return nil, fmt.Errorf("cannot merge: %w", err)
	}
	return rangeRoot(full)
}

// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// formatVersion is the on-disk format version stored under meta/format.
// Version 1 (the foundation) had no Merkle tree; opening such a log
// read-write builds the tree for its records once and sets version 3.
// Version 2 stored the tree's nodes from level 4 up, version 3 from level
// 8 (storedLevel): a version 2 log holds every node version 3 reads, and
// opening it read-write only sets version 3, after which a binary that
// wants level 4 nodes refuses it by its version instead of finding nodes
// missing.
const formatVersion = 3

// formatNoTree is the format version of logs written before the Merkle tree.
const formatNoTree = 1

// formatLevel4 is the format version of logs whose tree stores nodes from
// level 4 up; read as they are.
const formatLevel4 = 2

// formatPruned is the format version of a log from which Prune removed
// records: format 3 plus meta/pruned, meta/pruned_time and the leaves
// bucket. The first prune sets it, so that a binary that knows only format
// 3 refuses the file by its version instead of reporting the records it
// lacks as corruption; logs never pruned stay at format 3.
const formatPruned = 4

// currentFormat reports whether f is a format this build writes: no
// upgrade is due.
func currentFormat(f uint64) bool { return f == formatVersion || f == formatPruned }

// logIDPrefix starts every log id: "tollgate/<host-id>/<epoch>".
const logIDPrefix = "tollgate/"

// Bucket names; see doc.go for the layout.
var (
	bucketRecords     = []byte("records")
	bucketMeta        = []byte("meta")
	bucketNodes       = []byte("nodes")
	bucketCheckpoints = []byte("checkpoints")
	// bucketLeaves holds the leaf hashes of pruned records (format 4
	// only; created by the first prune).
	bucketLeaves = []byte("leaves")

	allBuckets = [][]byte{bucketRecords, bucketMeta, bucketNodes, bucketCheckpoints}
)

// Keys of the meta bucket.
var (
	metaFormat  = []byte("format")  // u64be formatVersion
	metaHost    = []byte("host")    // host id
	metaEpoch   = []byte("epoch")   // 16 lower-case hex digits
	metaLog     = []byte("log")     // log id
	metaCreated = []byte("created") // RFC 3339 UTC creation time
	metaSize    = []byte("size")    // u64be number of records
	metaTree    = []byte("tree")    // u64be tree size, then the compact range hashes of [0, size)
	metaKey     = []byte("key")     // verifier key text of the checkpoint signer
	// metaPruned is u64be P: records [0, P) were pruned (format 4).
	metaPruned = []byte("pruned")
	// metaPrunedTime is the RFC 3339 UTC time of the newest record pruned.
	metaPrunedTime = []byte("pruned_time")
)

// logState is what the meta bucket says about a log.
type logState struct {
	host   string
	epoch  string
	id     string
	size   uint64
	format uint64
	// pruned is P: records [0, P) were pruned, their leaf hashes kept;
	// prunedTime is the time of the newest of them.
	pruned     uint64
	prunedTime time.Time
}

// logID returns the log id for a host id and epoch.
func logID(host, epoch string) string {
	return logIDPrefix + host + "/" + epoch
}

// u64 encodes v as 8 bytes big-endian, the key format of the records bucket.
func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// checkHostID accepts host ids of 1 to 255 characters from [A-Za-z0-9._-],
// so that the log id is a single line and path-like segment (it becomes the
// checkpoint origin).
func checkHostID(id string) error {
	if id == "" || len(id) > 255 {
		return fmt.Errorf("host id %q: length %d not in 1-255: %w", id, len(id), ErrInvalidHostID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("host id %q: character %q not in [A-Za-z0-9._-]: %w", id, c, ErrInvalidHostID)
		}
	}
	return nil
}

// isEmpty reports whether the database has no buckets at all: a file bbolt
// just created (or one whose initialisation never committed).
func isEmpty(tx *bolt.Tx) bool {
	empty := true
	_ = tx.ForEach(func([]byte, *bolt.Bucket) error {
		empty = false
		return nil
	})
	return empty
}

// initLog creates the buckets and meta data of a new log in tx.
func initLog(tx *bolt.Tx, host string, now time.Time) error {
	var e [8]byte
	if _, err := rand.Read(e[:]); err != nil {
		return fmt.Errorf("generate epoch: %w", err)
	}
	epoch := hex.EncodeToString(e[:])
	for _, name := range allBuckets {
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	for _, kv := range []struct{ k, v []byte }{
		{metaFormat, u64(formatVersion)},
		{metaHost, []byte(host)},
		{metaEpoch, []byte(epoch)},
		{metaLog, []byte(logID(host, epoch))},
		{metaCreated, []byte(now.UTC().Format(time.RFC3339Nano))},
		{metaSize, u64(0)},
	} {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return fmt.Errorf("put meta %s: %w", kv.k, err)
		}
	}
	return nil
}

// loadState reads and checks the meta data of an existing log.
func loadState(tx *bolt.Tx) (logState, error) {
	var st logState
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return st, fmt.Errorf("no meta bucket: %w", ErrFormat)
	}
	f := meta.Get(metaFormat)
	if len(f) != 8 {
		return st, fmt.Errorf("no format version: %w", ErrFormat)
	}
	st.format = binary.BigEndian.Uint64(f)
	if !currentFormat(st.format) && st.format != formatNoTree && st.format != formatLevel4 {
		return st, fmt.Errorf("format version %d, want %d: %w", st.format, formatVersion, ErrFormat)
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return st, fmt.Errorf("no bucket %s: %w", name, ErrFormat)
		}
	}
	st.host = string(meta.Get(metaHost))
	st.epoch = string(meta.Get(metaEpoch))
	st.id = string(meta.Get(metaLog))
	if st.id == "" || st.id != logID(st.host, st.epoch) {
		return st, fmt.Errorf("log id %q does not match host %q and epoch %q: %w", st.id, st.host, st.epoch, ErrCorrupt)
	}
	size, err := readSize(meta)
	if err != nil {
		return st, err
	}
	st.size = size
	if err := checkTail(tx.Bucket(bucketRecords), size); err != nil {
		return st, err
	}
	if st.pruned, st.prunedTime, err = readPruned(tx, st.format, size); err != nil {
		return st, err
	}
	return st, nil
}

// readPruned returns how many records were pruned from the front of the
// log and the time of the newest of them: 0 and the zero time for a log
// never pruned.
func readPruned(tx *bolt.Tx, format, size uint64) (uint64, time.Time, error) {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(metaPruned)
	if v == nil {
		if format == formatPruned {
			return 0, time.Time{}, fmt.Errorf("format %d without meta pruned: %w", format, ErrCorrupt)
		}
		return 0, time.Time{}, nil
	}
	if format != formatPruned || len(v) != 8 || tx.Bucket(bucketLeaves) == nil {
		return 0, time.Time{}, fmt.Errorf("meta pruned in a log of format %d: %w", format, ErrCorrupt)
	}
	p := binary.BigEndian.Uint64(v)
	// Prune keeps the last record, so that the log's tail (checkTail)
	// and the tree's last node stay checkable against the records.
	if p >= size {
		return 0, time.Time{}, fmt.Errorf("%d records pruned of %d: %w", p, size, ErrCorrupt)
	}
	t, err := time.Parse(time.RFC3339Nano, string(meta.Get(metaPrunedTime)))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("meta pruned_time: %w: %w", ErrCorrupt, err)
	}
	return p, t, nil
}

// readSize returns the number of records from the meta bucket.
func readSize(meta *bolt.Bucket) (uint64, error) {
	s := meta.Get(metaSize)
	if len(s) != 8 {
		return 0, fmt.Errorf("meta size is %d bytes, want 8: %w", len(s), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(s), nil
}

// checkTail checks that the last record key is size-1 (no record beyond the
// recorded size, none missing at the end).
func checkTail(records *bolt.Bucket, size uint64) error {
	k, _ := records.Cursor().Last()
	switch {
	case k == nil && size == 0:
		return nil
	case k == nil:
		return fmt.Errorf("size %d but no records: %w", size, ErrCorrupt)
	case len(k) != 8:
		return fmt.Errorf("record key of %d bytes: %w", len(k), ErrCorrupt)
	case binary.BigEndian.Uint64(k) != size-1:
		return fmt.Errorf("last record %d, size %d: %w", binary.BigEndian.Uint64(k), size, ErrCorrupt)
	}
	return nil
}

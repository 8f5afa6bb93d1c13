// SPDX-License-Identifier: Apache-2.0

// Package audit is tollgate's append-only audit log: the record schema, its
// canonical encoding, and the per-host log stored in a bbolt file with one
// writer goroutine that group-commits records.
//
// # Records
//
// A Record is encoded by Encode as one JSON object (schema version 1,
// "v":1). The encoding is canonical: equal records give equal bytes.
//
//   - Fields appear in the order of the Record struct: v, log, seq, time,
//     kind, session, target, dst, client, listener, process, identity,
//     statement, decision, bytes, duration_ns, close_reason, error, detail;
//     nested objects likewise in struct order; detail keys sorted by byte
//     value.
//   - v, log, seq, time and kind are always present. Other fields are
//     omitted when empty (empty string, zero integer, empty list, nil
//     object, empty map), except process.pid, process.uid, process.gid and
//     bytes.up, bytes.down, which are always present in their object.
//   - No insignificant whitespace. Integers in decimal; there are no floats
//     anywhere in the schema.
//   - time is UTC RFC 3339 with exactly nine fractional digits,
//     "2026-11-26T14:00:00.123456789Z". It never goes back along seq: the
//     Log stamps a record no earlier than the one before it.
//   - detail keys that producers write and readers read are named in
//     detail.go.
//   - Strings are escaped as in RFC 8785 (JCS): '"' and '\' with a
//     backslash, \b \t \n \f \r as short escapes, other control characters
//     as \u00xx with lower-case hex, everything else as raw UTF-8 (no HTML
//     escaping). Invalid UTF-8 is replaced by U+FFFD. A record therefore
//     never contains a raw newline, so records can be stored one per line.
//
// The stored bytes are the evidence and the Merkle leaf: readers return them
// as stored and never re-encode. Decode parses them and rejects unknown
// schema versions.
//
// # Log
//
// A Log is identified by "tollgate/<host-id>/<epoch>", where the epoch is 64
// random bits fixed when the log is created. Append queues a record to the
// writer goroutine and returns once it is durable. Protocol handlers write
// through a Recorder, which also keeps what an unwritable log cannot take
// of sessions already running (results, ends) and retries it in order. The writer takes
// everything queued at that moment (up to 1000 records or 1 MiB, waiting
// at most briefly for producers it expects), assigns seqs contiguous from
// the log's size, appends them as checksummed frames to the journal (the
// log file's path plus ".journal", preallocated and zero-filled, so one
// write and one fdatasync make a group durable) and answers. The indexer
// goroutine then stores journaled records in bbolt with the Merkle tree,
// in transactions at most every 20 ms unless someone waits (a checkpoint,
// a tree read, a full journal). Until then readers get them from memory;
// after a crash Open stores what the journal holds beyond the bbolt file
// (a read-only Open reads it from the journal). The journal starts a new
// pass when bbolt holds all of the current one; a reader of the journal
// stops at the first frame that fails its checksum or does not carry the
// next seq. If bbolt cannot store records (for example ENOSPC), the
// records journaled are kept, the log reports ErrUnwritable in Healthy,
// and Appends fail with it until a store succeeds again (each Append has
// the indexer try first): fail closed, recover by itself. At most 512 KiB
// of acknowledged records wait for bbolt at any time.
//
// # Merkle tree and checkpoints
//
// The log is an RFC 6962 Merkle tree (SHA-256; leaf = H(0x00 ‖ record
// bytes), node = H(0x01 ‖ left ‖ right)) whose leaf i is the stored bytes of
// record seq i. The writer appends each record's leaf hash (computed by
// the producer for the seq the record will get, or by the writer) to the
// tree in the transaction that stores the record, writing every node of
// level 8 or more that became perfect (one per 128 records on average) and
// the compact range of the whole tree; no extra fsync. Roots at any size
// and inclusion, consistency and range proofs are computed from the stored
// perfect nodes, and nodes below level 8 (at most 128 leaves) from the
// records (Log.Root, Log.InclusionProof, Log.ConsistencyProof,
// Log.RangeProof).
//
// With Options.Key, the writer signs checkpoints (see Checkpoint): when a
// batch commits and the last checkpoint is older than
// Options.CheckpointInterval, in that same transaction; when records stay
// unsigned for about the interval, in a transaction of its own; on
// Log.Checkpoint; and on Close. So at most one checkpoint per interval while
// records arrive, none while idle, and a clean stop leaves every record
// signed.
//
// # Evidence
//
// Package audit/evidence writes evidence bundles of a Log (the exact record
// lines with the checkpoints and proofs that prove them against the host's
// key) and verifies them offline; package audit/report renders a session's
// timeline and summarises access for a period, by ISO/IEC 27001:2022
// control. Both read the log through this package's exported API
// (Log.EachRecord, Log.SelectRange, Log.RangeProof, Log.CosignedCheckpoint,
// CompactRange, CanonicalChecker, the Detail* keys); this package imports
// neither.
//
// # On-disk format (format version 2)
//
// One bbolt file (created 0600; bbolt's format is native-endian, so the file
// is not portable between little- and big-endian hosts) with four top-level
// buckets:
//
//	records       key: seq as 8-byte big-endian uint64
//	              value: the exact canonical record bytes
//	              Keys 0..size-1, all present, written once, never changed.
//	              Filled with FillPercent 1.0 (keys only grow).
//	meta          format   8-byte big-endian uint64, 2
//	              host     host id
//	              epoch    16 lower-case hex digits
//	              log      log id, "tollgate/<host>/<epoch>"
//	              created  creation time, RFC 3339 UTC
//	              size     8-byte big-endian uint64, the number of records
//	              tree     8-byte big-endian tree size (always = size), then
//	                       the 32-byte hashes of the compact range [0, size)
//	                       (the perfect subtrees covering it, left to right)
//	              key      verifier key text of the checkpoint signer, set
//	                       when a key first opens the log
//	nodes         key: (index+1)·2^level as 8-byte big-endian ‖ level
//	              (1 byte): the end of the leaves the node covers, so keys
//	              only grow, in the order nodes become perfect
//	              value: the 32-byte hash of the perfect subtree of leaves
//	              [index·2^level, (index+1)·2^level), for levels 4 and up
//	              (lower nodes are recomputed from the records). Written
//	              once, never changed. Filled with FillPercent 1.0.
//	checkpoints   key: tree size as 8-byte big-endian uint64
//	              value: the signed checkpoint note at that size. At most
//	              one per size, written once, never changed.
//
//	leaves        (format 4) key: seq as 8-byte big-endian uint64
//	              value: the 32-byte leaf hash of a pruned record, for
//	              every seq below meta/pruned. Written once.
//
// Format 4 is format 3 after Log.Prune removed records [0, P) from the
// front (audit.retention, only below the size the collector cosigned):
// meta/pruned holds P (8-byte big-endian, always below size: the newest
// record stays), meta/pruned_time the RFC 3339 time of the newest record
// removed, and leaves their leaf hashes, from which nodes below level 8
// are recomputed where the records are gone. Roots and proofs at every
// size are unchanged; reads below P fail with ErrPruned. The first prune
// sets format 4, so that a build that knows only format 3 refuses the file
// instead of calling its missing records corruption.
//
// records, nodes, meta/size and meta/tree change only together, in the
// writer's transaction. Open refuses files whose meta/format it does not
// know (ErrFormat), and a file where the last record key is not size-1, the
// tree state disagrees with the nodes or the last record, or the newest
// checkpoint does not match the tree (ErrCorrupt).
//
// Format 1 (the log before the tree) had the same buckets with nodes and
// checkpoints empty and no meta/tree or meta/key. Opening it read-write
// builds the tree for its records in one transaction (records are only
// read) and sets format 3; read-only opens can read its records but
// have no tree (ErrNoTree). Format 2 stored the tree's nodes from level 4
// up; format 3 reads the ones from level 8 up it holds, and opening it
// read-write sets format 3.
//
// The daemon holds bbolt's exclusive file lock while the log is open; a
// read-only Open (for CLI reads while the daemon is stopped) takes a shared
// lock, and Open gives up with ErrLocked after Options.Timeout instead of
// hanging.
package audit

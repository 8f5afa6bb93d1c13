// SPDX-License-Identifier: Apache-2.0

package audit

import "errors"

// Errors returned by this package. Callers test for them with [errors.Is];
// returned errors wrap them together with the underlying cause.
var (
	// ErrClosed is returned by a Log after Close, and by Append calls that
	// were not queued before Close.
	ErrClosed = errors.New("audit log closed")

	// ErrLocked is returned by Open when another process (or another Log in
	// this process) holds the log file and the lock was not released within
	// Options.Timeout.
	ErrLocked = errors.New("audit log locked by another process")

	// ErrReadOnly is returned by Append on a Log opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("audit log opened read-only")

	// ErrUnwritable is returned by Append when the records could not be made
	// durable (for example the disk is full), and by Healthy while the last
	// commit attempt failed. Nothing of a failed batch was acknowledged; the
	// next Append tries again.
	ErrUnwritable = errors.New("audit log unwritable")

	// ErrFormat is returned by Open when the file is not a tollgate audit log
	// or uses an on-disk format version this build does not know.
	ErrFormat = errors.New("not a tollgate audit log of a known format")

	// ErrCorrupt is returned when the contents of the log file are
	// inconsistent, for example records beyond the recorded size, a record
	// whose seq differs from its key, or a log that shrank or changed its id
	// while open.
	ErrCorrupt = errors.New("audit log corrupt")

	// ErrHostMismatch is returned by Open when Options.HostID differs from
	// the host id the existing log was created with.
	ErrHostMismatch = errors.New("audit log belongs to another host id")

	// ErrInvalidHostID is returned by Open when Options.HostID is missing
	// for a new log or contains characters outside [A-Za-z0-9._-].
	ErrInvalidHostID = errors.New("invalid host id")

	// ErrInvalidRecord is returned by Encode and Append for a record that
	// cannot be encoded: wrong schema version, missing kind or time, a time
	// outside years 0-9999, a detail key that is not valid UTF-8, or an
	// encoding longer than MaxRecordSize.
	ErrInvalidRecord = errors.New("invalid audit record")

	// ErrMalformed is returned by Decode for bytes that are not a well-formed
	// record of a known schema version: invalid UTF-8 or JSON, not an object,
	// duplicate or non-lowercase field names, wrong field types, missing
	// kind or time.
	ErrMalformed = errors.New("malformed audit record")

	// ErrUnknownVersion is returned by Decode for a record without a schema
	// version or with a version this build does not know.
	ErrUnknownVersion = errors.New("unknown audit record schema version")

	// ErrNotCanonical is returned, or wrapped, by CanonicalError for bytes
	// that are a record, or start like one, but are not byte for byte what
	// Encode writes: the evidence verifier refuses them, since every record
	// the log stores is canonical.
	ErrNotCanonical = errors.New("record is not in the canonical encoding")
)

// Errors of the Merkle tree, checkpoints, host key and evidence bundles.
var (
	// ErrNoTree is returned by tree reads (roots, proofs, export) on a log
	// written before the Merkle tree (format 1) that was not opened
	// read-write since; opening it read-write builds the tree.
	ErrNoTree = errors.New("audit log has no Merkle tree yet (open it read-write once)")

	// ErrRange is returned for a tree size or leaf index beyond the tree,
	// or a range whose end precedes its start.
	ErrRange = errors.New("outside the audit log's tree")

	// ErrNoCheckpoint is returned when a signed checkpoint is needed but
	// the log has none (no signer configured, or nothing signed yet).
	ErrNoCheckpoint = errors.New("no signed checkpoint")

	// ErrKeyMismatch is returned by Open when the host key differs from
	// the key that signed the log's checkpoints so far, and by
	// LoadHostKey when the key files disagree with each other or with the
	// host id.
	ErrKeyMismatch = errors.New("host key mismatch")

	// ErrBadSignature is returned by OpenCheckpoint for a checkpoint not
	// signed by the expected key, or whose signature does not verify.
	ErrBadSignature = errors.New("checkpoint signature not valid for the key")

	// ErrPruned is returned by reads, exports and selections that need
	// records audit.retention pruned (Log.Prune); the error names the
	// pruned range. The tree keeps their leaf hashes, so roots and proofs
	// still cover them.
	ErrPruned = errors.New("audit records pruned by retention")

	// ErrMalformedCheckpoint is returned by OpenCheckpoint for a note that
	// is not a checkpoint of the format this build knows.
	ErrMalformedCheckpoint = errors.New("malformed checkpoint")

	// ErrNoRecords is returned by Log.SelectRange (and so by evidence
	// exports) when the filter selects no signed records.
	ErrNoRecords = errors.New("no signed records match")
)

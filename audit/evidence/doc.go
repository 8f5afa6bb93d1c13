// SPDX-License-Identifier: Apache-2.0

// Package evidence writes and checks tollgate's evidence bundles: the
// records of an audit log (package audit) with what proves them against
// the host's signed checkpoint.
//
// PrepareExport plans a bundle of an audit.Log, and Export.WriteTo writes
// it: a tar archive (see BundleManifest and the other Bundle* names) of the
// whole log, a time range or a session, with the exact record lines, the
// newest checkpoint (or, Witnessed, the newest one the collector cosigned),
// earlier checkpoints within the range, a range proof (the compact ranges
// left and right of the records) and consistency proofs between the
// checkpoints, the host's verifier key, a manifest hashing every file, and
// VERIFY.md (verify.md here, embedded), which describes the algorithm for
// auditors. NewExport writes the same format from another store of a log's
// records and tree hashes (the collector's PostgreSQL, audit/collector).
//
// Verify checks a bundle offline with nothing but the host's key (and,
// optionally, a checkpoint the auditor kept, which detects a rollback, and
// witness keys whose cosignature checkpoint.note must carry) and reports
// every failure with the file, line and seq. It streams records.jsonl
// through parallel workers (leaf hash, canonical parse) and one in-order
// consumer (tree, seq, origin, the records' semantics).
//
// The package reads the log only through package audit's exported API;
// audit never imports it.
package evidence

// SPDX-License-Identifier: Apache-2.0

// Package collector is tollgate's central collector: an HTTP service that
// receives every host's audit log, verifies it against the host's signed
// checkpoints, stores it in PostgreSQL and cosigns what it stored, acting
// as the witness that makes a rollback or fork of a host's log provable.
//
// # Protocol
//
// Hosts enroll once (PathEnroll) with a single-use token from `tollgate
// collector enroll`, presenting their name, their log's origin and their
// checkpoint verifier key; they receive a credential sent as a bearer token
// on every later request.
//
// PathAddEntries carries {origin, start, the exact record bytes of seqs
// start..start+n-1, the host's signed checkpoint of size start+n}. Under
// one transaction holding the origin's log_state row (SELECT … FOR UPDATE
// NOWAIT: a second request of the same log in flight gets 429): start
// must equal the stored size, else 409 with the stored size to resume
// from; the leaf hashes are appended to the stored compact range of the
// Merkle tree and the root must equal the checkpoint's, whose signature
// must verify with the enrolled key (403 if not); records are written with
// COPY into day partitions; the checkpoint is cosigned (C2SP
// cosignature/v1, Ed25519) and stored; commit; the cosigned checkpoint is
// returned. A repeat of a stored range returns the same cosigned
// checkpoint. A validly signed tree inconsistent with the stored one (a
// different root at a stored size, entries that do not extend the stored
// tree to the signed root, a smaller tree signed after a larger one) is
// misbehavior: both signed checkpoints are saved as proof, the request
// gets 422, and the log is halted (every later request gets 422) until an
// operator looks. A request with start = the host's own size and no
// entries is a probe: the host learns the stored size, or proves itself
// consistent and gets a cosignature. Limits: MaxRecords records and
// MaxBodyBytes bytes (413 above).
//
// # Store
//
// Migrations embedded in the binary create and upgrade the schema (see
// migrations/). Tables: hosts, enrollment_tokens, log_state (size,
// compact range, last checkpoint, last seen, silence flag, halt reason),
// checkpoints (every accepted checkpoint with its cosignature), records
// (partitioned by day on the record time; indexes on origin+seq, identity,
// target, session, BRIN on time) and misbehavior. The service keeps no
// state of its own: replicas share one database, the row lock serialises
// each log.
package collector

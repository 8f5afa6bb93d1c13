// SPDX-License-Identifier: Apache-2.0

// Package report renders tollgate's audit records (package audit) for
// people: one session's timeline, and an access report of a period.
//
// Replay writes a session's records as a timeline paced as it happened (an
// SSH session as its terminal showed it), and WriteCast as an asciicast v2
// recording. Builder summarises the records of a period, in seq order, into
// a Report of access by identity and target, approvals and
// self-approvals, denials, SSH commands, grants, masking, policy changes
// and clock synchronisation, each part with the ISO/IEC 27001:2022 controls
// it is evidence for; the Report writes itself as text, CSV, JSON or a
// self-contained HTML page. The same code reports on one host's log
// (`tollgate audit report`) and on the fleet's records in the collector
// (audit/collector).
//
// Reports are summaries, not proof: audit/evidence exports and verifies
// the records with their signatures. The package reads records only
// through package audit's exported API; audit never imports it.
package report

// SPDX-License-Identifier: Apache-2.0

package audit

// Detail keys: the names under Record.Detail that producers (the daemon's
// protocol handlers, its API, its heartbeat) write and readers (reports,
// replay, verification, metrics, the collector) read. They are part of the
// record format: a key renamed here is a format change. Values are strings;
// "true" marks a flag, numbers are decimal.

// Detail keys of session records (session.start, session.end, error).
const (
	// DetailProtocol is the target's protocol ("tcp", "postgres", "ssh").
	DetailProtocol = "protocol"
	// DetailWorkload is the name of the workload whose process connected.
	DetailWorkload = "workload"
	// DetailPhase is where a PostgreSQL session failed before its relay
	// ran (for example "startup", "login", "upstream").
	DetailPhase = "phase"
	// DetailSQLState is the SQLSTATE of an error the server or tollgate
	// answered.
	DetailSQLState = "sqlstate"
	// DetailRequest is an SSH channel request's type, or "cancel" on the
	// session of a PostgreSQL CancelRequest.
	DetailRequest = "request"
	// DetailCancels is the session a PostgreSQL CancelRequest cancels.
	DetailCancels = "cancels"
	// DetailTLS is the TLS version the client connection used, or "none".
	DetailTLS = "tls"
)

// Detail keys of a PostgreSQL session.start.
const (
	// DetailDatabase is the database the client asked for.
	DetailDatabase = "database"
	// DetailUser is the role the client asked for.
	DetailUser = "user"
	// DetailUpstreamUser is the role tollgate logged in as upstream.
	DetailUpstreamUser = "upstream_user"
	// DetailUpstreamDatabase is the database tollgate logged in to
	// upstream, when the target maps it.
	DetailUpstreamDatabase = "upstream_database"
	// DetailApplicationName is the client's application_name.
	DetailApplicationName = "application_name"
	// DetailAuth is how the client authenticated to tollgate.
	DetailAuth = "auth"
	// DetailProtocolVersion is the protocol version the client asked for.
	DetailProtocolVersion = "protocol_version"
	// DetailMasking is "on" or "off": whether the session's results are
	// masked.
	DetailMasking = "masking"
	// DetailMaskingExempt lists the masking rules the identity is exempt
	// from, joined by ", ".
	DetailMaskingExempt = "masking_exempt"
)

// Detail keys of statement records.
const (
	// DetailN is the statement's number within its session (from 1); an
	// approval.request carries the number of the statement it holds.
	DetailN = "n"
	// DetailGrant is the id of the grant that allowed a statement, or
	// that a grant record concerns.
	DetailGrant = "grant"
	// DetailParseError is why tollgate's SQL parser rejected the text.
	DetailParseError = "parse_error"
	// DetailTruncated is "true" when the recorded text was cut to the
	// record size limit.
	DetailTruncated = "truncated"
	// DetailWithheld is "true" when the text is not recorded (policy).
	DetailWithheld = "withheld"
	// DetailStatementName is the prepared statement's name (extended
	// protocol).
	DetailStatementName = "statement"
	// DetailParams is the number of bind parameters.
	DetailParams = "params"
	// DetailUnknownStatement is "true" on an Execute of a portal whose
	// statement tollgate did not see prepared.
	DetailUnknownStatement = "unknown_statement"
	// DetailPortal is the portal name of an Execute.
	DetailPortal = "portal"
	// DetailDiscarded is "true" when the server discards the message (an
	// error earlier in the same extended-protocol batch).
	DetailDiscarded = "discarded"
	// DetailFunctionOID is the OID a FunctionCall runs.
	DetailFunctionOID = "function_oid"
	// DetailMaskedColumns lists the result columns masked by column rules.
	DetailMaskedColumns = "masked_columns"
)

// Detail keys of result records (one per statement that ran).
const (
	// DetailStatementSeq is the seq of the statement record this result
	// completes.
	DetailStatementSeq = "statement_seq"
	// DetailTag is the server's command tag(s), joined by "; ".
	DetailTag = "tag"
	// DetailRows is the number of rows returned or affected; on an SSH
	// pty request, the terminal's rows.
	DetailRows = "rows"
	// DetailSkipped is "true" when the server skipped the statement (an
	// error earlier in its batch or transaction).
	DetailSkipped = "skipped"
	// DetailSuspended is "true" when an Execute stopped at its row limit
	// (the portal is suspended, not complete).
	DetailSuspended = "suspended"
)

// Detail keys of an SSH pty-req besides DetailRows.
const (
	// DetailTerm is the terminal type the client asked for.
	DetailTerm = "term"
	// DetailCols is the terminal's width in columns.
	DetailCols = "cols"
)

// Detail keys of approval records besides DetailApproval and DetailFinal.
const (
	// DetailDeadline is when a hold times out (RFC 3339).
	DetailDeadline = "deadline"
	// DetailApproverGroups lists the groups that may approve, by ",".
	DetailApproverGroups = "approver_groups"
	// DetailApproverIdentities lists the identities that may approve.
	DetailApproverIdentities = "approver_identities"
	// DetailApprovers lists who approved a hold that needed several.
	DetailApprovers = "approvers"
	// DetailMin is how many approvals a hold needs.
	DetailMin = "min"
	// DetailCancelled says why a held statement or command was cancelled
	// (the client cancelled it, its session ended) before a decision.
	DetailCancelled = "cancelled"
	// DetailTimedOut is "true" when a hold reached its deadline.
	DetailTimedOut = "timed_out"
)

// Detail keys of grant records besides DetailGrant.
const (
	// DetailEvent is what happened to the grant: "created", "revoked" or
	// "expired".
	DetailEvent = "event"
	// DetailIdentity is the identity the grant is for.
	DetailIdentity = "identity"
	// DetailTarget is the target the grant is for.
	DetailTarget = "target"
	// DetailAllow lists the statement classes the grant allows, by ",".
	DetailAllow = "allow"
	// DetailFor is the grant's length (a duration).
	DetailFor = "for"
	// DetailReason is the reason given for the grant; on agent.stop, why
	// the daemon stopped.
	DetailReason = "reason"
	// DetailUntil is the end of the grant's window (RFC 3339, ns).
	DetailUntil = "until"
	// DetailGrantedBy names who granted it.
	DetailGrantedBy = "granted_by"
	// DetailRevokeReason is why a grant was revoked.
	DetailRevokeReason = "revoke_reason"
)

// Detail keys of policy.load records.
const (
	// DetailHash is the hash of the config and its policy_file together.
	DetailHash = "hash"
	// DetailSource is the config file the policy came from.
	DetailSource = "source"
	// DetailResult is "loaded" or why the policy was not loaded.
	DetailResult = "result"
	// DetailConfigHash is the config file's own SHA-256.
	DetailConfigHash = "config_hash"
	// DetailPolicyFile is the policy_file the config names.
	DetailPolicyFile = "policy_file"
	// DetailPolicyFileHash is that file's SHA-256.
	DetailPolicyFileHash = "policy_file_hash"
)

// Detail keys of heartbeat records, written every minute with whether the
// clock that timestamps every record was synchronised (ISO/IEC 27001:2022
// A.8.16, A.8.17).
const (
	// DetailClockSync is "synchronised" or "unsynchronised", from the
	// kernel's NTP state (adjtimex: TIME_ERROR or STA_UNSYNC mean
	// unsynchronised), or "unknown" if it could not be read.
	DetailClockSync = "clock_sync"
	// DetailClockMaxError is the kernel's maximum clock error, µs.
	DetailClockMaxError = "clock_max_error_us"
	// DetailClockEstError is the kernel's estimated clock error, µs.
	DetailClockEstError = "clock_est_error_us"
	// DetailClockOffset is the last measured offset to the time source,
	// ns.
	DetailClockOffset = "clock_offset_ns"
	// DetailConfig is the hash of the config (and policy) in force; on
	// agent.start, the config file's path.
	DetailConfig = "config"
	// DetailClockStatus is the kernel's clock status bits (adjtimex),
	// hexadecimal.
	DetailClockStatus = "clock_status"
	// DetailClockState is adjtimex's return value (TIME_OK is 0).
	DetailClockState = "clock_state"
	// DetailVersion is the daemon's version.
	DetailVersion = "version"
	// DetailInterval is the heartbeat interval (a duration).
	DetailInterval = "interval"
	// DetailPrunedBelow is how many records audit.retention removed from
	// the front of the log (records [0, N) are no longer on the host; the
	// collector holds them); absent while nothing was.
	DetailPrunedBelow = "pruned_below"
)

// Detail keys of SSH records.
const (
	// DetailChannel is the channel's number within its session.
	DetailChannel = "channel"
	// DetailStream is the direction of a data chunk: "in" (client to
	// target, stdin), "out" (stdout) or "err" (stderr).
	DetailStream = "stream"
	// DetailData is a data chunk's bytes, base64 (standard, padded).
	DetailData = "data"
	// DetailExitStatus is a command's exit status.
	DetailExitStatus = "exit_status"
	// DetailExitSignal is the signal that ended a command.
	DetailExitSignal = "exit_signal"
)

// Detail keys of approval, grant, masking and statement records, which
// the access report (audit/report) and the metrics read:
//
//   - approval.request and approval.decision carry the approval id in
//     "approval"; the decision's Decision.Action is "allow" or "deny" and
//     its Identity is the approver; the request's Identity (or else the
//     session's) is the requester. A vote that does not end the hold has
//     "final" = "false"; the final decision has no "final" key.
//   - any record may count masked values in "masked" (a decimal number).
//   - grant records carry "identity", "target", "allow", "for" and
//     "reason"; their Identity is who granted.
const (
	// DetailApproval is the approval id an approval record concerns.
	DetailApproval = "approval"
	// DetailMasked is the number of values masked in a record's result.
	DetailMasked = "masked"
	// DetailFinal is "false" on an approval.decision that records one
	// approver's vote without ending the hold.
	DetailFinal = "final"
	// DetailPrepared is, on the statement record of an SQL EXECUTE, the
	// normalised PREPARE text of what the name may hold (several, joined
	// by "; ", while a PREPARE of the name was in flight), or "unknown".
	DetailPrepared = "prepared"
	// DetailProbe is "parse" on the statement record of a text tollgate's
	// parser rejected: the server was only asked to parse it, never to run
	// it; "describe" on that of an SQL EXECUTE of a name tollgate knows
	// nothing of: the server was only asked whether the name exists.
	DetailProbe = "probe"
)

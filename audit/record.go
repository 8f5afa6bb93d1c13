// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"time"
)

// SchemaVersion is the version of the record schema this package writes and
// the only one Decode accepts. It is the "v" field of every record.
const SchemaVersion = 1

// MaxRecordSize is the largest encoded record, in bytes, that Encode and
// Append accept. Producers shorten long statement texts before this limit;
// a larger record is refused (and with it the statement) rather than
// truncated silently.
const MaxRecordSize = 4 << 20

// Kind says what a record is about. The set is closed per schema version:
// producers use the constants below.
type Kind string

// Record kinds of schema version 1.
const (
	// KindAgentStart is written when the daemon starts; Detail carries
	// version and config hash.
	KindAgentStart Kind = "agent.start"
	// KindAgentStop is written when the daemon stops cleanly.
	KindAgentStop Kind = "agent.stop"
	// KindPolicyLoad is written when a policy is loaded or reloaded;
	// Detail carries the policy hash.
	KindPolicyLoad Kind = "policy.load"
	// KindSessionStart is written when an intercepted connection is
	// accepted and attributed.
	KindSessionStart Kind = "session.start"
	// KindSessionEnd is written when a session ends, with Bytes,
	// DurationNS and CloseReason.
	KindSessionEnd Kind = "session.end"
	// KindStatement is written before a statement is forwarded
	// (write-ahead), with Statement and Decision.
	KindStatement Kind = "statement"
	// KindResult is written after a statement completed.
	KindResult Kind = "result"
	// KindApprovalRequest is written when a statement is held for approval.
	KindApprovalRequest Kind = "approval.request"
	// KindApprovalDecision is written when an approver decides, or the
	// request times out.
	KindApprovalDecision Kind = "approval.decision"
	// KindGrant is written when a time-boxed grant is created or revoked.
	KindGrant Kind = "grant"
	// KindHeartbeat is written periodically (clock sync, config hash).
	KindHeartbeat Kind = "heartbeat"
	// KindError is written for failures worth evidence, such as an origin
	// lookup miss that refused a connection.
	KindError Kind = "error"

	// SSH sessions add these kinds. Detail[DetailChannel] names the
	// channel within its session.

	// KindChannelOpen is written when an SSH channel is opened or refused:
	// Detail carries its type and, for forwards, the destination;
	// Decision is set when policy judged the opening.
	KindChannelOpen Kind = "channel.open"
	// KindChannelRequest is written before an SSH request is forwarded
	// (write-ahead for exec, shell and subsystem), with Statement (the
	// command, or the request named in words, and its class) and
	// Decision.
	KindChannelRequest Kind = "channel.request"
	// KindChannelData is a chunk of an SSH channel's bytes, with
	// Detail[DetailStream] and the bytes in Detail[DetailData] (base64);
	// its time is when the chunk passed.
	KindChannelData Kind = "channel.data"
	// KindChannelClose is written when an SSH channel ends, with Bytes and
	// the command's exit status or signal in Detail.
	KindChannelClose Kind = "channel.close"
	// KindSFTP is one SFTP operation (open, read or write totals per
	// handle, remove, rename, mkdir, rmdir, setstat) with its paths, size
	// and status in Detail.
	KindSFTP Kind = "sftp"
)

// Record is one audit event, schema version 1. Its canonical encoding (see
// Encode) is what the log stores, and those exact bytes are the Merkle leaf.
// Empty fields are omitted from the encoding, except v, log, seq, time and
// kind, which are always present.
//
// The json tags document the field names and are used by Decode; use Encode,
// not encoding/json, to produce record bytes.
type Record struct {
	// V is the schema version; Append sets it to SchemaVersion.
	V int `json:"v"`
	// Log is the id of the log the record belongs to,
	// "tollgate/<host-id>/<epoch>"; Append sets it.
	Log string `json:"log"`
	// Seq is the record's position in the log, contiguous from 0, equal to
	// its Merkle leaf index; Append assigns it.
	Seq uint64 `json:"seq"`
	// Time is when the event happened, encoded in UTC as RFC 3339 with
	// exactly nine fractional digits; Append sets it to the current time
	// if it is zero.
	Time time.Time `json:"time"`
	// Kind says what the record is about.
	Kind Kind `json:"kind"`
	// Session is the id of the session the record belongs to.
	Session string `json:"session,omitempty"`
	// Target is the name of the protected target from the config.
	Target string `json:"target,omitempty"`
	// Dst is the original destination address the client connected to,
	// "host:port".
	Dst string `json:"dst,omitempty"`
	// Client is the client's address as seen by the listener, "ip:port".
	Client string `json:"client,omitempty"`
	// Listener is the address of the proxy listener that accepted the
	// session, "ip:port".
	Listener string `json:"listener,omitempty"`
	// Process is the kernel's view of the process that connected.
	Process *Process `json:"process,omitempty"`
	// Identity is the workload identity the session was attributed to.
	Identity *Identity `json:"identity,omitempty"`
	// Statement is the statement a statement or result record is about.
	Statement *Statement `json:"statement,omitempty"`
	// Decision is the policy decision for the statement or session.
	Decision *Decision `json:"decision,omitempty"`
	// Bytes counts the bytes a session carried.
	Bytes *Bytes `json:"bytes,omitempty"`
	// DurationNS is a duration in nanoseconds, such as a session's length.
	DurationNS int64 `json:"duration_ns,omitempty"`
	// CloseReason says why a session ended (client close, policy kill,
	// timeout, daemon stop).
	CloseReason string `json:"close_reason,omitempty"`
	// Error is an error message related to the event.
	Error string `json:"error,omitempty"`
	// Detail carries kind-specific string attributes, such as version and
	// config hash for agent.start or the policy hash for policy.load. Keys
	// are encoded in sorted order.
	Detail map[string]string `json:"detail,omitempty"`
}

// Process is the kernel's view of a process. Pid, UID and GID are always
// encoded when a Process is present (uid 0 is root, not "unknown"); the other
// fields are omitted when empty.
type Process struct {
	// Pid is the process id (the kernel's tgid).
	Pid uint32 `json:"pid"`
	// Tid is the id of the thread that connected (the kernel's pid).
	Tid uint32 `json:"tid,omitempty"`
	// UID is the real user id.
	UID uint32 `json:"uid"`
	// GID is the real group id.
	GID uint32 `json:"gid"`
	// Comm is the kernel's command name (at most 15 bytes).
	Comm string `json:"comm,omitempty"`
	// Exe is the path of the executable.
	Exe string `json:"exe,omitempty"`
	// Cgroup is the cgroup v2 path relative to the cgroup2 mount.
	Cgroup string `json:"cgroup,omitempty"`
	// CgroupID is the cgroup v2 id (the cgroup directory's inode number).
	CgroupID uint64 `json:"cgroup_id,omitempty"`
}

// Identity is a workload identity.
type Identity struct {
	// Name is the named identity from the config.
	Name string `json:"name,omitempty"`
	// Method is how it was established: "oidc" or "process".
	Method string `json:"method,omitempty"`
	// Issuer is the OIDC issuer URL.
	Issuer string `json:"issuer,omitempty"`
	// Subject is the OIDC subject.
	Subject string `json:"subject,omitempty"`
	// Groups are the groups the identity is a member of.
	Groups []string `json:"groups,omitempty"`
}

// Label names the identity for people: the configured name and, for an
// OIDC principal, the token's subject, since several people may match one
// configured identity: "dba (alice@example.com)". An approval trail must
// say who decided, not only as what. It is policy.Person.Label's format.
func (id *Identity) Label() string {
	if id == nil {
		return ""
	}
	switch {
	case id.Name != "" && id.Subject != "" && id.Subject != id.Name:
		return id.Name + " (" + id.Subject + ")"
	case id.Name != "":
		return id.Name
	}
	return id.Subject
}

// Statement describes a statement, with literals already redacted.
type Statement struct {
	// Text is the normalised statement text.
	Text string `json:"text,omitempty"`
	// Fingerprint is the statement's fingerprint (hex).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Classes are the statement classes, such as "select" or "ddl".
	Classes []string `json:"classes,omitempty"`
	// Tables are the tables the statement touches.
	Tables []string `json:"tables,omitempty"`
}

// Decision is a policy decision.
type Decision struct {
	// Action is "allow", "deny", "review" or "mask".
	Action string `json:"action,omitempty"`
	// Rule is the id of the rule that decided.
	Rule string `json:"rule,omitempty"`
	// Policy is the hash of the policy in force, "sha256:<hex>".
	Policy string `json:"policy,omitempty"`
	// Reason explains the decision: a deny rule's reason, why nothing
	// allowed the statement, or an approver's reason.
	Reason string `json:"reason,omitempty"`
}

// Bytes counts bytes in both directions of a session. Both fields are
// always encoded when Bytes is present.
type Bytes struct {
	// Up is the number of bytes from the client to the server.
	Up uint64 `json:"up"`
	// Down is the number of bytes from the server to the client.
	Down uint64 `json:"down"`
}

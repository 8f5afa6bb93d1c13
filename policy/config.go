// SPDX-License-Identifier: Apache-2.0

// Package policy is tollgate's configuration model: the workloads whose
// connections are intercepted, the targets they reach, named identities,
// rules, masking and audit settings. [Parse] and [Load] read the YAML file
// (rejecting unknown keys) and [Config.Validate] checks it, citing the key
// path and line of every problem. Nothing here touches the filesystem beyond
// reading the config file: whether cgroups, units or secret files exist is
// the daemon's business.
package policy

import (
	"slices"
	"time"
)

// Config is the whole tollgate config file. The zero value is not useful;
// start from [Default] or [Parse].
type Config struct {
	// HostID names this host in the audit log's origin. Empty means the
	// daemon reads /etc/machine-id at start.
	HostID string `yaml:"host_id"`
	// StateDir holds the audit log, the host key and grants.
	StateDir string `yaml:"state_dir"`
	// APISocket is the unix socket of the daemon's API.
	APISocket string `yaml:"api_socket"`
	// BPFPinPath is the bpffs directory where programs, links and maps are
	// pinned.
	BPFPinPath string `yaml:"bpf_pin_path"`
	// ListenAddress is the loopback IP address the proxy listeners bind.
	ListenAddress string `yaml:"listen_address"`
	// PolicyFile, when set, is an absolute path to a second YAML file
	// holding identities, rules and masking, so the policy can be owned
	// and reviewed apart from the host's plumbing. [Load] reads it with
	// the same strictness; a section lives in one file or the other.
	PolicyFile string `yaml:"policy_file,omitempty"`

	Workloads  []Workload `yaml:"workloads,omitempty"`  // whose connections are intercepted
	Targets    []Target   `yaml:"targets,omitempty"`    // protected destinations
	OIDC       OIDC       `yaml:"oidc,omitempty"`       // trusted token issuers
	Identities []Identity `yaml:"identities,omitempty"` // named identities rules refer to
	Rules      []Rule     `yaml:"rules,omitempty"`      // decisions per statement
	Masking    []Masking  `yaml:"masking,omitempty"`    // what is masked in results
	Audit      Audit      `yaml:"audit"`                // the audit log and its shipping
	Metrics    Metrics    `yaml:"metrics,omitempty"`    // the Prometheus endpoint
	Log        Log        `yaml:"log,omitempty"`        // the daemon's operational log

	// raw is the file as Parse read it, for Hash.
	raw []byte
	// policyRaw is the policy file as Load read it, for Hash; nil without
	// one.
	policyRaw []byte
	// files names the file a top-level section came from when it is not
	// the config file (policy_file), so problems cite the right file.
	files map[string]string
	// lines maps key paths like "targets[1].match[0]" to their YAML line,
	// so Validate can cite them. It is nil for a Config built in Go.
	lines map[string]int
}

// Default returns the config that an empty set of keys means: the paths of
// a packaged install, proxy listeners on 127.0.0.1 and the audit defaults.
// It has no workloads, targets or rules, so it intercepts nothing.
func Default() Config {
	return Config{
		StateDir:      "/var/lib/tollgate",
		APISocket:     "/run/tollgate/api.sock",
		BPFPinPath:    "/sys/fs/bpf/tollgate",
		ListenAddress: "127.0.0.1",
		Audit: Audit{
			Sync:               SyncAlways,
			FlushInterval:      Duration(DefaultFlushInterval),
			CheckpointInterval: Duration(time.Second),
			Retention:          Duration(400 * day),
			Ship:               Ship{Interval: Duration(time.Second)},
		},
	}
}

// A Workload selects processes whose connections to targets are
// intercepted. Exactly one of Cgroup, Unit and UID is set.
type Workload struct {
	// Name identifies the workload in status output and records.
	Name string `yaml:"name"`
	// Cgroup is a cgroup v2 path relative to the cgroup2 mount, starting
	// with "/", like "/system.slice/gitlab-runner.service". The whole
	// subtree is intercepted.
	Cgroup string `yaml:"cgroup,omitempty"`
	// Unit is a systemd unit like "nightly.service"; the daemon resolves it
	// to its cgroup.
	Unit string `yaml:"unit,omitempty"`
	// UID selects every process running with this real uid.
	UID *uint32 `yaml:"uid,omitempty"`
}

// A Target is a protected destination and how the proxy handles it.
type Target struct {
	// Name identifies the target in rules, masking and records.
	Name string `yaml:"name"`
	// Protocol is how the proxy understands the traffic.
	Protocol Protocol `yaml:"protocol"`
	// Match lists the destinations in [ParseMatch] syntax; [Target.Matches]
	// parses them.
	Match []string `yaml:"match"`
	// ListenPort is the proxy's port for this target; 0 means one is chosen
	// when the daemon starts.
	ListenPort int `yaml:"listen_port,omitempty"`
	// ClientAuth says how PostgreSQL clients are identified. Empty means
	// ClientAuthProcess. Only postgres targets may set it.
	ClientAuth ClientAuth `yaml:"client_auth,omitempty"`
	// Upstream is how tollgate logs in to a postgres target.
	Upstream Upstream `yaml:"upstream,omitempty"`
	// TLS is what tollgate offers PostgreSQL clients that ask for TLS.
	// Unset means clients are answered "no TLS" ('N') and continue in
	// plaintext, which libpq's default sslmode=prefer accepts.
	TLS *ClientTLS `yaml:"tls,omitempty"`
	// Ciphers are the SSH ciphers an ssh target's clients may use, by
	// their SSH names (see [SSHCiphers]), in the proxy's order of
	// preference: of those the client lists, the proxy offers it only the
	// first. Empty means [DefaultSSHCiphers]. Only ssh targets may set it.
	// Toward the target tollgate prefers AES-GCM.
	Ciphers []string `yaml:"ciphers,omitempty"`
}

// SSH cipher names a target's ciphers may list.
const (
	SSHCipherAES128GCM = "aes128-gcm@openssh.com"
	SSHCipherAES256GCM = "aes256-gcm@openssh.com"
	SSHCipherChaCha20  = "chacha20-poly1305@openssh.com"
	SSHCipherAES128CTR = "aes128-ctr"
	SSHCipherAES192CTR = "aes192-ctr"
	SSHCipherAES256CTR = "aes256-ctr"
)

// SSHCiphers are the ciphers the SSH proxy implements; none has a known
// weakness (no CBC, no RC4, no 3DES).
var SSHCiphers = []string{SSHCipherAES128GCM, SSHCipherAES256GCM, SSHCipherChaCha20,
	SSHCipherAES128CTR, SSHCipherAES192CTR, SSHCipherAES256CTR}

// DefaultSSHCiphers are the ciphers of a target that lists none, in the
// proxy's order of preference: AES-GCM, then AES-CTR, then
// ChaCha20-Poly1305. SSH leaves the choice to the client, and OpenSSH
// lists chacha20-poly1305 first; the proxy's ChaCha20 (golang.org/x/crypto)
// has no assembly on amd64 and costs it about seven times the CPU per byte
// of AES-GCM, which runs on the CPU's AES instructions, so the proxy
// offers each client only the first of these it lists
// (docs/BENCHMARKS.md). Every client keeps working: one that lists only
// AES-CTR (paramiko before 3.5) or only ChaCha20 is offered that.
var DefaultSSHCiphers = []string{SSHCipherAES128GCM, SSHCipherAES256GCM,
	SSHCipherAES128CTR, SSHCipherAES192CTR, SSHCipherAES256CTR, SSHCipherChaCha20}

// ClientTLS is the certificate tollgate presents to PostgreSQL clients in
// place of the server's. Clients that verify it (sslmode=verify-full) need
// it issued for the name or address they connect to, by a CA they trust.
type ClientTLS struct {
	// CertFile is an absolute path to the PEM certificate chain.
	CertFile string `yaml:"cert_file"`
	// KeyFile is an absolute path to the PEM private key, owned by root
	// and not readable by group or others.
	KeyFile string `yaml:"key_file"`
}

// Matches parses t.Match. After a successful [Config.Validate] it cannot
// fail.
func (t *Target) Matches() ([]Match, error) {
	ms := make([]Match, 0, len(t.Match))
	for _, s := range t.Match {
		m, err := ParseMatch(s)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// Upstream holds the credentials and TLS settings tollgate uses to log in to
// a PostgreSQL server or an SSH host. The client never sees them.
type Upstream struct {
	// User is the PostgreSQL role, or the SSH login, tollgate logs in as.
	User string `yaml:"user"`
	// PasswordFile is an absolute path to a root-only file holding the
	// password (postgres).
	PasswordFile string `yaml:"password_file,omitempty"`
	// SSLMode is the upstream TLS mode, as in libpq (postgres).
	SSLMode SSLMode `yaml:"sslmode,omitempty"`
	// SSLRootCert is an absolute path to the CA bundle for verify-ca and
	// verify-full; empty means the system roots.
	SSLRootCert string `yaml:"sslrootcert,omitempty"`
	// Database, when set, is the database tollgate connects to whatever the
	// client asked for.
	Database string `yaml:"database,omitempty"`
	// KnownHosts is an absolute path to an OpenSSH known_hosts file that
	// verifies the SSH target's host key (plain keys or @cert-authority
	// lines). Required for ssh targets: a host key is never trusted on
	// first use.
	KnownHosts string `yaml:"known_hosts,omitempty"`
	// KeyFile is an absolute path to a root-only private key (OpenSSH
	// format) tollgate logs in to an SSH target with. Empty means a
	// per-session certificate from tollgate's user CA, which the target
	// trusts with TrustedUserCAKeys.
	KeyFile string `yaml:"key_file,omitempty"`
}

// OIDC lists the token issuers tollgate trusts, for workloads that give a
// token as their PostgreSQL password and for approvers.
type OIDC struct {
	// Issuers are the trusted providers; an issuer URL appears once.
	Issuers []Issuer `yaml:"issuers,omitempty"`
}

// An Issuer is a trusted OIDC provider.
type Issuer struct {
	// URL is the issuer identifier; https, or http on loopback for tests.
	URL string `yaml:"url"`
	// Audience is the "aud" a token must carry.
	Audience string `yaml:"audience"`
	// GroupsClaim names the claim that lists a subject's groups. Empty
	// means "groups".
	GroupsClaim string `yaml:"groups_claim,omitempty"`
}

// An Identity names a kind of client for rules and approvals: process
// attributes from the kernel, OIDC token claims, or both (all set fields
// must match).
type Identity struct {
	// Name identifies the identity in rules, approvals and records.
	Name string `yaml:"name"`
	// Process, when set, must match the connecting process.
	Process *ProcessIdentity `yaml:"process,omitempty"`
	// OIDC, when set, must match the client's verified token.
	OIDC *OIDCIdentity `yaml:"oidc,omitempty"`
}

// ProcessIdentity matches the process that opened a connection. At least one
// field is set; all set fields must match.
type ProcessIdentity struct {
	Unit   string  `yaml:"unit,omitempty"`   // systemd unit, like nightly-report.service
	Cgroup string  `yaml:"cgroup,omitempty"` // cgroup v2 path; matches the subtree
	UID    *uint32 `yaml:"uid,omitempty"`    // real uid
	Exe    string  `yaml:"exe,omitempty"`    // absolute path of the executable
}

// OIDCIdentity matches a verified OIDC token from Issuer. At least one of
// Subject, Claims and Groups is set, so an identity is never "anyone the
// issuer signs a token for".
type OIDCIdentity struct {
	// Issuer is the URL of one of the config's OIDC issuers.
	Issuer string `yaml:"issuer"`
	// Subject is the exact "sub" claim.
	Subject string `yaml:"subject,omitempty"`
	// Claims are string claims that must all have these exact values.
	Claims map[string]string `yaml:"claims,omitempty"`
	// Groups match if the token lists any one of them in the issuer's
	// groups claim.
	Groups []string `yaml:"groups,omitempty"`
}

// A Rule decides what happens to statements it matches. Deny beats review
// beats allow; nothing matched means deny.
type Rule struct {
	// ID identifies the rule in decisions and records.
	ID string `yaml:"id"`
	// When says which statements the rule matches.
	When Conditions `yaml:"when,omitempty"`
	// Action is what happens to a matched statement.
	Action Action `yaml:"action"`
	// Approvers are who may approve a statement held by a review rule.
	Approvers Approvers `yaml:"approvers,omitempty"`
	// Reason is shown to the client when the rule blocks a statement.
	Reason string `yaml:"reason,omitempty"`
}

// Conditions select statements. An empty list matches anything; a set list
// matches if any of its entries does; all set lists must match.
type Conditions struct {
	Identities []string `yaml:"identities,omitempty"` // identity names
	Targets    []string `yaml:"targets,omitempty"`    // target names
	Classes    []Class  `yaml:"classes,omitempty"`    // statement classes
	Tables     []string `yaml:"tables,omitempty"`     // table names or patterns
	// Commands match SSH exec commands by program and arguments (see
	// [MatchCommand]); a rule with commands matches only exec requests.
	Commands []string `yaml:"commands,omitempty"`
	// Forwards match the destination of an SSH port forward as host:port
	// globs ("127.0.0.1:5432", "*.internal:443"); a rule with forwards
	// matches only forwarding requests.
	Forwards []string `yaml:"forwards,omitempty"`
	// Time lists when the rule applies; empty means at any time.
	Time []Window `yaml:"time,omitempty"`
}

// Approvers are who may approve a held statement, by identity or OIDC
// group.
type Approvers struct {
	Identities []string `yaml:"identities,omitempty"` // identity names, each with an oidc section
	Groups     []string `yaml:"groups,omitempty"`     // OIDC groups
	// Min is how many distinct approvers are needed; 0 means 1.
	Min int `yaml:"min,omitempty"`
	// Timeout is how long a statement is held before it is denied.
	Timeout Duration `yaml:"timeout,omitempty"`
}

// Masking hides sensitive values in results before they reach the client
// and the audit log.
type Masking struct {
	// ID identifies the masking entry in records.
	ID string `yaml:"id"`
	// Targets limits the entry to these targets; empty means all.
	Targets []string `yaml:"targets,omitempty"`
	// Columns are column patterns like "public.customers.email" or
	// "*.*.ssn".
	Columns []string `yaml:"columns,omitempty"`
	// Detectors find sensitive values in any column.
	Detectors []Detector `yaml:"detectors,omitempty"`
	// Patterns are named custom detectors: regular expressions (RE2
	// syntax) applied like Detectors. When the expression has a group
	// named "value", only that group is masked, so context such as a label
	// can be matched without hiding it.
	Patterns []Pattern `yaml:"patterns,omitempty"`
	// Style is how a masked value is written.
	Style MaskStyle `yaml:"style"`
	// Keep is how many trailing characters the partial style keeps; 0
	// means 4. Only partial rules may set it. Whatever it says, at most a
	// third of a value is kept.
	Keep int `yaml:"keep,omitempty"`
	// HashKeyFile is an absolute path to a root-only file holding the HMAC
	// key of the hash style, which needs one: an unkeyed hash of a card
	// number or an email is reversible by enumeration.
	HashKeyFile string `yaml:"hash_key_file,omitempty"`
	// Binary is what happens to a value under one of Columns that cannot
	// carry a masked replacement: a binary-format value of a type other than
	// text, or a value of a number, date, array or other non-text type.
	// Empty means BinaryRefuse.
	Binary BinaryAction `yaml:"binary,omitempty"`
	// Exempt lists identities this entry does not apply to. Exemptions are
	// recorded with the session.
	Exempt []string `yaml:"exempt,omitempty"`
}

// A Pattern is a named custom detector.
type Pattern struct {
	// Name identifies the pattern in placeholders and masking counts; it
	// must not be a built-in detector's name.
	Name string `yaml:"name"`
	// Regex is the expression, in Go's RE2 syntax (linear time, no
	// backreferences). It must not match the empty string.
	Regex string `yaml:"regex"`
}

// Audit configures the audit log.
type Audit struct {
	// Sync is when a record counts as durable: SyncAlways or SyncBatch.
	Sync SyncMode `yaml:"sync"`
	// FlushInterval is, with SyncBatch, the longest a written record
	// waits for its flush to disk. SyncAlways ignores it.
	FlushInterval Duration `yaml:"flush_interval"`
	// CheckpointInterval is the most often a checkpoint is signed while
	// there is new data.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// Retention is how long records are kept on the host, by their time:
	// older records below the size the collector cosigned are pruned
	// (their leaf hashes stay, so proofs still verify). Without Ship
	// nothing is ever cosigned, so nothing is pruned.
	Retention Duration `yaml:"retention"`
	// Ship configures shipping to the central collector.
	Ship Ship `yaml:"ship"`
}

// Ship configures shipping records to the central collector.
type Ship struct {
	// URL is the collector; empty means records are not shipped.
	URL string `yaml:"url"`
	// CA is an absolute path to the CA bundle for the collector's
	// certificate; empty means the system roots.
	CA string `yaml:"ca"`
	// TokenFile is an absolute path to the single-use enrollment token
	// from `tollgate collector enroll`; read once, when the host has no
	// collector credential in its state directory yet.
	TokenFile string `yaml:"token_file"`
	// Interval is how often the shipper sends what is new.
	Interval Duration `yaml:"interval"`
}

// Protocol is how the proxy understands a target's traffic.
type Protocol string

// Protocols.
const (
	ProtocolPostgres Protocol = "postgres" // PostgreSQL wire protocol, per statement
	ProtocolTCP      Protocol = "tcp"      // opaque bytes, per connection
	ProtocolSSH      Protocol = "ssh"      // SSH, per channel request
)

// Valid reports whether p is a known protocol.
func (p Protocol) Valid() bool {
	return p == ProtocolPostgres || p == ProtocolTCP || p == ProtocolSSH
}

// ClientAuth is how a postgres target identifies its clients.
type ClientAuth string

// Client authentication methods.
const (
	ClientAuthOIDC    ClientAuth = "oidc"    // an OIDC ID token given as the password
	ClientAuthProcess ClientAuth = "process" // the kernel's process identity only
)

// Valid reports whether a is a known method.
func (a ClientAuth) Valid() bool { return a == ClientAuthOIDC || a == ClientAuthProcess }

// SSLMode is the TLS mode of an upstream PostgreSQL connection, as in libpq.
type SSLMode string

// TLS modes.
const (
	SSLModeDisable    SSLMode = "disable"
	SSLModeRequire    SSLMode = "require"
	SSLModeVerifyCA   SSLMode = "verify-ca"
	SSLModeVerifyFull SSLMode = "verify-full"
)

// Valid reports whether m is a known mode.
func (m SSLMode) Valid() bool {
	return m == SSLModeDisable || m == SSLModeRequire || m == SSLModeVerifyCA || m == SSLModeVerifyFull
}

// Action is what a rule does with a statement it matches.
type Action string

// Actions.
const (
	ActionAllow  Action = "allow"  // forward the statement
	ActionDeny   Action = "deny"   // refuse it
	ActionReview Action = "review" // hold it until approvers decide
	ActionMask   Action = "mask"   // forward it and mask its results
)

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	return a == ActionAllow || a == ActionDeny || a == ActionReview || a == ActionMask
}

// Class is a statement class that SQL classification assigns.
type Class string

// Statement classes.
const (
	ClassSelect             Class = "select"
	ClassInsert             Class = "insert"
	ClassUpdate             Class = "update"
	ClassDelete             Class = "delete"
	ClassUpdateWithoutWhere Class = "update_without_where"
	ClassDeleteWithoutWhere Class = "delete_without_where"
	ClassDDL                Class = "ddl"
	ClassTruncate           Class = "truncate"
	ClassGrant              Class = "grant"
	ClassCopyIn             Class = "copy_in"
	ClassCopyOut            Class = "copy_out"
	ClassCopy               Class = "copy"
	ClassFunctionCall       Class = "function_call"
	ClassTransaction        Class = "transaction"
	ClassSet                Class = "set"
	ClassMultiStatement     Class = "multi_statement"
	ClassUnknown            Class = "unknown"
	// ClassEmpty is a text with no statement in it: empty, only
	// semicolons, or only comments (pgx's "-- ping" health check). It has
	// no effect, so it is allowed unless a rule names this class
	// explicitly; a rule without classes does not cover it.
	ClassEmpty Class = "empty"
)

// Classes returns every known statement class.
func Classes() []Class {
	return []Class{
		ClassSelect, ClassInsert, ClassUpdate, ClassDelete,
		ClassUpdateWithoutWhere, ClassDeleteWithoutWhere, ClassDDL, ClassTruncate,
		ClassGrant, ClassCopyIn, ClassCopyOut, ClassCopy, ClassFunctionCall,
		ClassTransaction, ClassSet, ClassMultiStatement, ClassUnknown, ClassEmpty,
		ClassExec, ClassShell, ClassSFTP, ClassSubsystem, ClassForwardLocal,
		ClassForwardRemote, ClassAgentForward, ClassX11,
	}
}

// Valid reports whether c is a known class.
func (c Class) Valid() bool { return slices.Contains(Classes(), c) }

// MaskStyle is how a masked value is written.
type MaskStyle string

// Masking styles.
const (
	MaskRedact  MaskStyle = "redact"  // replaced entirely
	MaskPartial MaskStyle = "partial" // the last few characters kept, like ************1111
	MaskHash    MaskStyle = "hash"    // replaced by a hash, so equal values stay equal
)

// Valid reports whether s is a known style.
func (s MaskStyle) Valid() bool { return s == MaskRedact || s == MaskPartial || s == MaskHash }

// Detector finds a kind of sensitive value in any column.
type Detector string

// Value detectors. Package policy/mask documents what each matches.
const (
	DetectorEmail        Detector = "email"
	DetectorCardNumber   Detector = "card_number"    // payment card numbers that pass the Luhn check
	DetectorIBAN         Detector = "iban"           // IBANs that pass the mod-97 check
	DetectorAWSAccessKey Detector = "aws_access_key" // AWS key ids and the secret keys next to them
	DetectorGCPKey       Detector = "gcp_key"        // Google API keys and service-account keys
	DetectorAzureKey     Detector = "azure_key"      // Azure account keys, SAS signatures, client secrets
	DetectorJWT          Detector = "jwt"
	DetectorPrivateKey   Detector = "private_key" // PEM private keys
	DetectorPassword     Detector = "password"    // values of password=, "secret": and the like
)

// Detectors returns every known detector.
func Detectors() []Detector {
	return []Detector{
		DetectorEmail, DetectorCardNumber, DetectorIBAN, DetectorAWSAccessKey, DetectorGCPKey,
		DetectorAzureKey, DetectorJWT, DetectorPrivateKey, DetectorPassword,
	}
}

// Valid reports whether d is a known detector.
func (d Detector) Valid() bool { return slices.Contains(Detectors(), d) }

// BinaryAction is what happens to a masked column's value that cannot hold a
// masked replacement.
type BinaryAction string

// Binary actions. There is no "null": YAML reads an unquoted null as no
// value at all, which would silently mean the default.
const (
	// BinaryRefuse refuses the statement before any row is sent (the
	// client gets SQLSTATE 0A000).
	BinaryRefuse BinaryAction = "refuse"
	// BinaryNullify sends NULL instead of the value. Clients that scan
	// into non-nullable variables fail on it.
	BinaryNullify BinaryAction = "nullify"
)

// Valid reports whether a is a known action.
func (a BinaryAction) Valid() bool { return a == BinaryRefuse || a == BinaryNullify }

// SyncMode is when an audit record counts as durable.
type SyncMode string

// Sync modes.
const (
	// SyncAlways means a statement is forwarded only after its record is
	// on disk (written and flushed with fdatasync).
	SyncAlways SyncMode = "always"
	// SyncBatch means a statement is forwarded once its record is written
	// to the journal, which survives a crash of the daemon, and the record
	// is flushed to disk within Audit.FlushInterval: a power loss or
	// kernel crash can lose the records of that last interval.
	SyncBatch SyncMode = "batch"
)

// DefaultFlushInterval is Audit.FlushInterval when the config omits it.
const DefaultFlushInterval = 10 * time.Millisecond

// Valid reports whether m is a known mode.
func (m SyncMode) Valid() bool { return m == SyncAlways || m == SyncBatch }

// Metrics configures the daemon's Prometheus endpoint.
// Log configures the daemon's operational log (stderr; the journal under
// systemd). The daemon's --log-level and --log-format flags, when given,
// win over it.
type Log struct {
	// Level is debug, info, warn or error; empty means info.
	Level string `yaml:"level,omitempty"`
	// Format is text or json; empty means text.
	Format string `yaml:"format,omitempty"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the loopback address and port /metrics is served on;
	// empty (the default) serves no metrics.
	Listen string `yaml:"listen,omitempty"`
}

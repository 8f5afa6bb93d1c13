// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxSocketPath is the longest unix socket path: sun_path holds 108 bytes
// with the terminating NUL.
const maxSocketPath = 107

// Validate checks c and returns every problem found, joined with
// [errors.Join]. Each is a [*FieldError] naming the key path and, for a
// config from [Parse], the YAML line. Validate checks the config alone:
// whether cgroups, units and files exist is for the daemon to check.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.paths()
	v.workloads()
	v.targets()
	v.issuers()
	v.identities()
	v.rules()
	v.masking()
	v.audit()
	v.metrics()
	v.log()
	return errors.Join(v.errs...)
}

// validator collects the problems of one config.
type validator struct {
	c    *Config
	errs []error

	targetPaths map[string]string    // target name → path of the target
	identity    map[string]*Identity // identity name → identity
	issuerURLs  map[string]bool
}

// add reports a problem at key path p. The line is p's, or its nearest
// ancestor's when the key itself is missing.
func (v *validator) add(p, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: p, Line: v.line(p), File: v.c.fileOf(p), Err: fmt.Errorf(format, args...)})
}

func (v *validator) line(p string) int {
	for p != "" {
		if l, ok := v.c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// where names a path for a message, with its line when known.
func (v *validator) where(p string) string {
	if l := v.line(p); l > 0 {
		return fmt.Sprintf("%s (line %d)", p, l)
	}
	return p
}

// name checks the name or id of an entry of kind and records it in seen
// (name → path of the entry). It reports whether the name is usable.
func (v *validator) name(p, kind, name string, seen map[string]string) bool {
	switch {
	case name == "":
		v.add(p, "required")
	case !validName(name, 63):
		v.add(p, "bad %s %q (want at most 63 letters, digits, '.', '-' and '_', starting with a letter or digit)", kind, name)
	case seen[name] != "":
		v.add(p, "duplicate %s %q, already at %s", kind, name, v.where(seen[name]))
	default:
		seen[name] = p[:strings.LastIndexByte(p, '.')]
		return true
	}
	return false
}

func (v *validator) paths() {
	c := v.c
	if c.HostID != "" && !validName(c.HostID, 253) {
		v.add("host_id", "bad host id %q (want letters, digits, '.', '-' and '_')", c.HostID)
	}
	v.absPath("state_dir", c.StateDir, true)
	if v.absPath("api_socket", c.APISocket, true) && len(c.APISocket) > maxSocketPath {
		v.add("api_socket", "%q is too long for a unix socket (at most %d bytes)", c.APISocket, maxSocketPath)
	}
	v.absPath("bpf_pin_path", c.BPFPinPath, true)
	v.absPath("policy_file", c.PolicyFile, false)
	switch a, err := netip.ParseAddr(c.ListenAddress); {
	case c.ListenAddress == "":
		v.add("listen_address", "required (a loopback address like 127.0.0.1)")
	case err != nil:
		v.add("listen_address", "%q is not an IP address (want a loopback address like 127.0.0.1)", c.ListenAddress)
	case !a.IsLoopback() || a.Zone() != "":
		v.add("listen_address", "%q is not a loopback address: the proxy listens only on loopback", c.ListenAddress)
	}
}

func (v *validator) workloads() {
	seen := map[string]string{}
	for i, w := range v.c.Workloads {
		p := "workloads[" + strconv.Itoa(i) + "]"
		v.name(p+".name", "workload name", w.Name, seen)
		var set []string
		if w.Cgroup != "" {
			set = append(set, "cgroup")
			v.cgroup(p+".cgroup", w.Cgroup)
		}
		if w.Unit != "" {
			set = append(set, "unit")
			v.unit(p+".unit", w.Unit)
		}
		if w.UID != nil {
			set = append(set, "uid")
			v.uid(p+".uid", *w.UID)
		}
		switch len(set) {
		case 0:
			v.add(p, "set one of cgroup, unit and uid")
		case 1:
		default:
			v.add(p, "set only one of cgroup, unit and uid, not %s", strings.Join(set, " and "))
		}
	}
}

// matchUse is where a destination is first used.
type matchUse struct {
	target, path string
}

func (v *validator) targets() {
	v.targetPaths = map[string]string{}
	dsts := map[Match]matchUse{}
	ports := map[int]string{}
	for i := range v.c.Targets {
		t := &v.c.Targets[i]
		p := "targets[" + strconv.Itoa(i) + "]"
		v.name(p+".name", "target name", t.Name, v.targetPaths)
		switch {
		case t.Protocol == "":
			v.add(p+".protocol", "required (postgres, ssh or tcp)")
		case !t.Protocol.Valid():
			v.add(p+".protocol", "unknown protocol %q (want postgres, ssh or tcp)", t.Protocol)
		}

		if len(t.Match) == 0 {
			v.add(p+".match", "required: at least one destination, like db.internal:5432")
		}
		for j, s := range t.Match {
			pj := p + ".match[" + strconv.Itoa(j) + "]"
			m, err := ParseMatch(s)
			if err != nil {
				v.add(pj, "%w", err)
				continue
			}
			if m.Socket != "" {
				switch {
				case t.Protocol != ProtocolPostgres:
					v.add(pj, "unix sockets are protected for postgres targets only")
					continue
				case t.Upstream.SSLMode != "" && t.Upstream.SSLMode != SSLModeDisable:
					// PostgreSQL offers no TLS on its unix socket.
					v.add(pj, "a unix socket has no TLS: set upstream.sslmode to disable, or name the server's TCP address")
					continue
				}
			}
			if first, ok := dsts[m]; ok {
				v.add(pj, "%q is already a destination of target %q at %s", s, first.target, v.where(first.path))
				continue
			}
			dsts[m] = matchUse{target: t.Name, path: pj}
		}

		switch pp := p + ".listen_port"; {
		case t.ListenPort == 0:
		case t.ListenPort < 0 || t.ListenPort > math.MaxUint16:
			v.add(pp, "port %d out of range (1-65535, or 0 to choose one at start)", t.ListenPort)
		case ports[t.ListenPort] != "":
			v.add(pp, "port %d is also the listen_port of %s", t.ListenPort, v.where(ports[t.ListenPort]))
		default:
			ports[t.ListenPort] = pp
		}

		switch pa := p + ".client_auth"; {
		case t.ClientAuth == "":
		case !t.ClientAuth.Valid():
			v.add(pa, "unknown client_auth %q (want oidc or process)", t.ClientAuth)
		case t.Protocol == ProtocolTCP:
			v.add(pa, "only postgres and ssh targets have client_auth")
		case t.ClientAuth == ClientAuthOIDC && len(v.c.OIDC.Issuers) == 0:
			v.add(pa, "oidc needs at least one entry in oidc.issuers")
		}

		if t.Protocol != ProtocolSSH && len(t.Ciphers) > 0 {
			v.add(p+".ciphers", "only ssh targets have ciphers")
		}
		switch t.Protocol {
		case ProtocolPostgres:
			v.upstream(p+".upstream", &t.Upstream)
			if t.TLS != nil {
				v.absPath(p+".tls.cert_file", t.TLS.CertFile, true)
				v.absPath(p+".tls.key_file", t.TLS.KeyFile, true)
			}
		case ProtocolSSH:
			v.sshUpstream(p+".upstream", &t.Upstream)
			if t.TLS != nil {
				v.add(p+".tls", "only postgres targets offer TLS to clients")
			}
			v.sshCiphers(p+".ciphers", t.Ciphers)
		case ProtocolTCP:
			if t.Upstream != (Upstream{}) {
				v.add(p+".upstream", "only postgres targets have an upstream login")
			}
			if t.TLS != nil {
				v.add(p+".tls", "only postgres targets offer TLS to clients")
			}
		}
	}
}

// sshCiphers checks an ssh target's client-facing cipher list: known
// names, each once.
func (v *validator) sshCiphers(p string, cs []string) {
	seen := map[string]bool{}
	for i, c := range cs {
		pi := p + "[" + strconv.Itoa(i) + "]"
		switch {
		case !slices.Contains(SSHCiphers, c):
			v.add(pi, "unknown cipher %q (want one of %s)", c, strings.Join(SSHCiphers, ", "))
		case seen[c]:
			v.add(pi, "%q is listed twice", c)
		}
		seen[c] = true
	}
}

// sshUpstream checks an ssh target's login: a user, a known_hosts file
// (never trust on first use), and optionally a key file in place of the
// user CA; the postgres settings do not apply.
func (v *validator) sshUpstream(p string, u *Upstream) {
	if u.User == "" {
		v.add(p+".user", "required: the login tollgate uses on the target")
	}
	v.absPath(p+".known_hosts", u.KnownHosts, true)
	v.absPath(p+".key_file", u.KeyFile, false)
	for _, k := range []struct {
		key string
		set bool
	}{{"password_file", u.PasswordFile != ""}, {"sslmode", u.SSLMode != ""},
		{"sslrootcert", u.SSLRootCert != ""}, {"database", u.Database != ""}} {
		if k.set {
			v.add(p+"."+k.key, "not an ssh setting (ssh targets use user, known_hosts and key_file)")
		}
	}
}

func (v *validator) upstream(p string, u *Upstream) {
	if u.User == "" {
		v.add(p+".user", "required: the role tollgate logs in as")
	}
	v.absPath(p+".password_file", u.PasswordFile, true)
	switch {
	case u.SSLMode == "":
		v.add(p+".sslmode", "required (disable, require, verify-ca or verify-full)")
	case !u.SSLMode.Valid():
		v.add(p+".sslmode", "unknown sslmode %q (want disable, require, verify-ca or verify-full)", u.SSLMode)
	}
	v.absPath(p+".sslrootcert", u.SSLRootCert, false)
	if u.KnownHosts != "" || u.KeyFile != "" {
		v.add(p, "known_hosts and key_file are ssh settings")
	}
}

func (v *validator) issuers() {
	v.issuerURLs = map[string]bool{}
	for i, is := range v.c.OIDC.Issuers {
		p := "oidc.issuers[" + strconv.Itoa(i) + "]"
		switch {
		case is.URL == "":
			v.add(p+".url", "required")
		case v.issuerURLs[is.URL]:
			v.add(p+".url", "duplicate issuer %q", is.URL)
		default:
			v.issuerURLs[is.URL] = true
			v.url(p+".url", is.URL)
		}
		if is.Audience == "" {
			v.add(p+".audience", "required: the aud a token must carry")
		}
	}
}

func (v *validator) identities() {
	v.identity = map[string]*Identity{}
	seen := map[string]string{}
	for i := range v.c.Identities {
		id := &v.c.Identities[i]
		p := "identities[" + strconv.Itoa(i) + "]"
		if v.name(p+".name", "identity name", id.Name, seen) {
			v.identity[id.Name] = id
		}
		if id.Process == nil && id.OIDC == nil {
			v.add(p, "set process, oidc or both")
		}
		if pr := id.Process; pr != nil {
			pp := p + ".process"
			if pr.Unit == "" && pr.Cgroup == "" && pr.UID == nil && pr.Exe == "" {
				v.add(pp, "set at least one of unit, cgroup, uid and exe")
			}
			if pr.Unit != "" {
				v.unit(pp+".unit", pr.Unit)
			}
			if pr.Cgroup != "" {
				v.cgroup(pp+".cgroup", pr.Cgroup)
			}
			if pr.UID != nil {
				v.uid(pp+".uid", *pr.UID)
			}
			v.absPath(pp+".exe", pr.Exe, false)
		}
		if o := id.OIDC; o != nil {
			po := p + ".oidc"
			switch {
			case o.Issuer == "":
				v.add(po+".issuer", "required")
			case !v.issuerURLs[o.Issuer]:
				v.add(po+".issuer", "issuer %q is not in oidc.issuers", o.Issuer)
			}
			if o.Subject == "" && len(o.Claims) == 0 && len(o.Groups) == 0 {
				v.add(po, "set subject, claims or groups: an issuer alone matches anyone it signs a token for")
			}
			for _, k := range slices.Sorted(maps.Keys(o.Claims)) {
				if k == "" || o.Claims[k] == "" {
					v.add(po+".claims."+k, "claim names and values must not be empty")
				}
			}
			for j, g := range o.Groups {
				if g == "" {
					v.add(po+".groups["+strconv.Itoa(j)+"]", "empty group")
				}
			}
		}
	}
}

func (v *validator) rules() {
	seen := map[string]string{}
	for i := range v.c.Rules {
		r := &v.c.Rules[i]
		p := "rules[" + strconv.Itoa(i) + "]"
		v.name(p+".id", "rule id", r.ID, seen)
		for j, n := range r.When.Identities {
			if v.identity[n] == nil {
				v.add(p+".when.identities["+strconv.Itoa(j)+"]", "unknown identity %q", n)
			}
		}
		v.targetRefs(p+".when.targets", r.When.Targets)
		for j, cl := range r.When.Classes {
			if !cl.Valid() {
				v.add(p+".when.classes["+strconv.Itoa(j)+"]", "unknown class %q (want one of %s)", cl, join(Classes()))
			}
		}
		for j, t := range r.When.Tables {
			if t == "" {
				v.add(p+".when.tables["+strconv.Itoa(j)+"]", "empty table name")
			}
		}
		for j, c := range r.When.Commands {
			if len(strings.Fields(c)) == 0 {
				v.add(p+".when.commands["+strconv.Itoa(j)+"]", "empty command pattern")
			}
		}
		for j, f := range r.When.Forwards {
			if h, port, ok := strings.Cut(f, ":"); !ok || h == "" || port == "" || strings.ContainsAny(f, " \t") {
				v.add(p+".when.forwards["+strconv.Itoa(j)+"]", "%q is not a host:port pattern", f)
			}
		}
		if (r.Action == ActionAllow || r.Action == ActionMask) && len(r.When.Forwards) == 0 &&
			slices.ContainsFunc(r.When.Classes, func(c Class) bool { return c == ClassForwardLocal || c == ClassForwardRemote }) {
			v.add(p+".when.forwards", "required: a rule that allows port forwarding names the destinations it allows")
		}
		for j, w := range r.When.Time {
			if _, err := w.compile(); err != nil {
				v.add(p+".when.time["+strconv.Itoa(j)+"]", "%w", err)
			}
		}
		switch {
		case r.Action == "":
			v.add(p+".action", "required (allow, deny, review or mask)")
		case !r.Action.Valid():
			v.add(p+".action", "unknown action %q (want allow, deny, review or mask)", r.Action)
		}
		a := &r.Approvers
		switch {
		case r.Action == ActionReview:
			v.approvers(p+".approvers", a)
		case len(a.Identities) > 0 || len(a.Groups) > 0 || a.Min != 0 || a.Timeout != 0:
			v.add(p+".approvers", "only review rules have approvers")
		}
	}
}

func (v *validator) approvers(p string, a *Approvers) {
	if len(a.Identities) == 0 && len(a.Groups) == 0 {
		v.add(p, "review needs approvers: identities, groups or both")
	}
	if len(v.c.OIDC.Issuers) == 0 {
		v.add(p, "approvers prove who they are with OIDC tokens: add oidc.issuers")
	}
	for j, n := range a.Identities {
		pj := p + ".identities[" + strconv.Itoa(j) + "]"
		switch id := v.identity[n]; {
		case id == nil:
			v.add(pj, "unknown identity %q", n)
		case id.OIDC == nil:
			v.add(pj, "identity %q has no oidc section: approvers prove who they are with OIDC tokens", n)
		}
	}
	for j, g := range a.Groups {
		if g == "" {
			v.add(p+".groups["+strconv.Itoa(j)+"]", "empty group")
		}
	}
	if a.Min < 0 {
		v.add(p+".min", "%d approvers: want 1 or more (0 means 1)", a.Min)
	}
	if a.Timeout <= 0 {
		v.add(p+".timeout", "review needs a positive timeout, like 15m")
	}
}

func (v *validator) masking() {
	seen := map[string]string{}
	for i := range v.c.Masking {
		m := &v.c.Masking[i]
		p := "masking[" + strconv.Itoa(i) + "]"
		v.name(p+".id", "masking id", m.ID, seen)
		v.targetRefs(p+".targets", m.Targets)
		if len(m.Columns) == 0 && len(m.Detectors) == 0 && len(m.Patterns) == 0 {
			v.add(p, "set columns, detectors, patterns or several of them")
		}
		for j, col := range m.Columns {
			v.columnPattern(p+".columns["+strconv.Itoa(j)+"]", col)
		}
		for j, d := range m.Detectors {
			if !d.Valid() {
				v.add(p+".detectors["+strconv.Itoa(j)+"]", "unknown detector %q (want one of %s)", d, join(Detectors()))
			}
		}
		names := map[string]string{}
		for j, pt := range m.Patterns {
			pj := p + ".patterns[" + strconv.Itoa(j) + "]"
			if Detector(pt.Name).Valid() {
				v.add(pj+".name", "%q is a built-in detector: list it in detectors instead", pt.Name)
			} else {
				v.name(pj+".name", "pattern name", pt.Name, names)
			}
			v.regex(pj+".regex", pt.Regex)
		}
		switch {
		case m.Style == "":
			v.add(p+".style", "required (redact, partial or hash)")
		case !m.Style.Valid():
			v.add(p+".style", "unknown style %q (want redact, partial or hash)", m.Style)
		}
		switch {
		case m.Keep < 0 || m.Keep > maxKeep:
			v.add(p+".keep", "keep %d out of range (0 to %d; 0 means 4)", m.Keep, maxKeep)
		case m.Keep != 0 && m.Style != MaskPartial:
			v.add(p+".keep", "only the partial style keeps characters")
		}
		switch {
		case m.Style == MaskHash && m.HashKeyFile == "":
			v.add(p+".hash_key_file", "required by the hash style (an absolute path to a root-only key file): an unkeyed hash can be reversed by trying every value")
		case m.Style == MaskHash:
			v.absPath(p+".hash_key_file", m.HashKeyFile, true)
		case m.HashKeyFile != "":
			v.add(p+".hash_key_file", "only the hash style uses a key")
		}
		switch {
		case m.Binary == "":
		case !m.Binary.Valid():
			v.add(p+".binary", "unknown binary action %q (want refuse or nullify)", m.Binary)
		case len(m.Columns) == 0:
			v.add(p+".binary", "only entries with columns have a binary action")
		}
		for j, n := range m.Exempt {
			if v.identity[n] == nil {
				v.add(p+".exempt["+strconv.Itoa(j)+"]", "unknown identity %q", n)
			}
		}
	}
}

// maxKeep is the most characters a partial style may keep.
const maxKeep = 16

// columnPattern checks a masking column pattern: schema.table.column, each
// part a name or a glob with '*'.
func (v *validator) columnPattern(p, s string) {
	if s == "" {
		v.add(p, "empty column pattern")
		return
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || slices.Contains(parts, "") {
		v.add(p, "bad column pattern %q (want schema.table.column, each part a name or a glob with *, like *.*.ssn)", s)
	}
}

// regex checks a custom detector's expression: it compiles and cannot
// match an empty string, as ^, \b or x* can: such a pattern matches at
// every position of every value.
func (v *validator) regex(p, s string) {
	if s == "" {
		v.add(p, "required")
		return
	}
	if _, err := regexp.Compile(s); err != nil {
		v.add(p, "bad regex: %w", err)
		return
	}
	re, err := syntax.Parse(s, syntax.Perl)
	if err != nil || minMatchLen(re.Simplify()) == 0 {
		v.add(p, "regex %q can match an empty string", s)
	}
}

// minMatchLen returns the fewest characters re can match.
func minMatchLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minMatchLen(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min * minMatchLen(re.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, sub := range re.Sub {
			n += minMatchLen(sub)
		}
		return n
	case syntax.OpAlternate:
		n := math.MaxInt
		for _, sub := range re.Sub {
			n = min(n, minMatchLen(sub))
		}
		return n
	}
	// Empty matches, anchors, word boundaries, x* and x?.
	return 0
}

func (v *validator) audit() {
	a := &v.c.Audit
	if !a.Sync.Valid() {
		v.add("audit.sync", "unknown sync mode %q (want always or batch)", a.Sync)
	}
	v.positive("audit.flush_interval", a.FlushInterval)
	if a.FlushInterval > Duration(time.Second) {
		v.add("audit.flush_interval", "%s is more than 1s: a power loss could lose that much of the audit trail", a.FlushInterval)
	}
	v.positive("audit.checkpoint_interval", a.CheckpointInterval)
	v.positive("audit.retention", a.Retention)
	v.positive("audit.ship.interval", a.Ship.Interval)
	if a.Ship.URL != "" {
		v.url("audit.ship.url", a.Ship.URL)
	}
	v.absPath("audit.ship.ca", a.Ship.CA, false)
	v.absPath("audit.ship.token_file", a.Ship.TokenFile, false)
}

func (v *validator) log() {
	switch v.c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		v.add("log.level", "unknown level %q (want debug, info, warn or error)", v.c.Log.Level)
	}
	switch v.c.Log.Format {
	case "", "text", "json":
	default:
		v.add("log.format", "unknown format %q (want text or json)", v.c.Log.Format)
	}
}

func (v *validator) metrics() {
	l := v.c.Metrics.Listen
	if l == "" {
		return
	}
	ap, err := netip.ParseAddrPort(l)
	switch {
	case err != nil:
		v.add("metrics.listen", "want a loopback address and port such as 127.0.0.1:9464, not %q", l)
	case !ap.Addr().IsLoopback():
		v.add("metrics.listen", "%s is not a loopback address: the endpoint has no authentication (put a TLS proxy in front to scrape it from elsewhere)", ap.Addr())
	case ap.Port() == 0:
		v.add("metrics.listen", "want a port")
	}
}

func (v *validator) targetRefs(p string, names []string) {
	for j, n := range names {
		if _, ok := v.targetPaths[n]; !ok {
			v.add(p+"["+strconv.Itoa(j)+"]", "unknown target %q", n)
		}
	}
}

func (v *validator) positive(p string, d Duration) {
	if d <= 0 {
		v.add(p, "want a positive duration, not %s", d)
	}
}

// absPath checks that s is an absolute, clean path; empty is fine unless
// required. It reports whether s is one.
func (v *validator) absPath(p, s string, required bool) bool {
	switch {
	case s == "":
		if required {
			v.add(p, "required (an absolute path)")
		}
	case !path.IsAbs(s):
		v.add(p, "%q is not an absolute path", s)
	case path.Clean(s) != s:
		v.add(p, "%q is not a clean path (want %q)", s, path.Clean(s))
	default:
		return true
	}
	return false
}

func (v *validator) cgroup(p, s string) {
	switch {
	case !strings.HasPrefix(s, "/"):
		v.add(p, "%q must start with / (paths are relative to the cgroup2 mount, like /system.slice/cron.service)", s)
	case path.Clean(s) != s:
		v.add(p, "%q is not a clean path (want %q)", s, path.Clean(s))
	}
}

func (v *validator) unit(p, s string) {
	if !validUnit(s) {
		v.add(p, "bad systemd unit %q (want a name like nightly.service, .scope or .slice)", s)
	}
}

func (v *validator) uid(p string, uid uint32) {
	if uid == math.MaxUint32 {
		v.add(p, "4294967295 is not a uid")
	}
}

// url checks an issuer or collector URL: https, or http on loopback for
// tests.
func (v *validator) url(p, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		v.add(p, "bad URL: %w", err)
	case u.Host == "" || u.Opaque != "":
		v.add(p, "bad URL %q (want https://host/...)", s)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		v.add(p, "bad URL %q: user info, query and fragment are not allowed", s)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		v.add(p, "%q must use https (http only on localhost and loopback addresses)", s)
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// validName reports whether s is 1 to maxLen letters, digits, '.', '-' and
// '_', starting with a letter or digit: safe in records, log origins and
// command lines.
func validName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen || !isAlnum(s[0]) {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// validUnit reports whether s is a systemd unit name of a kind that has a
// cgroup: service, scope, slice, socket, mount or swap, and not a template.
func validUnit(s string) bool {
	dot := strings.LastIndexByte(s, '.')
	if dot <= 0 || len(s) > 255 || s[dot-1] == '@' {
		// A template ("name@.service") has no cgroup; its instances do.
		return false
	}
	switch s[dot+1:] {
	case "service", "scope", "slice", "socket", "mount", "swap":
	default:
		return false
	}
	for _, c := range []byte(s[:dot]) {
		if !isAlnum(c) && !strings.ContainsRune(":-_.\\@", rune(c)) {
			return false
		}
	}
	return true
}

// join lists values for a message: "a, b, c".
func join[T ~string](vals []T) string {
	s := make([]string, len(vals))
	for i, x := range vals {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

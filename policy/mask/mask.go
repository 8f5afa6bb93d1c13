// SPDX-License-Identifier: Apache-2.0

// Package mask hides sensitive values in what leaves a protected database:
// result rows, COPY output, error and notice fields, notification payloads,
// and the statement parameters the audit log keeps.
//
// A [Masker] is compiled once per target from the config's masking entries
// (policy.Masking). Each session gets a [Session], which drops the entries
// its identity or grants are exempt from. For each result, the relay turns
// the RowDescription into a [Plan] (which column is masked by which rule,
// which columns detectors scan), and streams every DataRow through a
// [Tally], which rewrites values in place, one row at a time, and counts
// what it masked for the audit record.
//
// Two kinds of rule exist:
//
//   - Column rules (columns: ["public.customers.email", "*.*.ssn"]) mask
//     the whole value of a table column. The column is identified by the
//     table OID and attribute number of the RowDescription, resolved through
//     the catalog, so aliases and SELECT * do not bypass them.
//   - Detectors (detectors: [email, card_number, ...]; patterns: custom
//     regular expressions) find sensitive values inside any text value and
//     mask only what they find.
//
// Three styles write the masked value: redact ("[MASKED:<rule or
// detector>]"), partial (the last few characters kept, the rest '*') and
// hash ("hmac:" and 16 hex digits of a keyed HMAC-SHA256, so equal values
// stay equal for joins in logs, while nobody without the key can confirm a
// guess).
//
// What masking cannot see: values of a column rule's column computed in an
// expression (upper(email), ssn || '-') carry no table OID; they are
// masked only if detectors find them, or if the pattern is "*.*.name" and
// the expression keeps the column's name. Detectors read text: they do not
// look into numbers, bytea, or binary-format values of non-text types.
package mask

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/internal/secretfile"
	"github.com/tollgate-dev/tollgate/policy"
)

// Errors that callers may test for with [errors.Is].
var (
	// ErrRefused is wrapped by a [*RefuseError]: a result has a column
	// under a rule that cannot be masked in the form the client asked for,
	// and the rule says to refuse. The relay answers SQLSTATE 0A000.
	ErrRefused = errors.New("masked column cannot be sent in this form")
	// ErrColumnCount is returned when a row or COPY line does not have the
	// plan's number of columns: the relay has lost track of the protocol
	// and must not guess.
	ErrColumnCount = errors.New("column count differs from the row description")
	// ErrCopyLine is returned for a COPY line that is not well formed in
	// its format.
	ErrCopyLine = errors.New("malformed COPY line")
	// ErrFormats is returned when a Bind's result format codes do not fit
	// the row description.
	ErrFormats = errors.New("result format codes do not match the columns")
	// ErrNoResolver is returned when column rules apply but no resolver
	// was given to name table columns.
	ErrNoResolver = errors.New("column rules need a column resolver")
	// ErrUnknownTable is returned by a [Resolver] for a table OID the
	// catalog does not show, such as a table created in the session's
	// uncommitted transaction. [Session.Plan] then treats the field like
	// an expression: detectors apply, and only "*.*.name" patterns match,
	// by the name the client sees. Any other resolver error fails the
	// plan.
	ErrUnknownTable = errors.New("table not in the catalog")
	// ErrKeyFile is wrapped by errors about a hash key file that is not
	// safe to use: not a regular file, not owned by root, readable by
	// others, or too short.
	ErrKeyFile = errors.New("unsafe hash key file")
)

// A RefuseError names the column and rule that make a result unsendable.
type RefuseError struct {
	Column string // schema.table.column, or the result's column name
	Rule   string // masking entry id
	Reason string // why the value cannot carry a mask
}

// Error says which column, which rule and why.
func (e *RefuseError) Error() string {
	return fmt.Sprintf("column %s is masked by rule %s and %s", e.Column, e.Rule, e.Reason)
}

// Unwrap returns ErrRefused.
func (e *RefuseError) Unwrap() error { return ErrRefused }

// MinKeyLen is the shortest hash key accepted: 32 bytes, such as the
// output of `openssl rand -base64 32` (44 characters).
const MinKeyLen = 32

// DefaultMaxScan is the default [Options.MaxScan].
const DefaultMaxScan = 16 << 20

// Options tune a Masker. The zero value is the daemon's configuration.
type Options struct {
	// ReadKey reads a hash style's key file. Nil means [ReadKeyFile].
	ReadKey func(path string) ([]byte, error)
	// MaxScan is the largest value detectors scan, in bytes; a larger
	// value under detectors is replaced whole by "[MASKED:oversize]"
	// rather than let through unscanned. 0 means DefaultMaxScan.
	MaxScan int
}

// A Masker holds the masking rules of one target, compiled: regular
// expressions and keys are loaded once here, not per session or row. It is
// safe for concurrent use.
type Masker struct {
	target  string
	rules   []*rule
	kinds   []kind
	maxScan int
}

// kind is a detector or a custom pattern.
type kind struct {
	name string
	find findFunc
}

// New compiles the masking entries that apply to target (those listing it,
// and those listing no target). Entries are expected to have passed
// policy's Validate; New still reports what it cannot compile. Hash keys
// are read here, through opts.ReadKey.
func New(entries []policy.Masking, target string, opts Options) (*Masker, error) {
	m := &Masker{target: target, maxScan: opts.MaxScan}
	if m.maxScan <= 0 {
		m.maxScan = DefaultMaxScan
	}
	readKey := opts.ReadKey
	if readKey == nil {
		readKey = ReadKeyFile
	}
	for _, b := range builtins {
		m.kinds = append(m.kinds, kind{name: string(b.name), find: b.find})
	}
	keys := map[string][]byte{}
	for _, e := range entries {
		if len(e.Targets) > 0 && !slices.Contains(e.Targets, target) {
			continue
		}
		r := &rule{
			id:       e.ID,
			index:    len(m.rules),
			style:    e.Style,
			keep:     e.Keep,
			binary:   e.Binary,
			exempt:   slices.Clone(e.Exempt),
			redacted: redactOpen + e.ID + redactClose,
		}
		if strength(r.style) == 0 {
			return nil, fmt.Errorf("masking %s: unknown style %q", e.ID, e.Style)
		}
		if r.keep <= 0 {
			r.keep = defaultKeep
		}
		if r.binary == "" {
			r.binary = policy.BinaryRefuse
		}
		if r.style == policy.MaskHash {
			k, ok := keys[e.HashKeyFile]
			if !ok {
				var err error
				if k, err = readKey(e.HashKeyFile); err != nil {
					return nil, fmt.Errorf("masking %s: %w", e.ID, err)
				}
				keys[e.HashKeyFile] = k
			}
			if len(k) < MinKeyLen {
				return nil, fmt.Errorf("masking %s: %w: key is %d bytes, want at least %d", e.ID, ErrKeyFile, len(k), MinKeyLen)
			}
			r.key = k
		}
		for _, c := range e.Columns {
			p, err := parseColPattern(c)
			if err != nil {
				return nil, fmt.Errorf("masking %s: %w", e.ID, err)
			}
			r.columns = append(r.columns, p)
		}
		for _, d := range e.Detectors {
			k := builtinKind(d)
			if k < 0 {
				return nil, fmt.Errorf("masking %s: unknown detector %q", e.ID, d)
			}
			r.kinds = append(r.kinds, k)
		}
		for _, p := range e.Patterns {
			re, err := regexp.Compile(p.Regex)
			if err != nil {
				return nil, fmt.Errorf("masking %s: pattern %s: %w", e.ID, p.Name, err)
			}
			r.kinds = append(r.kinds, len(m.kinds))
			m.kinds = append(m.kinds, kind{name: p.Name, find: regexFinder(re)})
		}
		m.rules = append(m.rules, r)
	}
	m.kinds = append(m.kinds, kind{name: oversize})
	return m, nil
}

// oversizeKind is the kind counted for values too large to scan.
func (m *Masker) oversizeKind() int { return len(m.kinds) - 1 }

// Target returns the target the Masker was built for.
func (m *Masker) Target() string { return m.target }

// maxKeyFile bounds a hash key file.
const maxKeyFile = 64 << 10

// ReadKeyFile reads a hash key from path. The file must be a regular file
// (not a symlink) owned by root with no group or other permissions, since
// whoever holds the key can confirm guesses of masked values. The key is
// the file's content without surrounding whitespace, at least MinKeyLen
// bytes.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := secretfile.Read(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	k := []byte(strings.TrimSpace(string(b)))
	if len(k) < MinKeyLen {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want at least %d", ErrKeyFile, path, len(k), MinKeyLen)
	}
	return k, nil
}

// A Subject is who a session serves, as far as exemptions go.
type Subject struct {
	// Identities are the names of the config identities the session
	// matched.
	Identities []string
	// Grants are the ids of masking entries that a current grant exempts
	// the session from.
	Grants []string
}

// An Exemption is a masking entry a session is exempt from, for the
// session's audit record.
type Exemption struct {
	Rule string // masking entry id
	By   string // "identity <name>" or "grant"
}

// A Session is the rules that apply to one client session: the Masker's,
// less the exempt ones. It is safe for concurrent use.
type Session struct {
	m        *Masker
	rules    []*rule
	columns  []*rule // rules with column patterns
	dets     []activeKind
	exempted []Exemption
}

// activeKind is a detector in force and the rule whose style masks what it
// finds (the strongest, when several rules list it).
type activeKind struct {
	kind int
	find findFunc
	rule *rule
}

// Session returns the rules that apply to a session of s.
func (m *Masker) Session(s Subject) *Session {
	ss := &Session{m: m}
	for _, r := range m.rules {
		if ex, ok := exemption(r, s); ok {
			ss.exempted = append(ss.exempted, ex)
			continue
		}
		ss.rules = append(ss.rules, r)
		if len(r.columns) > 0 {
			ss.columns = append(ss.columns, r)
		}
		for _, k := range r.kinds {
			i := slices.IndexFunc(ss.dets, func(a activeKind) bool { return a.kind == k })
			switch {
			case i < 0:
				ss.dets = append(ss.dets, activeKind{kind: k, find: m.kinds[k].find, rule: r})
			case r.stronger(ss.dets[i].rule):
				ss.dets[i].rule = r
			}
		}
	}
	return ss
}

func exemption(r *rule, s Subject) (Exemption, bool) {
	if slices.Contains(s.Grants, r.id) {
		return Exemption{Rule: r.id, By: "grant"}, true
	}
	for _, id := range s.Identities {
		if slices.Contains(r.exempt, id) {
			return Exemption{Rule: r.id, By: "identity " + id}, true
		}
	}
	return Exemption{}, false
}

// Exempted returns the masking entries the session is exempt from, for its
// audit record.
func (s *Session) Exempted() []Exemption { return slices.Clone(s.exempted) }

// Active reports whether any rule applies: when not, the relay can pass
// results through without decoding them.
func (s *Session) Active() bool { return len(s.rules) > 0 }

// Detect returns the sensitive values the session's detectors and patterns
// find in text, overlapping finds merged, in order.
func (s *Session) Detect(text []byte) []Span {
	spans := s.detect(text, nil)
	out := make([]Span, len(spans))
	for i, sp := range spans {
		out[i] = Span{Start: sp.start, End: sp.end, Detector: s.m.kinds[sp.kind].name}
	}
	return out
}

// detect appends to dst[:0] the merged spans of the session's detectors in
// b, in order.
func (s *Session) detect(b []byte, dst []span) []span {
	dst = dst[:0]
	f := scanFlags(b)
	for _, d := range s.dets {
		n := len(dst)
		dst = d.find(b, f, dst)
		for i := n; i < len(dst); i++ {
			dst[i].kind, dst[i].rule = d.kind, d.rule
		}
	}
	return mergeSpans(dst)
}

// mergeSpans sorts spans and merges those that overlap. A merged span is
// masked by the strongest of its rules, and named after the detector of
// that rule's span that starts first.
func mergeSpans(spans []span) []span {
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(x, y span) int {
		if x.start != y.start {
			return x.start - y.start
		}
		return y.end - x.end
	})
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.start >= last.end {
			out = append(out, sp)
			continue
		}
		last.end = max(last.end, sp.end)
		if sp.rule.stronger(last.rule) {
			last.rule, last.kind = sp.rule, sp.kind
		}
	}
	return out
}

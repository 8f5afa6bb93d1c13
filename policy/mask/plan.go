// SPDX-License-Identifier: Apache-2.0

package mask

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/policy"
)

// A Column names a table column.
type Column struct {
	Schema, Table, Name string
}

// String returns schema.table.column.
func (c Column) String() string { return c.Schema + "." + c.Table + "." + c.Name }

// A Resolver names the table column a RowDescription field comes from.
// The relay implements it with a catalog lookup upstream (pg_attribute
// joined to pg_class and pg_namespace), cached per table OID and dropped
// on DDL. Attribute numbers are signed: system columns are negative.
type Resolver interface {
	ResolveColumn(ctx context.Context, table uint32, attnum int16) (Column, error)
}

// ResolverFunc adapts a function to [Resolver].
type ResolverFunc func(ctx context.Context, table uint32, attnum int16) (Column, error)

// ResolveColumn calls f.
func (f ResolverFunc) ResolveColumn(ctx context.Context, table uint32, attnum int16) (Column, error) {
	return f(ctx, table, attnum)
}

// A Field is one result column as a plan sees it.
type Field struct {
	// Name is the column name the client sees (an alias, or ?column?).
	Name string
	// Column is the table column the value comes from; zero for
	// expressions.
	Column Column
	// TypeOID is the value's type; 0 when unknown, which counts as text.
	TypeOID uint32
	// Format is 0 for text, anything else for binary.
	Format int16
}

// colPattern is a parsed "schema.table.column" pattern, lower case.
type colPattern struct {
	parts [3]string
}

func parseColPattern(s string) (colPattern, error) {
	parts := strings.Split(strings.ToLower(s), ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return colPattern{}, fmt.Errorf("bad column pattern %q (want schema.table.column)", s)
	}
	return colPattern{parts: [3]string{parts[0], parts[1], parts[2]}}, nil
}

// matchField reports whether p covers f: its table column when it has
// one; otherwise, only a pattern like "*.*.ssn" can match, by the name the
// client sees, so an expression kept under the column's name is masked
// too.
func (p colPattern) matchField(f *Field) bool {
	if f.Column.Name != "" {
		return glob(p.parts[0], f.Column.Schema) && glob(p.parts[1], f.Column.Table) && glob(p.parts[2], f.Column.Name)
	}
	return p.parts[0] == "*" && p.parts[1] == "*" && glob(p.parts[2], f.Name)
}

// matchTable reports whether p covers some column of schema.table.
func (p colPattern) matchTable(schema, table string) bool {
	return glob(p.parts[0], schema) && glob(p.parts[1], table)
}

// glob matches s against a lower-case pattern in which '*' stands for any
// run of characters, ignoring ASCII case. Identifiers are compared without
// case because unquoted ones are folded by the server, and masking a
// quoted "Email" along with email errs on the safe side.
func glob(pat, s string) bool {
	px, sx := 0, 0
	star, next := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pat) && pat[px] == '*':
			star, next = px, sx
			px++
		case px < len(pat) && pat[px] == lower(s[sx]):
			px++
			sx++
		case star >= 0:
			px = star + 1
			next++
			sx = next
		default:
			return false
		}
	}
	for px < len(pat) && pat[px] == '*' {
		px++
	}
	return px == len(pat)
}

// action is what a plan does to a column's values.
type action uint8

const (
	actNone    action = iota
	actReplace        // the whole value, by the column rule's style
	actNull           // NULL instead, by the column rule's binary action
	actDetect         // detected values inside
)

// repr is how a value's bytes hold text.
type repr uint8

const (
	reprOpaque    repr = iota // not text: numbers, dates, binary forms
	reprText                  // the bytes are the text
	reprJSON                  // the bytes are JSON text
	reprJSONB                 // binary jsonb: a version byte, then JSON text
	reprTextArray             // an array literal of text-like elements
)

// Type OIDs of pg_type that masking tells apart.
const (
	oidChar       = 18
	oidName       = 19
	oidText       = 25
	oidJSON       = 114
	oidXML        = 142
	oidXMLArray   = 143
	oidJSONArray  = 199
	oidUnknown    = 705
	oidCharArray  = 1002
	oidNameArray  = 1003
	oidTextArray  = 1009
	oidBPArray    = 1014
	oidVCArray    = 1015
	oidBPChar     = 1042
	oidVarchar    = 1043
	oidJSONB      = 3802
	oidJSONBArray = 3807
	// firstUserOID is FirstNormalObjectId: types above it were created by
	// users or extensions (enums, citext, composite types). Their text form
	// is text; their binary form is unknown.
	firstUserOID = 16384
)

// reprFor says how a value of type oid in format holds text. Binary forms
// are text only for the types whose send function writes the string's
// bytes.
func reprFor(oid uint32, format int16) repr {
	if format != 0 {
		switch oid {
		case oidChar, oidName, oidText, oidUnknown, oidBPChar, oidVarchar:
			return reprText
		case oidJSON:
			return reprJSON
		case oidJSONB:
			return reprJSONB
		}
		return reprOpaque
	}
	switch oid {
	case 0, oidChar, oidName, oidText, oidUnknown, oidBPChar, oidVarchar, oidXML:
		return reprText
	case oidJSON, oidJSONB:
		return reprJSON
	case oidTextArray, oidVCArray, oidBPArray, oidNameArray, oidCharArray, oidXMLArray, oidJSONArray, oidJSONBArray:
		return reprTextArray
	}
	if oid >= firstUserOID {
		return reprText
	}
	return reprOpaque
}

// A Plan says what happens to each column of one result. It does not
// change once made, so the relay may keep it with a prepared statement and
// use it for every execution, from one goroutine or several; per-result
// state lives in a [Tally].
type Plan struct {
	s     *Session
	n     int       // columns
	cols  []colPlan // nil when nothing is masked
	masks bool
}

// colPlan is what a plan does to one column.
type colPlan struct {
	label string // schema.table.column, or the name the client sees
	act   action
	repr  repr
	rule  *rule // the column rule, for actReplace and actNull
}

// Plan makes the plan for a result described by desc. resultFormats are
// the result format codes of the Bind that made the portal, as in the
// protocol: none means desc's own format codes (right for a simple query
// or a Describe of the portal), one applies to every column, otherwise one
// per column. r names table columns; it is called only when column rules
// apply, once per field with a table OID.
//
// A column under a rule that cannot carry a masked value in its format
// makes Plan fail with a [*RefuseError] when the rule says to refuse.
func (s *Session) Plan(ctx context.Context, desc *pgproto3.RowDescription, resultFormats []int16, r Resolver) (*Plan, error) {
	n := len(desc.Fields)
	if len(resultFormats) > 1 && len(resultFormats) != n {
		return nil, fmt.Errorf("%w: %d format codes for %d columns", ErrFormats, len(resultFormats), n)
	}
	if !s.Active() {
		return &Plan{s: s, n: n}, nil
	}
	fields := make([]Field, n)
	for i := range desc.Fields {
		fd := &desc.Fields[i]
		f := &fields[i]
		f.Name, f.TypeOID, f.Format = string(fd.Name), fd.DataTypeOID, fd.Format
		switch len(resultFormats) {
		case 0:
		case 1:
			f.Format = resultFormats[0]
		default:
			f.Format = resultFormats[i]
		}
		if len(s.columns) == 0 || fd.TableOID == 0 || fd.TableAttributeNumber == 0 {
			continue
		}
		if r == nil {
			return nil, ErrNoResolver
		}
		att := int16(fd.TableAttributeNumber)
		c, err := r.ResolveColumn(ctx, fd.TableOID, att)
		if errors.Is(err, ErrUnknownTable) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("resolve column %d of table %d: %w", att, fd.TableOID, err)
		}
		if c.Name == "" {
			// Failing closed: an unnamed table column cannot be checked
			// against the rules.
			return nil, fmt.Errorf("resolve column %d of table %d: %w", att, fd.TableOID, errors.New("no column name"))
		}
		f.Column = c
	}
	return s.PlanFields(fields)
}

// PlanFields makes a plan from fields the caller describes, as for COPY
// TO, whose column list comes from the statement rather than a
// RowDescription.
func (s *Session) PlanFields(fields []Field) (*Plan, error) {
	p := &Plan{s: s, n: len(fields)}
	if !s.Active() {
		return p, nil
	}
	p.cols = make([]colPlan, len(fields))
	for i := range fields {
		f := &fields[i]
		c := &p.cols[i]
		c.label = f.Name
		if f.Column.Name != "" {
			c.label = f.Column.String()
		}
		c.repr = reprFor(f.TypeOID, f.Format)
		if r := s.columnRule(f); r != nil {
			c.rule = r
			switch {
			case c.repr == reprText || c.repr == reprJSON || c.repr == reprJSONB:
				c.act = actReplace
			case r.binary == policy.BinaryNullify:
				c.act = actNull
			default:
				return nil, &RefuseError{Column: c.label, Rule: r.id, Reason: unmaskableReason(f)}
			}
		} else if len(s.dets) > 0 && c.repr != reprOpaque {
			c.act = actDetect
		}
		p.masks = p.masks || c.act != actNone
	}
	if !p.masks {
		p.cols = nil
	}
	return p, nil
}

func unmaskableReason(f *Field) string {
	if f.Format != 0 {
		return fmt.Sprintf("its binary format (type OID %d) cannot carry a masked value: ask for text results", f.TypeOID)
	}
	return fmt.Sprintf("its type (OID %d) cannot carry a masked value", f.TypeOID)
}

// columnRule returns the strongest column rule covering f, or nil.
func (s *Session) columnRule(f *Field) *rule {
	var best *rule
	for _, r := range s.columns {
		if best != nil && !r.stronger(best) {
			continue
		}
		for _, p := range r.columns {
			if p.matchField(f) {
				best = r
				break
			}
		}
	}
	return best
}

// tableRule returns the strongest column rule covering some column of
// schema.table, or nil.
func (s *Session) tableRule(schema, table string) *rule {
	var best *rule
	for _, r := range s.columns {
		if best != nil && !r.stronger(best) {
			continue
		}
		for _, p := range r.columns {
			if p.matchTable(schema, table) {
				best = r
				break
			}
		}
	}
	return best
}

// CoversTable returns the id of the strongest column rule covering some
// column of schema.table, or "" when none does. An empty schema stands for
// any schema, for a table named without one (the server finds it through
// search_path). The relay uses it to redact every bind parameter of a
// statement that touches such a table, since a parameter may be a masked
// column's value that no detector recognises.
func (s *Session) CoversTable(schema, table string) string {
	if schema == "" {
		schema = "*"
	}
	var best *rule
	for _, r := range s.columns {
		if best != nil && !r.stronger(best) {
			continue
		}
		for _, p := range r.columns {
			if (schema == "*" || glob(p.parts[0], schema)) && glob(p.parts[1], table) {
				best = r
				break
			}
		}
	}
	if best == nil {
		return ""
	}
	return best.id
}

// Redacted returns the placeholder of the masking entry id:
// "[MASKED:<id>]".
func Redacted(id string) string { return redactOpen + id + redactClose }

// Columns returns the number of columns the plan is for.
func (p *Plan) Columns() int { return p.n }

// Masks reports whether the plan can change anything. When it cannot, the
// relay may forward rows without decoding them (checking nothing is lost:
// the row's column count is the server's business then).
func (p *Plan) Masks() bool { return p.masks }

// BinaryCopy returns a [*RefuseError] if the plan masks anything: binary
// COPY output is not parsed, so it can only pass when nothing needs
// masking.
func (p *Plan) BinaryCopy() error {
	for _, c := range p.cols {
		if c.act == actNone {
			continue
		}
		var rule string
		if c.rule != nil {
			rule = c.rule.id
		} else {
			rule = p.s.dets[0].rule.id
		}
		return &RefuseError{Column: c.label, Rule: rule, Reason: "binary COPY output cannot be masked: use text or CSV"}
	}
	return nil
}

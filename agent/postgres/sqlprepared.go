// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// sqlPrepared is what tollgate knows of a session's SQL-level prepared
// statements (PREPARE name AS ...), so that an EXECUTE is judged by what
// it runs. A PREPARE counts once the server confirmed it; while one is in
// flight, an EXECUTE of its name is judged by every statement the name may
// then hold, so that a pipelined or failing PREPARE can never make an
// EXECUTE look like less than it is. Guarded by relay.mu.
type sqlPrepared struct {
	names map[string]*sqlNamed
}

// sqlNamed is what one name may hold.
type sqlNamed struct {
	held    *sqlDef   // confirmed by the server; nil if none
	pending []*sqlDef // PREPAREs sent, not answered yet
}

// sqlDef is a statement prepared with PREPARE.
type sqlDef struct {
	classes []policy.Class
	tables  []string
	text    string // the PREPARE's normalised text
}

// sqlOp is a PREPARE or DEALLOCATE of an execution in flight, applied
// when the server answers: part is the statement's index in its text.
type sqlOp struct {
	op   sql.PreparedOp
	part int
	def  *sqlDef // for a PREPARE
}

func (p *sqlPrepared) named(name string) *sqlNamed {
	if p.names == nil {
		p.names = map[string]*sqlNamed{}
	}
	n := p.names[name]
	if n == nil {
		n = &sqlNamed{}
		p.names[name] = n
	}
	return n
}

// candidates returns what name may hold now.
func (p *sqlPrepared) candidates(name string) []*sqlDef {
	n := p.names[name]
	if n == nil {
		return nil
	}
	out := slices.Clone(n.pending)
	if n.held != nil {
		out = append(out, n.held)
	}
	return out
}

// sent notes the PREPAREs and DEALLOCATEs of an execution about to be
// forwarded, and returns them for done.
func (p *sqlPrepared) sent(info sql.Statement) []sqlOp {
	var ops []sqlOp
	add := func(op sql.PreparedOp, part int, classes []policy.Class, tables []string) {
		switch op.Kind {
		case sql.Prepare:
			d := &sqlDef{classes: classes, tables: tables, text: info.Text}
			n := p.named(op.Name)
			n.pending = append(n.pending, d)
			ops = append(ops, sqlOp{op: op, part: part, def: d})
		case sql.Deallocate, sql.DeallocateAll:
			ops = append(ops, sqlOp{op: op, part: part})
		}
	}
	if len(info.Parts) == 0 {
		add(info.Prepared, 0, info.Classes, info.Tables)
	}
	for i, pt := range info.Parts {
		add(pt.Prepared, i, pt.Classes, pt.Tables)
	}
	return ops
}

// done applies the operations of a finished execution whose first ok
// statements succeeded; the PREPAREs of the others never took effect.
func (p *sqlPrepared) done(ops []sqlOp, ok int) {
	for _, o := range ops {
		applied := o.part < ok
		switch o.op.Kind {
		case sql.Prepare:
			n := p.named(o.op.Name)
			n.pending = slices.DeleteFunc(n.pending, func(d *sqlDef) bool { return d == o.def })
			if applied {
				n.held = o.def
			}
		case sql.Deallocate:
			if applied {
				p.named(o.op.Name).held = nil
			}
		case sql.DeallocateAll:
			if applied {
				for _, n := range p.names {
					n.held = nil
				}
			}
		}
		if n := p.names[o.op.Name]; n != nil && n.held == nil && len(n.pending) == 0 {
			delete(p.names, o.op.Name)
		}
	}
}

// resolve returns info with each EXECUTE judged as what its name may hold:
// the EXECUTE's own classes (without unknown) and tables joined with those
// of every candidate; a PREPARE earlier in the same text counts as a
// candidate, and so does a statement prepared with a Parse of the name
// (protocol returns it, nil if none). An EXECUTE of a name tollgate knows
// nothing of stays unknown. It also returns the texts of the prepared
// statements used, for the record. info itself, which the classifier
// shares, is not changed.
func (p *sqlPrepared) resolve(info sql.Statement, protocol func(name string) *sqlDef) (sql.Statement, []string) {
	if !info.Executes() {
		return info, nil
	}
	var texts []string
	local := map[string][]*sqlDef{} // PREPAREs earlier in this text
	subst := func(op sql.PreparedOp, classes []policy.Class, tables []string) ([]policy.Class, []string) {
		switch op.Kind {
		case sql.Prepare:
			local[op.Name] = append(local[op.Name], &sqlDef{classes: classes, tables: tables, text: info.Text})
			return classes, tables
		case sql.Execute:
		default:
			return classes, tables
		}
		defs := append(p.candidates(op.Name), local[op.Name]...)
		if protocol != nil {
			if d := protocol(op.Name); d != nil {
				defs = append(defs, d)
			}
		}
		if len(defs) == 0 {
			return classes, tables
		}
		cs := slices.DeleteFunc(slices.Clone(classes), func(c policy.Class) bool { return c == policy.ClassUnknown })
		ts := slices.Clone(tables)
		for _, d := range defs {
			cs = append(cs, d.classes...)
			ts = append(ts, d.tables...)
			if !slices.Contains(texts, d.text) {
				texts = append(texts, d.text)
			}
		}
		return sortClasses(cs), sortedUnique(ts)
	}
	out := info
	if len(info.Parts) == 0 {
		out.Classes, out.Tables = subst(info.Prepared, info.Classes, info.Tables)
		return out, texts
	}
	out.Parts = make([]sql.Part, len(info.Parts))
	var all []policy.Class
	var tables []string
	for i, pt := range info.Parts {
		pt.Classes, pt.Tables = subst(pt.Prepared, pt.Classes, pt.Tables)
		out.Parts[i] = pt
		all = append(all, pt.Classes...)
		tables = append(tables, pt.Tables...)
	}
	out.Classes = sortClasses(append(all, policy.ClassMultiStatement))
	out.Tables = sortedUnique(append(tables, info.Tables...))
	return out, texts
}

// sortClasses returns classes in the order of policy.Classes, without
// duplicates.
func sortClasses(cs []policy.Class) []policy.Class {
	var out []policy.Class
	for _, c := range policy.Classes() {
		if slices.Contains(cs, c) {
			out = append(out, c)
		}
	}
	return out
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// unknownExecute reports whether info is one SQL EXECUTE of a name
// tollgate knows nothing of (see relay.resolvePrepared), and the name.
func unknownExecute(info sql.Statement, detail map[string]string) (string, bool) {
	if len(info.Parts) != 0 || info.Prepared.Kind != sql.Execute || detail[audit.DetailPrepared] != preparedUnknown {
		return "", false
	}
	return info.Prepared.Name, true
}

// preparedUnknown is the record's DetailPrepared for an EXECUTE of a name
// tollgate knows nothing of.
const preparedUnknown = "unknown"

// preparedDetail is the record's view of the prepared statements an
// EXECUTE used: their PREPARE texts, normalised.
func preparedDetail(texts []string) string {
	return strings.Join(texts, "; ")
}

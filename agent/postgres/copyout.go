// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"errors"
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/tollgate-dev/tollgate/policy/mask"
)

// errCopySpec wraps why a COPY ... TO STDOUT cannot be masked.
var errCopySpec = errors.New("COPY output cannot be masked")

// copySpec is what masking needs to know of one COPY ... TO STDOUT: a
// query that returns its columns (described, not run, on the catalog
// connection) and the format of its lines.
type copySpec struct {
	query  string
	format mask.CopyFormat
	binary bool
	err    error // the statement could not be read: refuse its output
}

// copySpecs returns the specs of the COPY ... TO STDOUT statements of
// text, in order: the CopyOutResponses of its execution come in that
// order. A text that does not parse yields one spec with an error, so the
// first COPY output is refused.
func copySpecs(text string) []copySpec {
	tree, err := pg_query.Parse(text)
	if err != nil {
		return []copySpec{{err: fmt.Errorf("%w: %w", errCopySpec, err)}}
	}
	var out []copySpec
	for _, raw := range tree.Stmts {
		cs := raw.GetStmt().GetCopyStmt()
		if cs == nil || cs.IsFrom || cs.IsProgram || cs.Filename != "" {
			continue
		}
		out = append(out, copySpecOf(cs, tree.Version))
	}
	return out
}

// copySpecOf reads one COPY ... TO STDOUT statement.
func copySpecOf(cs *pg_query.CopyStmt, version int32) copySpec {
	var sp copySpec
	switch {
	case cs.Query != nil:
		q, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: cs.Query}}})
		if err != nil {
			return copySpec{err: fmt.Errorf("%w: %w", errCopySpec, err)}
		}
		sp.query = q
	case cs.Relation != nil:
		cols := "*"
		if len(cs.Attlist) > 0 {
			names := make([]string, 0, len(cs.Attlist))
			for _, a := range cs.Attlist {
				s := a.GetString_()
				if s == nil {
					return copySpec{err: fmt.Errorf("%w: unexpected column list", errCopySpec)}
				}
				names = append(names, quoteIdent(s.Sval))
			}
			cols = strings.Join(names, ", ")
		}
		rel := quoteIdent(cs.Relation.Relname)
		if cs.Relation.Schemaname != "" {
			rel = quoteIdent(cs.Relation.Schemaname) + "." + rel
		}
		sp.query = "SELECT " + cols + " FROM " + rel
	default:
		return copySpec{err: fmt.Errorf("%w: no table or query", errCopySpec)}
	}
	sp.format = mask.TextCopy()
	var delim, null, quote, escape *string
	for _, o := range cs.Options {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		val, isStr := defString(d)
		switch strings.ToLower(d.Defname) {
		case "format":
			switch strings.ToLower(val) {
			case "csv":
				sp.format = mask.CSVCopy()
			case "binary":
				sp.binary = true
			case "text":
			default:
				return copySpec{err: fmt.Errorf("%w: format %q", errCopySpec, val)}
			}
		case "delimiter":
			delim = &val
		case "null":
			null = &val
		case "quote":
			quote = &val
		case "escape":
			escape = &val
		case "header":
			// HEADER, HEADER true/on/1, HEADER MATCH (COPY FROM only).
			sp.format.Header = d.Arg == nil || !isStr || !isFalse(val)
			if b := d.Arg.GetBoolean(); b != nil {
				sp.format.Header = b.Boolval
			}
			if i := d.Arg.GetInteger(); i != nil {
				sp.format.Header = i.Ival != 0
			}
		}
	}
	if delim != nil {
		if len(*delim) != 1 {
			return copySpec{err: fmt.Errorf("%w: delimiter %q", errCopySpec, *delim)}
		}
		sp.format.Delimiter = (*delim)[0]
	}
	if null != nil {
		sp.format.Null = *null
	}
	if sp.format.CSV {
		if quote != nil {
			if len(*quote) != 1 {
				return copySpec{err: fmt.Errorf("%w: quote %q", errCopySpec, *quote)}
			}
			sp.format.Quote = (*quote)[0]
			sp.format.Escape = sp.format.Quote
		}
		if escape != nil {
			if len(*escape) != 1 {
				return copySpec{err: fmt.Errorf("%w: escape %q", errCopySpec, *escape)}
			}
			sp.format.Escape = (*escape)[0]
		}
	}
	return sp
}

// defString returns an option's value as text, and whether it was given
// as a string or identifier.
func defString(d *pg_query.DefElem) (string, bool) {
	if d.Arg == nil {
		return "", false
	}
	if s := d.Arg.GetString_(); s != nil {
		return s.Sval, true
	}
	return "", false
}

func isFalse(v string) bool {
	switch strings.ToLower(v) {
	case "false", "off", "0", "no":
		return true
	}
	return false
}

// quoteIdent quotes an identifier as the server reads it, exactly.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

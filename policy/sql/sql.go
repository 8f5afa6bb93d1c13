// SPDX-License-Identifier: Apache-2.0

// Package sql tells policy and audit what a PostgreSQL statement text is:
// its text with every literal replaced by a $n placeholder (so literals,
// which may be secrets, never reach the audit log), a fingerprint that is
// equal for statements differing only in literals, its statement classes
// and the tables it names.
//
// The [Classifier] interface hides the parser. [New] returns the
// implementation on libpg_query (pg_query_go, the PostgreSQL 17 grammar),
// with a bounded cache, since clients repeat the same statements.
// Classification is a first version: issue 4 refines the classes (function
// calls inside SELECT, data-modifying CTEs in depth, and so on).
package sql

import (
	"errors"

	"github.com/tollgate-dev/tollgate/policy"
)

// MaxText is the longest normalised text, in bytes, that a Statement
// carries; longer texts are cut (after normalisation, so the cut never
// exposes a literal) and Truncated is set. It keeps audit records well under
// audit.MaxRecordSize.
const MaxText = 64 << 10

// ErrUnparsed means the parser did not accept the statement text. The
// statement is then classified as unknown, and its text is redacted by the
// lexer alone, or withheld entirely when even the lexer fails.
var ErrUnparsed = errors.New("statement did not parse")

// Statement is what classification tells about one statement text (which
// may hold several statements separated by semicolons).
type Statement struct {
	// Text is the normalised text: every literal replaced by $n. It is
	// empty when the text could not be redacted safely (Withheld).
	Text string
	// Fingerprint is libpg_query's fingerprint as 16 hex digits; equal for
	// texts that differ only in literals, whitespace or comments. Empty
	// when the text did not parse.
	Fingerprint string
	// Classes are the statement classes, sorted in the order of
	// policy.Classes and without duplicates.
	Classes []policy.Class
	// Tables are the tables named, as written (schema.table or table),
	// sorted and without duplicates.
	Tables []string
	// Count is the number of statements in the text.
	Count int
	// Parts are the statements of a multi-statement text (Count > 1),
	// each with its own classes and tables, so that each is judged on its
	// own; nil for a single statement, which Classes and Tables describe.
	Parts []Part
	// Truncated says Text was cut at MaxText bytes.
	Truncated bool
	// Withheld says the text could not be redacted (it did not even lex)
	// and Text is empty.
	Withheld bool
	// Err wraps ErrUnparsed when the text did not parse; the other fields
	// then describe the best effort.
	Err error
	// Prepared is what a single statement does to the session's SQL-level
	// prepared statements; Parts carry their own.
	Prepared PreparedOp
}

// PreparedKind is what a statement does to the SQL-level prepared
// statements of a session (PREPARE, EXECUTE, DEALLOCATE), which the text
// of an EXECUTE does not show: the caller keeps them per session.
type PreparedKind uint8

// Kinds of PreparedOp.
const (
	// PreparedNone: the statement does not use them.
	PreparedNone PreparedKind = iota
	// Prepare is PREPARE name AS statement; the Statement's (or Part's)
	// Classes and Tables are those of the statement prepared.
	Prepare
	// Execute is EXECUTE name, also inside EXPLAIN or CREATE TABLE AS: what
	// runs is what name was prepared as, so its classes are unknown here.
	Execute
	// Deallocate is DEALLOCATE name.
	Deallocate
	// DeallocateAll is DEALLOCATE ALL or DISCARD ALL.
	DeallocateAll
)

// PreparedOp is a statement's use of an SQL-level prepared statement.
type PreparedOp struct {
	Kind PreparedKind
	// Name is the prepared statement's name, as the server folds it.
	Name string
}

// Executes reports whether a statement of the text runs an SQL-level
// prepared statement (EXECUTE).
func (s *Statement) Executes() bool {
	if s.Prepared.Kind == Execute {
		return true
	}
	for _, p := range s.Parts {
		if p.Prepared.Kind == Execute {
			return true
		}
	}
	return false
}

// Part is one statement of a multi-statement text.
type Part struct {
	// Classes are the statement's classes, in the order of
	// policy.Classes, without multi_statement.
	Classes []policy.Class
	// Tables are the tables the statement names, sorted.
	Tables []string
	// Prepared is what the statement does to the session's SQL-level
	// prepared statements.
	Prepared PreparedOp
}

// A Classifier classifies statement texts. Implementations are safe for
// concurrent use and never return the raw text, or any part of a literal,
// in Statement.Text.
type Classifier interface {
	Classify(text string) Statement
}

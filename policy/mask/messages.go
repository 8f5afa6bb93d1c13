// SPDX-License-Identifier: Apache-2.0

package mask

import (
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// MaskText returns text with what the session's detectors and patterns
// find masked, and how many values were masked. It is for free text that
// leaves by other ways than rows: statement parameters written to the
// audit log, error fields, notification payloads. Column rules do not
// apply to free text: nothing says which column it came from.
func (s *Session) MaskText(text string) (string, int) {
	if len(s.dets) == 0 || text == "" {
		return text, 0
	}
	if len(text) > s.m.maxScan {
		return redactOpen + oversize + redactClose, 1
	}
	b := []byte(text)
	spans := s.detect(b, nil)
	if len(spans) == 0 {
		return text, 0
	}
	var m macs
	return string(s.appendSpans(nil, b, spans, false, &m)), len(spans)
}

// MaskError masks an ErrorResponse's free-text fields (message, detail,
// hint, where, internal query, and fields pgproto3 does not know) with the
// session's detectors, in place, and returns how many values it masked.
// When the error names a table (SchemaName and TableName, as constraint
// violations do) and a column rule covers one of its columns, the whole
// detail is redacted, since "Key (ssn)=(123-45-6789) already exists" and
// "Failing row contains (...)" echo column values that no detector may
// recognise. For a "Key (a, b)=(...)" detail, only when a rule covers one
// of the columns it lists.
func (s *Session) MaskError(e *pgproto3.ErrorResponse) int {
	n := 0
	if e.Detail != "" && e.SchemaName != "" && e.TableName != "" {
		if r := s.detailRule(e.SchemaName, e.TableName, e.Detail); r != nil {
			e.Detail = r.redacted
			n++
		}
	}
	for _, f := range []*string{&e.Message, &e.Detail, &e.Hint, &e.Where, &e.InternalQuery} {
		var k int
		*f, k = s.MaskText(*f)
		n += k
	}
	for _, code := range slices.Sorted(maps.Keys(e.UnknownFields)) {
		v, k := s.MaskText(e.UnknownFields[code])
		if k > 0 {
			e.UnknownFields[code] = v
			n += k
		}
	}
	return n
}

// MaskNotice does for a NoticeResponse (RAISE NOTICE '%', secret) what
// MaskError does for an ErrorResponse.
func (s *Session) MaskNotice(nr *pgproto3.NoticeResponse) int {
	return s.MaskError((*pgproto3.ErrorResponse)(nr))
}

// MaskNotification masks a NotificationResponse's payload (NOTIFY channel,
// 'secret') with the session's detectors, in place, and returns how many
// values it masked.
func (s *Session) MaskNotification(nr *pgproto3.NotificationResponse) int {
	var n int
	nr.Payload, n = s.MaskText(nr.Payload)
	return n
}

// detailRule returns the column rule that makes an error detail about
// schema.table unsafe to send, or nil.
func (s *Session) detailRule(schema, table, detail string) *rule {
	r := s.tableRule(schema, table)
	if r == nil {
		return nil
	}
	// "Key (email, lower(name))=(...)": unique, foreign key and exclusion
	// violations list the key's columns. Anything else, including a
	// translated message, is judged by the table alone.
	rest, ok := strings.CutPrefix(detail, "Key (")
	if !ok {
		return r
	}
	list, _, ok := strings.Cut(rest, ")=(")
	if !ok {
		return r
	}
	var best *rule
	for name := range strings.SplitSeq(list, ", ") {
		if unq, ok := strings.CutPrefix(name, `"`); ok {
			name = strings.TrimSuffix(unq, `"`)
		}
		if !isIdentifier(name) {
			return r // an expression: it may hold any column
		}
		f := Field{Name: name, Column: Column{Schema: schema, Table: table, Name: name}}
		if c := s.columnRule(&f); c != nil && c.stronger(best) {
			best = c
		}
	}
	return best
}

// isIdentifier reports whether s can be a column name as an error detail
// lists it, rather than an index expression.
func isIdentifier(s string) bool {
	return s != "" && !strings.ContainsAny(s, "()'|:+ ")
}

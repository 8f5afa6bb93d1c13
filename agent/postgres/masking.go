// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// ReasonMaskRefused ends a session whose open transaction had a result
// refused by masking: the client cannot be left to commit a transaction
// part of whose result it never saw, so closing makes the server roll it
// back.
const ReasonMaskRefused = "result refused by masking"

// Detail keys of statement and result records written by masking.
const (
	// detailMasked is the total of values masked in a result, the key
	// audit's report sums.
	detailMasked = "masked"
	// detailMaskedColumns is what was masked per column, as JSON
	// (mask.ColumnCount), never the values.
	detailMaskedColumns = "masked_columns"
	// detailMaskRefused says why a result was refused (SQLSTATE 0A000).
	detailMaskRefused = "masking_refused"
	// detailParamValues is an Execute's bind parameters, masked.
	detailParamValues = "param_values"
)

// Bounds of the bind parameters a statement record shows.
const (
	maxParamShown  = 64   // bytes of one parameter, after masking
	maxParamsShown = 1024 // bytes of all of them
)

// errNoDescription means rows arrived for a result whose columns tollgate
// does not know, so it cannot tell what to mask.
var errNoDescription = errors.New("tollgate did not see the result described")

// maskState is a session's masking. Its result fields belong to the server
// goroutine.
type maskState struct {
	sess *mask.Session
	cat  *catalog

	cur     *resultMask // the result being sent, nil between results
	swallow bool        // a result was refused: drop until ReadyForQuery
	ddl     bool        // DDL ran in the open transaction
	wbuf    []byte
}

// resultMask is one result being masked.
type resultMask struct {
	plan  *mask.Plan
	tally *mask.Tally
	exec  *exec
	copy  *mask.CopyFormat // COPY ... TO STDOUT in text or CSV
}

// cachedPlan is a plan with the catalog generation it was made under.
type cachedPlan struct {
	plan *mask.Plan
	gen  uint64
}

// invalidating are the classes after which cached column names may be
// wrong: DDL, and what tollgate cannot see into.
var invalidating = []policy.Class{policy.ClassDDL, policy.ClassFunctionCall, policy.ClassUnknown}

func changesCatalog(info sql.Statement) bool {
	if len(info.Classes) == 0 {
		return true
	}
	for _, c := range info.Classes {
		if slices.Contains(invalidating, c) {
			return true
		}
	}
	return false
}

// maskStatement notes what masking needs of a simple query just queued.
// Called by the client goroutine.
func (r *relay) maskStatement(info sql.Statement, text string) {
	if r.mk == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var copies []copySpec
	if slices.Contains(info.Classes, policy.ClassCopyOut) {
		copies = copySpecs(r.readText(text))
	}
	if f := r.st.last(); f != nil && f.kind == expectQuery && f.exec != nil {
		f.exec.ddl = changesCatalog(info)
		f.exec.copies = copies
	}
}

// readText is a statement text as the server reads it (it was classified
// so, see relay.classify). Called with mu held.
func (r *relay) readText(raw string) string {
	if text, err := r.enc.decode(raw); err == nil {
		return text
	}
	return raw
}

// maskParse keeps the COPY specs of a prepared COPY ... TO STDOUT, once
// the Parse is forwarded. Called by the client goroutine with mu held.
func (r *relay) maskParse(name, text string) {
	if r.mk == nil {
		return
	}
	if ps := r.st.stmts[name]; ps != nil && slices.Contains(ps.info.Classes, policy.ClassCopyOut) {
		ps.copies = copySpecs(r.readText(text))
	}
}

// maskBind keeps the masked bind parameters for the Execute's record.
// Called by the client goroutine.
func (r *relay) maskBind(b *pgproto3.Bind) {
	if r.mk == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pt := r.st.portals[b.DestinationPortal]
	if pt == nil || len(b.Parameters) == 0 {
		return
	}
	var tables []string
	if pt.stmt != nil {
		tables = pt.stmt.info.Tables
	}
	pt.paramLog = paramLog(r.mk.sess, b, tables)
}

// paramLog shows bind parameters for the log: each text parameter with
// the session's detectors applied, or all of them redacted when the
// statement touches a table a column rule covers (a parameter may then be
// a masked column's value, which no detector need recognise); binary
// parameters by size only.
func paramLog(s *mask.Session, b *pgproto3.Bind, tables []string) string {
	rule := ""
	for _, t := range tables {
		schema, table, ok := strings.Cut(t, ".")
		if !ok {
			schema, table = "", t
		}
		if rule = s.CoversTable(schema, table); rule != "" {
			break
		}
	}
	vals := make([]string, len(b.Parameters))
	total := 0
	for i, p := range b.Parameters {
		var v string
		switch {
		case p == nil:
			v = "NULL"
		case rule != "":
			v = mask.Redacted(rule)
		case paramFormat(b.ParameterFormatCodes, i) != 0:
			v = "(binary, " + strconv.Itoa(len(p)) + " bytes)"
		default:
			v, _ = s.MaskText(string(p))
			if len(v) > maxParamShown {
				v = truncateUTF8(v, maxParamShown) + "…"
			}
			v = strconv.Quote(v)
		}
		total += len(v)
		if total > maxParamsShown {
			vals = append(vals[:i], "…")
			break
		}
		vals[i] = v
	}
	return strings.Join(vals, ", ")
}

func paramFormat(codes []int16, i int) int16 {
	switch len(codes) {
	case 0:
		return 0
	case 1:
		return codes[0]
	}
	if i < len(codes) {
		return codes[i]
	}
	return 0
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// maskParams adds an Execute's masked bind parameters to its statement
// record's detail. Called by the client goroutine.
func (r *relay) maskParams(portalName string, detail map[string]string) {
	if r.mk == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if pt := r.st.portals[portalName]; pt != nil && pt.paramLog != "" {
		detail[detailParamValues] = pt.paramLog
	}
}

// maskExecuted prepares the masking of an Execute just queued (and about
// to be forwarded): it attaches the portal, as it is now (a later Bind
// may replace its name), to the queued response and, when nothing will
// tell tollgate the result's columns before its rows come (no Describe
// of the portal or its statement was sent), sends a Describe of the
// portal ahead of the Execute, whose answer is kept from the client.
// Called by the client goroutine before the Execute is added to the
// messages to forward.
func (r *relay) maskExecuted(portalName string, info sql.Statement) {
	if r.mk == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pt := r.st.portals[portalName]
	e := r.st.last()
	if e == nil || e.kind != expectExecute || e.exec == nil {
		return
	}
	e.portal = pt
	e.exec.ddl = changesCatalog(info)
	if pt == nil {
		return
	}
	if pt.stmt != nil {
		e.exec.copies = pt.stmt.copies
	}
	if pt.describing || (pt.stmt != nil && pt.stmt.describing) {
		return
	}
	body := append([]byte{'P'}, portalName...)
	body = append(body, 0)
	r.out = appendFrame(r.out, 'D', body)
	pt.describing = true
	r.st.insertBeforeLast(&expect{kind: expectDescribe, objType: 'P', name: portalName, portal: pt, ownDescribe: true})
}

// maskDetail adds an execution's masking counts to its result record.
func maskDetail(e *exec, d map[string]string) {
	if e.refused != "" {
		d[detailMaskRefused] = e.refused
	}
	if len(e.masked) == 0 {
		return
	}
	var total int64
	for _, c := range e.masked {
		total += c.Masked + c.Nulled
		for _, f := range c.Found {
			total += f.Count
		}
	}
	d[detailMasked] = strconv.FormatInt(total, 10)
	if b, err := json.Marshal(e.masked); err == nil {
		d[detailMaskedColumns] = string(b)
	}
}

// mergeCounts adds counts to an execution's (a simple query may return
// several results).
func mergeCounts(dst, add []mask.ColumnCount) []mask.ColumnCount {
	for _, a := range add {
		i := slices.IndexFunc(dst, func(c mask.ColumnCount) bool { return c.Column == a.Column && c.Rule == a.Rule })
		if i < 0 {
			dst = append(dst, a)
			continue
		}
		dst[i].Masked += a.Masked
		dst[i].Nulled += a.Nulled
		for _, f := range a.Found {
			j := slices.IndexFunc(dst[i].Found, func(d mask.DetectorCount) bool { return d.Detector == f.Detector })
			if j < 0 {
				dst[i].Found = append(dst[i].Found, f)
			} else {
				dst[i].Found[j].Count += f.Count
			}
		}
	}
	return dst
}

// front returns the oldest expected response, under the relay's lock.
func (r *relay) front() *expect {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.front()
}

// frontExec is the execution the oldest expected response belongs to, nil
// if none.
func (r *relay) frontExec() *exec {
	if f := r.front(); f != nil {
		return f.exec
	}
	return nil
}

// maskServer handles a server message when masking is on. It reports
// whether it handled the message (read it, forwarded it or not); when it
// did not, the relay's usual path does, with nothing of the message read
// yet. A reason or error ends the session.
func (r *relay) maskServer(typ byte, n int) (handled bool, reason string, err error) {
	m := r.mk
	if m.swallow {
		reason, err = r.swallowMessage(typ, n)
		return true, reason, err
	}
	switch typ {
	case typeRowDescription:
		body, err := readBody(r.ur, &r.ubuf, n)
		if err != nil {
			reason, err := r.serverReadEnd(err)
			return true, reason, err
		}
		f := r.front()
		if f != nil && f.kind == expectQuery && f.exec != nil {
			if err := r.startResult(f.exec, body); err != nil {
				return true, "", r.refuseResult(f.exec, err)
			}
		}
		out, forward, stop := r.serverMessage(typ, body)
		switch {
		case out != nil:
			if _, err := r.cw.Write(out); err != nil {
				return true, ReasonClientError, err
			}
		case forward:
			h := frameHeader(typ, n)
			r.cw.Write(h[:])
			if _, err := r.cw.Write(body); err != nil {
				return true, ReasonClientError, err
			}
		}
		if stop != nil {
			r.cw.Flush()
			return true, ReasonUnsafe, stop
		}
		return true, "", nil
	case typeNoData:
		r.mu.Lock()
		f := r.st.front()
		injected := f != nil && f.kind == expectDescribe && f.ownDescribe
		r.serverState(typ)
		r.mu.Unlock()
		if n != 0 {
			return true, ReasonUpstreamError, fmt.Errorf("%w: NoData with a body", ErrProtocol)
		}
		if !injected {
			h := frameHeader(typ, 0)
			if _, err := r.cw.Write(h[:]); err != nil {
				return true, ReasonClientError, err
			}
		}
		return true, "", nil
	case typeDataRow:
		res, perr := r.currentResult()
		if perr != nil {
			e := r.frontExec()
			if err := r.refuseResult(e, perr); err != nil {
				return true, ReasonClientError, err
			}
			reason, err = r.swallowMessage(typ, n)
			return true, reason, err
		}
		if !res.plan.Masks() {
			return false, "", nil
		}
		body, err := readBody(r.ur, &r.ubuf, n)
		if err != nil {
			reason, err := r.serverReadEnd(err)
			return true, reason, err
		}
		out, _, err := res.tally.AppendRow(m.wbuf[:0], body)
		releaseBody(&r.ubuf)
		if err != nil {
			// The server sent a row that does not fit its description:
			// tollgate lost track and must not guess.
			return true, ReasonProtocol, fatalf(codeProtocolViolation, err, "tollgate could not mask a row: session closed")
		}
		m.wbuf = out
		r.mu.Lock()
		r.serverState(typ)
		r.mu.Unlock()
		_, err = r.cw.Write(out)
		if cap(m.wbuf) > batchMax {
			m.wbuf = nil
		}
		if err != nil {
			return true, ReasonClientError, err
		}
		return true, "", nil
	case typeCopyOutResponse:
		body, err := readBody(r.ur, &r.ubuf, n)
		if err != nil {
			reason, err := r.serverReadEnd(err)
			return true, reason, err
		}
		e := r.frontExec()
		if err := r.startCopy(e, body); err != nil {
			return true, "", r.refuseResult(e, err)
		}
		h := frameHeader(typ, n)
		r.cw.Write(h[:])
		if _, err := r.cw.Write(body); err != nil {
			return true, ReasonClientError, err
		}
		return true, "", nil
	case typeCopyData:
		if m.cur == nil || m.cur.copy == nil || !m.cur.plan.Masks() {
			return false, "", nil
		}
		body, err := readBody(r.ur, &r.ubuf, n)
		if err != nil {
			reason, err := r.serverReadEnd(err)
			return true, reason, err
		}
		line, _, err := m.cur.tally.MaskCopyLine(m.cur.copy, body)
		if err != nil {
			return true, ReasonProtocol, fatalf(codeProtocolViolation, err, "tollgate could not mask a COPY line: session closed")
		}
		h := frameHeader(typ, len(line))
		r.cw.Write(h[:])
		_, err = r.cw.Write(line)
		releaseBody(&r.ubuf)
		if err != nil {
			return true, ReasonClientError, err
		}
		return true, "", nil
	case typeErrorResponse, typeNoticeResponse, typeNotificationResponse:
		body, err := readBody(r.ur, &r.ubuf, n)
		if err != nil {
			reason, err := r.serverReadEnd(err)
			return true, reason, err
		}
		if typ == typeErrorResponse {
			r.endResult()
			out, forward, stop := r.serverMessage(typ, body)
			if stop != nil {
				return true, ReasonUnsafe, stop
			}
			switch {
			case out != nil:
				// The server's raise of a refusal, without its context.
				body = out[5:]
			case !forward:
				return true, "", nil
			}
		}
		reason, err = r.forwardMasked(typ, body)
		return true, reason, err
	case typeFunctionCallResponse:
		body, err := readBody(r.ur, &r.ubuf, n)
		if err != nil {
			reason, err := r.serverReadEnd(err)
			return true, reason, err
		}
		var fr pgproto3.FunctionCallResponse
		if err := fr.Decode(body); err != nil {
			return true, ReasonUpstreamError, fmt.Errorf("%w: malformed function call response: %w", ErrProtocol, err)
		}
		out := body
		if fr.Result != nil {
			if v, k := m.sess.MaskText(string(fr.Result)); k > 0 {
				fr.Result = []byte(v)
				r.mu.Lock()
				if f := r.st.front(); f != nil && f.exec != nil {
					f.exec.masked = mergeCounts(f.exec.masked, []mask.ColumnCount{{Column: "function result",
						Found: []mask.DetectorCount{{Detector: "detectors", Count: int64(k)}}}})
				}
				r.mu.Unlock()
				if out, err = fr.Encode(nil); err != nil {
					return true, ReasonUpstreamError, err
				}
				out = out[5:]
			}
		}
		h := frameHeader(typ, len(out))
		r.cw.Write(h[:])
		_, err = r.cw.Write(out)
		releaseBody(&r.ubuf)
		return true, "", err
	case typeCommandComplete, typeEmptyQueryResponse, typePortalSuspended:
		r.endResult()
	case typeReadyForQuery:
		r.endResult()
		r.readyForQueryMask(n)
	}
	return false, "", nil
}

// readyForQueryMask drops cached column names after DDL: at once, and
// again when the transaction that ran it ends (the catalog connection sees
// it only then).
func (r *relay) readyForQueryMask(n int) {
	if !r.mk.ddl {
		return
	}
	if b, err := r.ur.Peek(n); err == nil {
		r.readyForQueryDDL(b)
	}
}

// readyForQueryDDL drops cached column names at a ReadyForQuery (body)
// after DDL, and stops doing so once no transaction is open.
func (r *relay) readyForQueryDDL(body []byte) {
	m := r.mk
	if !m.ddl {
		return
	}
	m.cat.invalidate()
	if len(body) == 1 && body[0] == 'I' {
		m.ddl = false
	}
}

// executedDDL is called when an execution that may have changed the
// catalog finished.
func (r *relay) executedDDL(e *exec) {
	if r.mk == nil || !e.ddl {
		return
	}
	r.mk.ddl = true
	r.mk.cat.invalidate()
}

// startResult makes the plan of a simple query's result from its
// RowDescription.
func (r *relay) startResult(e *exec, body []byte) error {
	var desc pgproto3.RowDescription
	if err := desc.Decode(body); err != nil {
		return fmt.Errorf("%w: malformed RowDescription: %w", ErrProtocol, err)
	}
	plan, err := r.mk.sess.Plan(r.ctx, &desc, nil, r.mk.cat)
	if err != nil {
		return err
	}
	r.mk.cur = &resultMask{plan: plan, tally: plan.NewTally(), exec: e}
	return nil
}

// currentResult returns the result rows belong to, making its plan at
// the first row of an Execute: from the Describe of the portal, or of its
// statement with the Bind's result formats. Plans are cached on the
// portal (a suspended portal continues) and on the statement per result
// formats (a cached statement is bound and executed many times without
// a new Describe), until DDL changes the catalog.
func (r *relay) currentResult() (*resultMask, error) {
	m := r.mk
	if m.cur != nil {
		return m.cur, nil
	}
	r.mu.Lock()
	f := r.st.front()
	var (
		pt      *portal
		ptDesc  []byte
		stDesc  []byte
		formats []int16
		ps      *prepared
	)
	if f != nil {
		pt = f.portal
	}
	if pt != nil {
		ptDesc, ps, formats = pt.rowDesc, pt.stmt, pt.resultFormats
		if ps != nil {
			stDesc = ps.rowDesc
		}
	}
	r.mu.Unlock()
	if f == nil || f.exec == nil || f.kind != expectExecute || pt == nil {
		return nil, errNoDescription
	}
	gen := m.cat.generation()
	if pt.plan != nil && pt.plan.gen == gen {
		m.cur = &resultMask{plan: pt.plan.plan, tally: pt.plan.plan.NewTally(), exec: f.exec}
		return m.cur, nil
	}
	var plan *mask.Plan
	switch {
	case ptDesc != nil:
		var err error
		if plan, err = r.planOf(ptDesc, nil); err != nil {
			return nil, err
		}
	case stDesc != nil:
		key := formatKey(formats)
		if cp := ps.plans[key]; cp != nil && cp.gen == gen {
			plan = cp.plan
			break
		}
		var err error
		if plan, err = r.planOf(stDesc, formats); err != nil {
			return nil, err
		}
		if ps.plans == nil || len(ps.plans) > 16 {
			ps.plans = map[string]*cachedPlan{}
		}
		ps.plans[key] = &cachedPlan{plan: plan, gen: gen}
	default:
		return nil, errNoDescription
	}
	pt.plan = &cachedPlan{plan: plan, gen: gen}
	m.cur = &resultMask{plan: plan, tally: plan.NewTally(), exec: f.exec}
	return m.cur, nil
}

func (r *relay) planOf(body []byte, formats []int16) (*mask.Plan, error) {
	var desc pgproto3.RowDescription
	if err := desc.Decode(body); err != nil {
		return nil, fmt.Errorf("%w: malformed RowDescription: %w", ErrProtocol, err)
	}
	return r.mk.sess.Plan(r.ctx, &desc, formats, r.mk.cat)
}

func formatKey(formats []int16) string {
	var b strings.Builder
	for _, f := range formats {
		b.WriteByte(byte(f))
	}
	return b.String()
}

// startCopy makes the plan of a COPY ... TO STDOUT from its statement,
// described on the catalog connection.
func (r *relay) startCopy(e *exec, body []byte) error {
	var cr pgproto3.CopyOutResponse
	if err := cr.Decode(body); err != nil {
		return fmt.Errorf("%w: malformed CopyOutResponse: %w", ErrProtocol, err)
	}
	if e == nil || len(e.copies) <= e.copyIdx {
		return fmt.Errorf("%w: tollgate did not see the COPY statement", errCopySpec)
	}
	sp := e.copies[e.copyIdx]
	e.copyIdx++
	if sp.err != nil {
		return sp.err
	}
	desc, err := r.mk.cat.describe(r.ctx, sp.query)
	if err != nil {
		return fmt.Errorf("%w: %w", errCopySpec, err)
	}
	if len(desc.Fields) != len(cr.ColumnFormatCodes) {
		return fmt.Errorf("%w: %d columns described, %d sent", errCopySpec, len(desc.Fields), len(cr.ColumnFormatCodes))
	}
	plan, err := r.mk.sess.Plan(r.ctx, desc, nil, r.mk.cat)
	if err != nil {
		return err
	}
	res := &resultMask{plan: plan, tally: plan.NewTally(), exec: e}
	if cr.OverallFormat != 0 {
		if err := plan.BinaryCopy(); err != nil {
			return err
		}
	} else {
		f := sp.format
		res.copy = &f
	}
	r.mk.cur = res
	return nil
}

// endResult adds the counts of the result being sent to its execution.
func (r *relay) endResult() {
	m := r.mk
	if m.cur == nil {
		return
	}
	if c := m.cur.tally.Counts(); len(c) > 0 {
		r.mu.Lock()
		m.cur.exec.masked = mergeCounts(m.cur.exec.masked, c)
		r.mu.Unlock()
	}
	m.cur = nil
}

// refuseResult answers a result that cannot be masked with ERROR 0A000 in its
// place, before any of its rows, and drops the rest of the server's
// response up to ReadyForQuery (as the client expects after an error).
// The statement has run: a refusal withholds its result, it does not undo
// it. Inside a transaction block, the session is then closed, so that the
// server rolls the transaction back (see swallowMessage).
func (r *relay) refuseResult(e *exec, cause error) error {
	m := r.mk
	m.cur = nil
	m.swallow = true
	msg := cause.Error()
	var re *mask.RefuseError
	if errors.As(cause, &re) {
		msg = re.Error()
	}
	r.mu.Lock()
	if e != nil {
		e.sqlstate = codeFeatureUnsupported
		e.refused = msg
	}
	r.mu.Unlock()
	r.s.log.Info("result refused by masking", "session", r.sess.Base.Session, "reason", msg)
	er := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: codeFeatureUnsupported,
		Message: "tollgate refused a result it cannot mask: " + msg,
		Hint:    "ask for text results, or for the columns without the masked one"}
	b, err := er.Encode(nil)
	if err != nil {
		return err
	}
	_, err = r.cw.Write(b)
	return err
}

// swallowMessage reads a server message after a refusal, keeps the
// protocol state in step, and forwards nothing until ReadyForQuery. The
// ReadyForQuery is forwarded; if it says a transaction block is open
// ('T'), the session ends (FATAL 0A000) so that the server rolls back a
// transaction whose result the client did not see whole.
func (r *relay) swallowMessage(typ byte, n int) (string, error) {
	if !readWhole(typ) && typ != typeNoticeResponse && typ != typeNotificationResponse && typ != typeNoData {
		r.mu.Lock()
		r.serverState(typ)
		r.mu.Unlock()
		if _, err := io.CopyN(io.Discard, r.ur, int64(n)); err != nil {
			return r.serverReadEnd(err)
		}
		return "", nil
	}
	body, err := readBody(r.ur, &r.ubuf, n)
	if err != nil {
		return r.serverReadEnd(err)
	}
	defer releaseBody(&r.ubuf)
	switch typ {
	case typeNoticeResponse, typeNotificationResponse:
		// Notices and notifications are not part of the result: they
		// pass, masked.
		return r.forwardMasked(typ, body)
	case typeNoData:
		r.mu.Lock()
		r.serverState(typ)
		r.mu.Unlock()
		return "", nil
	}
	_, forward, stop := r.serverMessage(typ, body)
	if stop != nil {
		return ReasonUnsafe, stop
	}
	if typ == typeParameterStatus && forward {
		// A setting the server reports changed (by a statement whose
		// result is dropped) is session state the client must know.
		h := frameHeader(typ, n)
		r.cw.Write(h[:])
		if _, err := r.cw.Write(body); err != nil {
			return ReasonClientError, err
		}
	}
	if typ != typeReadyForQuery {
		return "", nil
	}
	r.mk.swallow = false
	r.mk.cur = nil
	r.readyForQueryDDL(body)
	h := frameHeader(typ, n)
	r.cw.Write(h[:])
	if _, err := r.cw.Write(body); err != nil {
		return ReasonClientError, err
	}
	if bytes.Equal(body, []byte{'T'}) {
		r.cw.Flush()
		return ReasonMaskRefused, fatalf(codeFeatureUnsupported, errors.New("result refused by masking in a transaction block"),
			"tollgate closed the session: a result in the open transaction was refused by masking; the transaction is rolled back")
	}
	return "", nil
}

// forwardMasked forwards an ErrorResponse, NoticeResponse or
// NotificationResponse with what the session's rules find in it masked.
func (r *relay) forwardMasked(typ byte, body []byte) (string, error) {
	defer releaseBody(&r.ubuf)
	out := body
	switch typ {
	case typeErrorResponse, typeNoticeResponse:
		var er pgproto3.ErrorResponse
		if err := er.Decode(body); err != nil {
			return ReasonUpstreamError, fmt.Errorf("%w: malformed error or notice: %w", ErrProtocol, err)
		}
		if r.mk.sess.MaskError(&er) > 0 {
			var err error
			if typ == typeErrorResponse {
				out, err = er.Encode(nil)
			} else {
				out, err = (*pgproto3.NoticeResponse)(&er).Encode(nil)
			}
			if err != nil {
				return ReasonUpstreamError, err
			}
			out = out[5:]
		}
	case typeNotificationResponse:
		var nr pgproto3.NotificationResponse
		if err := nr.Decode(body); err != nil {
			return ReasonUpstreamError, fmt.Errorf("%w: malformed notification: %w", ErrProtocol, err)
		}
		if r.mk.sess.MaskNotification(&nr) > 0 {
			var err error
			if out, err = nr.Encode(nil); err != nil {
				return ReasonUpstreamError, err
			}
			out = out[5:]
		}
	}
	h := frameHeader(typ, len(out))
	r.cw.Write(h[:])
	if _, err := r.cw.Write(out); err != nil {
		return ReasonClientError, err
	}
	return "", nil
}

// maskingDetail notes in a session.start record whether masking applies
// and which entries the session is exempt from, and why.
func maskingDetail(s *mask.Session, d map[string]string) {
	if s.Active() {
		d[audit.DetailMasking] = "on"
	} else {
		d[audit.DetailMasking] = "off"
	}
	var ex []string
	for _, e := range s.Exempted() {
		ex = append(ex, e.Rule+" ("+e.By+")")
	}
	if len(ex) > 0 {
		d[audit.DetailMaskingExempt] = strings.Join(ex, ", ")
	}
}

// catalogConn logs in to the session's database for catalog lookups, as
// the session's upstream login does.
func (s *Server) catalogConn(ctx context.Context, sess *Session, host string, st *Startup) (*pgconn.PgConn, error) {
	cfg, password, err := upstreamConfig(sess.Target, sess.Dst, host, st, s.dial(sess), s.opts.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "tollgate catalog"
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, scrub(err, password)
	}
	return pc, nil
}

// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// The client half of the relay: reads the client's messages, judges
// the statements they carry or run, makes their records durable and
// forwards them (clientLoop and what it calls).

// clientLoop reads client messages, records statements and forwards.
func (r *relay) clientLoop() (string, error) {
	large := r.s.opts.MaxMessage
	for {
		typ, n, err := readHeader(r.cr)
		if err != nil {
			return r.clientReadEnd(err)
		}
		limit, ok := clientLimit(typ, large)
		if !ok {
			return ReasonProtocol, fatalf(codeProtocolViolation, ErrProtocol, "invalid frontend message type %d", typ)
		}
		if n > limit {
			return ReasonProtocol, fatalf(codeProtocolViolation, ErrProtocol, "invalid message length %d for message type %q", n, typ)
		}
		r.up.Add(int64(n) + 5)
		if typ == typeCopyData && n > inlineMax {
			// Large COPY data is streamed, not held.
			if err := r.commit(); err != nil {
				return r.commitEnd(err)
			}
			h := frameHeader(typ, n)
			if _, err := r.upstream.Write(h[:]); err != nil {
				return ReasonUpstreamError, err
			}
			if _, err := io.CopyN(r.upstream, r.cr, int64(n)); err != nil {
				return ReasonClientError, err
			}
			continue
		}
		body, err := readBody(r.cr, &r.cbuf, n)
		if err != nil {
			return r.clientReadEnd(err)
		}
		forward, err := r.clientMessage(typ, body)
		if err != nil {
			return r.messageEnd(err)
		}
		switch {
		case !forward:
			releaseBody(&r.cbuf)
		case len(body) > inlineMax:
			if err := r.commit(); err != nil {
				return r.commitEnd(err)
			}
			h := frameHeader(typ, n)
			if _, err := (&net.Buffers{h[:], body}).WriteTo(r.upstream); err != nil {
				return ReasonUpstreamError, err
			}
			releaseBody(&r.cbuf)
		default:
			r.out = appendFrame(r.out, typ, body)
		}
		if typ == typeTerminate {
			if err := r.commit(); err != nil {
				return r.commitEnd(err)
			}
			return ReasonClientTerm, nil
		}
		// Forward when the client has nothing more buffered (the end of
		// a burst or pipeline), or when the batch is large.
		if r.cr.Buffered() == 0 || len(r.out) >= batchMax || len(r.recs) >= maxBatchRecords {
			if err := r.commit(); err != nil {
				return r.commitEnd(err)
			}
		}
	}
}

func (r *relay) clientReadEnd(err error) (string, error) {
	switch {
	case errors.Is(err, io.EOF):
		return ReasonClientClosed, nil
	case errors.Is(err, errTruncated):
		return ReasonProtocol, fatalf(codeProtocolViolation, ErrProtocol, "unexpected EOF within message")
	case errors.Is(err, ErrProtocol):
		return ReasonProtocol, fatalf(codeProtocolViolation, err, "%v", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonClientClosed, nil // stopped by run
	}
	return ReasonClientError, err
}

// messageEnd ends the client goroutine after handling a message failed:
// a protocol violation, a record that could not be made durable, an
// upstream write, or the session's stop during a hold.
func (r *relay) messageEnd(err error) (string, error) {
	var pe *Error
	switch {
	case errors.Is(err, errStopped):
		return ReasonClientClosed, nil
	case errors.As(err, &pe) && errors.Is(err, ErrProtocol):
		return ReasonProtocol, err
	}
	return r.commitEnd(err)
}

func (r *relay) commitEnd(err error) (string, error) {
	if errors.Is(err, ErrAudit) {
		r.s.log.Error("closing session: audit log unwritable", "session", r.sess.Base.Session, "error", err)
		return ReasonAudit, fatalf(codeSystemError, err, "tollgate cannot record this statement: session closed")
	}
	return ReasonUpstreamError, err
}

// commit makes the held statement records durable, then forwards the held
// messages. It is the one place client messages reach the server, so no
// statement reaches it before its record is durable.
func (r *relay) commit() error {
	if len(r.recs) > 0 {
		err := r.appendAll(r.recs)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrAudit, err)
		}
		r.mu.Lock()
		for i, e := range r.execs {
			if e != nil {
				e.seq, e.seqSet = r.recs[i].Seq, true
			}
		}
		r.mu.Unlock()
		clear(r.recs)
		clear(r.execs)
		r.recs, r.execs = r.recs[:0], r.execs[:0]
	}
	if len(r.out) > 0 {
		if _, err := r.upstream.Write(r.out); err != nil {
			return err
		}
		if cap(r.out) > 4*batchMax {
			r.out = nil
		} else {
			r.out = r.out[:0]
		}
	}
	return nil
}

// appendAll makes records durable, in their order with one wait.
func (r *relay) appendAll(recs []*audit.Record) error {
	if len(recs) == 1 {
		return r.s.opts.Recorder.Record(r.ctx, recs[0])
	}
	return r.s.opts.Recorder.RecordAll(r.ctx, recs)
}

// clientMessage updates the protocol state for a client message, judges
// the statement of a message that carries or runs one and prepares its
// record. It reports whether the message is to be forwarded as it is; a
// refused message is replaced by what makes the server raise the refusal.
func (r *relay) clientMessage(typ byte, body []byte) (bool, error) {
	switch typ {
	case typeQuery:
		var q pgproto3.Query
		if err := q.Decode(body); err != nil {
			return false, malformed("Query", err)
		}
		info := r.classify(q.String)
		if info.Err != nil {
			return false, r.probe(expectQuery, info, "simple", nil, &pgproto3.Parse{Query: q.String})
		}
		info, detail := r.resolvePrepared(info)
		fwd, err := r.execute(expectQuery, info, r.judge(q.String, info), "simple", detail)
		if fwd && err == nil {
			r.maskStatement(info, q.String)
		}
		return fwd, err
	case typeParse:
		var p pgproto3.Parse
		if err := p.Decode(body); err != nil {
			return false, malformed("Parse", err)
		}
		fwd, err := r.parse(&p)
		if fwd && err == nil {
			r.mu.Lock()
			r.maskParse(p.Name, p.Query)
			r.mu.Unlock()
		}
		return fwd, err
	case typeBind:
		var b pgproto3.Bind
		if err := b.Decode(body); err != nil {
			return false, malformed("Bind", err)
		}
		r.mu.Lock()
		r.st.bind(b.DestinationPortal, b.PreparedStatement, b.ResultFormatCodes, len(b.Parameters))
		r.mu.Unlock()
		r.maskBind(&b)
	case typeDescribe:
		var d pgproto3.Describe
		if err := d.Decode(body); err != nil {
			return false, malformed("Describe", err)
		}
		r.mu.Lock()
		r.st.describe(d.ObjectType, d.Name)
		r.mu.Unlock()
	case typeExecute:
		var e pgproto3.Execute
		if err := e.Decode(body); err != nil {
			return false, malformed("Execute", err)
		}
		r.mu.Lock()
		pt := r.st.portals[e.Portal]
		r.mu.Unlock()
		detail := map[string]string{}
		var info sql.Statement
		var v verdict
		if pt != nil && pt.stmt != nil {
			info = pt.stmt.info
			if info.Executes() {
				// What an SQL EXECUTE runs is known only now.
				var used map[string]string
				info, used = r.resolvePrepared(info)
				maps.Copy(detail, used)
				v = r.judge("", info)
			} else {
				// The verdict made at Parse, unless the policy or
				// the grants in force changed since.
				v = r.current(pt.stmt.verdict, info)
			}
			if pt.stmtName != "" {
				detail[audit.DetailStatementName] = pt.stmtName
			}
			detail[audit.DetailParams] = strconv.Itoa(pt.params)
		} else {
			// A portal from a statement tollgate did not see parsed
			// (an SQL-level PREPARE): judged as unknown.
			info = sql.Statement{Classes: unknownClasses}
			v = r.judge("", info)
			detail[audit.DetailUnknownStatement] = "true"
		}
		if e.Portal != "" {
			detail[audit.DetailPortal] = e.Portal
		}
		r.maskParams(e.Portal, detail)
		fwd, err := r.execute(expectExecute, info, v, "extended", detail)
		if fwd && err == nil {
			r.maskExecuted(e.Portal, info)
		}
		return fwd, err
	case typeClose:
		var c pgproto3.Close
		if err := c.Decode(body); err != nil {
			return false, malformed("Close", err)
		}
		r.mu.Lock()
		r.st.close(c.ObjectType, c.Name)
		r.mu.Unlock()
	case typeSync:
		if len(body) != 0 {
			return false, malformed("Sync", nil)
		}
		r.discard = false
		r.mu.Lock()
		r.st.push(&expect{kind: expectSync})
		r.mu.Unlock()
	case typeFlush, typeTerminate, typeCopyDone:
		if len(body) != 0 {
			return false, malformed(string(typ), nil)
		}
	case typeFunctionCall:
		var f pgproto3.FunctionCall
		if err := f.Decode(body); err != nil {
			return false, malformed("FunctionCall", err)
		}
		info := sql.Statement{Classes: functionCallClasses}
		detail := map[string]string{audit.DetailFunctionOID: strconv.FormatUint(uint64(f.Function), 10)}
		return r.execute(expectFunction, info, r.judge("", info), "function", detail)
	case typeCopyData, typeCopyFail:
		// COPY data and CopyFail pass as they are.
	}
	return true, nil
}

// parse handles a Parse. Its text reaches the server, which parses it and
// locks the tables it names, so it is judged and recorded like an
// execution: a denied Parse never reaches the server. A Parse that a
// review rule matches is forwarded (it runs nothing) and each Execute of
// it is held.
func (r *relay) parse(p *pgproto3.Parse) (bool, error) {
	info := r.classify(p.Query)
	detail := map[string]string{}
	if p.Name != "" {
		detail[audit.DetailStatementName] = p.Name
	}
	if info.Err != nil {
		r.mu.Lock()
		r.st.refusedParse(p.Name)
		r.mu.Unlock()
		if r.discard {
			detail[audit.DetailDiscarded] = "true"
			r.appendStatement(nil, info, r.unparsed(), "parse", detail)
			return false, nil
		}
		return false, r.probe(expectParse, info, "parse", detail, p)
	}
	info, used := r.resolvePrepared(info)
	maps.Copy(detail, used)
	v := r.judge(p.Query, info)
	if v.Action != policy.ActionDeny {
		r.appendStatement(nil, info, v, "parse", detail)
		r.mu.Lock()
		r.st.parse(p.Name, info, v)
		r.mu.Unlock()
		return true, nil
	}
	r.mu.Lock()
	r.st.refusedParse(p.Name)
	r.mu.Unlock()
	if r.discard {
		// The server discards it anyway: recorded, not sent.
		detail[audit.DetailDiscarded] = "true"
		r.appendStatement(nil, info, v, "parse", detail)
		return false, nil
	}
	if name, ok := unknownExecute(info, detail); ok {
		return false, r.probeName(expectParse, info, v, "parse", detail, name)
	}
	return false, r.refuse(expectParse, info, v, "parse", detail, denied(v))
}

// execute handles a message that runs a statement (a Query, an Execute,
// a FunctionCall) by its verdict: forwarded, refused or held for review.
func (r *relay) execute(kind expectKind, info sql.Statement, v verdict, protocol string, detail map[string]string) (bool, error) {
	if detail == nil {
		detail = map[string]string{}
	}
	switch v.Action {
	case policy.ActionAllow, policy.ActionMask:
		r.statement(kind, info, v, protocol, detail)
		return true, nil
	}
	if r.discard && kind == expectExecute {
		// After a refusal the server discards everything up to the
		// Sync: the statement would not run. It is recorded and not
		// sent, and its response is skipped like the server's.
		detail[audit.DetailDiscarded] = "true"
		r.statement(kind, info, v, protocol, detail)
		return false, nil
	}
	if v.Action == policy.ActionReview {
		return r.review(kind, info, v, protocol, detail)
	}
	if name, ok := unknownExecute(info, detail); ok {
		return false, r.probeName(kind, info, v, protocol, detail, name)
	}
	return false, r.refuse(kind, info, v, protocol, detail, denied(v))
}

// refuse records a refused statement durably, forwarding what preceded
// it, and queues in its place what makes the server raise the refusal,
// which names the record.
func (r *relay) refuse(kind expectKind, info sql.Statement, v verdict, protocol string, detail map[string]string, f refusal) error {
	e, rec, err := r.recordRefused(kind, info, v, protocol, detail)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.appendRaise(kind, e, f, rec.Seq)
	r.mu.Unlock()
	return nil
}

// recordRefused makes the record of a statement that will not run durable,
// with what preceded it, and returns its execution (nil for a Parse) and
// the record, whose seq the refusal names.
func (r *relay) recordRefused(kind expectKind, info sql.Statement, v verdict, protocol string, detail map[string]string) (*exec, *audit.Record, error) {
	var e *exec
	if kind != expectParse {
		e = r.newExec(protocol)
	}
	rec := r.appendStatement(e, info, v, protocol, detail)
	if err := r.commit(); err != nil {
		return nil, nil, err
	}
	// One line per refusal, naming what `tollgate audit` takes: the
	// session and the record.
	r.s.log.Info("statement refused", "session", r.sess.Base.Session, "target", r.sess.Base.Target,
		"record", rec.Seq, "action", string(v.Action), "rule", v.Rule, "reason", v.Reason, "probe", detail[audit.DetailProbe])
	return e, rec, nil
}

func malformed(what string, err error) error {
	if err != nil {
		return fatalf(codeProtocolViolation, fmt.Errorf("%w: %s: %w", ErrProtocol, what, err), "invalid %s message", what)
	}
	return fatalf(codeProtocolViolation, ErrProtocol, "invalid %s message", what)
}

// newExec numbers a new execution.
func (r *relay) newExec(protocol string) *exec {
	r.n++
	return &exec{n: r.n, protocol: protocol, start: time.Now()}
}

// statement prepares the record of a statement about to run (a Query, an
// Execute, a FunctionCall) and queues the response it expects.
func (r *relay) statement(kind expectKind, info sql.Statement, v verdict, protocol string, detail map[string]string) {
	e := r.newExec(protocol)
	r.appendStatement(e, info, v, protocol, detail)
	r.mu.Lock()
	e.sqlOps = r.sqlp.sent(info)
	r.st.push(&expect{kind: kind, exec: e})
	if kind == expectExecute {
		r.unsynced = true
	}
	r.mu.Unlock()
}

// resolvePrepared judges each SQL EXECUTE in info by what its name may
// hold (see sqlPrepared.resolve), and returns the record detail naming
// those statements.
func (r *relay) resolvePrepared(info sql.Statement) (sql.Statement, map[string]string) {
	if !info.Executes() {
		return info, nil
	}
	r.mu.Lock()
	out, texts := r.sqlp.resolve(info, r.protocolPrepared)
	r.mu.Unlock()
	if len(texts) == 0 {
		return out, map[string]string{audit.DetailPrepared: preparedUnknown}
	}
	return out, map[string]string{audit.DetailPrepared: preparedDetail(texts)}
}

// protocolPrepared is what a statement prepared with a Parse of the name
// holds: an SQL EXECUTE runs those too (one namespace). Called with mu
// held.
func (r *relay) protocolPrepared(name string) *sqlDef {
	ps := r.st.stmts[name]
	if name == "" || ps == nil {
		return nil
	}
	return &sqlDef{classes: ps.info.Classes, tables: ps.info.Tables, text: ps.info.Text}
}

// statementRecord is the record's view of a classified statement.
func statementRecord(info sql.Statement) *audit.Statement {
	st := &audit.Statement{Text: info.Text, Fingerprint: info.Fingerprint, Tables: info.Tables}
	for _, c := range info.Classes {
		st.Classes = append(st.Classes, string(c))
	}
	return st
}

// hashOf is the hash of the policy a verdict was made under.
func (r *relay) hashOf(v verdict) string {
	if v.hash != "" {
		return v.hash
	}
	return r.sess.PolicyHash
}

// appendStatement holds a statement record with its decision until the
// next commit, and returns it (its Seq is set once durable); e is the
// execution it stands for, nil for a Parse.
func (r *relay) appendStatement(e *exec, info sql.Statement, v verdict, protocol string, detail map[string]string) *audit.Record {
	now := time.Now()
	if detail == nil {
		detail = map[string]string{}
	}
	if e != nil {
		now = e.start
		detail[audit.DetailN] = strconv.FormatInt(e.n, 10)
	}
	rec := r.sess.Base
	rec.Kind = audit.KindStatement
	rec.Time = now.UTC()
	rec.Statement = statementRecord(info)
	rec.Decision = &audit.Decision{Action: string(v.Action), Rule: v.Rule, Policy: r.hashOf(v), Reason: v.Reason}
	if g := grantIDs(v.Rule); g != "" {
		// The grant was used: this record says so.
		detail[audit.DetailGrant] = g
	}
	detail[audit.DetailProtocol] = protocol
	if info.Err != nil {
		detail[audit.DetailParseError] = strings.TrimPrefix(info.Err.Error(), sql.ErrUnparsed.Error()+": ")
	}
	if info.Truncated {
		detail[audit.DetailTruncated] = "true"
	}
	if info.Withheld {
		detail[audit.DetailWithheld] = "true"
	}
	rec.Detail = detail
	r.recs = append(r.recs, &rec)
	r.execs = append(r.execs, e)
	return &rec
}

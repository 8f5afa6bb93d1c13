// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// maxBatchRecords bounds the statement records made durable together
// before a batch of client messages is forwarded.
const maxBatchRecords = 256

// resultLinger is how long result records are gathered before they are
// written; maxPendingResults is how many are gathered at most.
const (
	resultLinger      = 50 * time.Millisecond
	maxPendingResults = 1024
)

// stopWriteTimeout bounds what is still written to a client after its
// session was stopped (the rest of a response, a final error), so that a
// client that stopped reading cannot hold the session open.
const stopWriteTimeout = 5 * time.Second

// relay carries one established session both ways.
type relay struct {
	s    *Server
	sess *Session
	ctx  context.Context

	client, upstream net.Conn
	cr, ur           *bufio.Reader
	cw               *bufio.Writer

	// Client side state, owned by the client goroutine.
	cbuf  []byte          // body buffer
	out   []byte          // messages held until their records are durable
	recs  []*audit.Record // statement records of the held messages
	execs []*exec         // their executions, to learn the records' seq
	n     int64           // statements so far
	// idents are the names of the configured identities the session
	// matched, which rules and grants name.
	idents       []string
	verdicts     map[string]verdict // by exact statement text
	normVerdicts map[string]verdict // by normalised statement text
	// discard is set from a refusal in the extended protocol to the
	// client's next Sync: the server discards what comes in between.
	discard bool
	// holds is where a CancelRequest finds the statement on hold.
	holds *holdSlot

	// stopCtx ends when the session stops (cause errSessionEnded), and
	// with it a hold; stopping is set before run stops the goroutines.
	stopCtx  context.Context
	stop     context.CancelCauseFunc
	stopping atomic.Bool

	// Server side state, owned by the server goroutine.
	ubuf []byte
	// wmu serialises whole messages to the client: the server
	// goroutine's, and the notices the client goroutine sends while a
	// statement is on hold.
	wmu sync.Mutex

	// mu guards the protocol state both sides share.
	mu sync.Mutex
	st protoState

	// mk is the session's masking; nil when no masking rule applies.
	mk *maskState

	// sqlp is what the session's SQL-level PREPAREs hold; guarded by mu.
	sqlp sqlPrepared
	// scsOff is the server's last word on standard_conforming_strings
	// being off; guarded by mu.
	scsOff bool
	// enc reads statement text in the server's last word on
	// client_encoding; guarded by mu.
	enc textCodec
	// unsynced is set while an Execute was sent that no ReadyForQuery
	// has followed yet: a setting it changed is reported only then.
	// Guarded by mu.
	unsynced bool
	// verdictsEnc is the client_encoding the exact-text verdicts were
	// read in; owned by the client goroutine.
	verdictsEnc string

	up, down atomic.Int64

	// Result records wait in pending and are written together every
	// resultLinger, so that they take one commit (one disk flush) per
	// linger instead of one per statement, and the statements' commits,
	// which the client waits for, rarely queue behind them.
	resMu      sync.Mutex
	pending    []*audit.Record
	resKick    chan struct{} // a result is pending
	resUrgent  chan struct{} // many results are pending
	resultsEnd chan struct{} // the session ended: write what is left
}

// exec is one execution of a statement: a Query, an Execute or a
// FunctionCall, from its statement record to its result.
type exec struct {
	n        int64
	protocol string
	start    time.Time
	seq      uint64 // the statement record's seq; guarded by relay.mu
	seqSet   bool

	// Filled from responses by the server goroutine.
	tags      []string
	rows      int64
	sqlstate  string
	skipped   bool
	suspended bool
	done      bool // its result is recorded

	// Masking.
	masked  []mask.ColumnCount // what was masked, per column
	refused string             // why the result was refused
	ddl     bool               // it may change the catalog
	// sqlOps are its PREPAREs and DEALLOCATEs, applied to relay.sqlp when
	// the server answers.
	sqlOps  []sqlOp
	copies  []copySpec // its COPY ... TO STDOUT statements
	copyIdx int        // the next of copies
}

func newRelay(s *Server, sess *Session, client, upstream net.Conn) *relay {
	return &relay{
		s: s, sess: sess, client: client, upstream: upstream,
		cr:           bufio.NewReaderSize(client, bufSize),
		ur:           bufio.NewReaderSize(upstream, bufSize),
		cw:           bufio.NewWriterSize(client, bufSize),
		st:           newProtoState(),
		enc:          textCodec{name: "UTF8", checkUTF8: true},
		verdicts:     map[string]verdict{},
		normVerdicts: map[string]verdict{},
		resKick:      make(chan struct{}, 1),
		resUrgent:    make(chan struct{}, 1),
		resultsEnd:   make(chan struct{}),
	}
}

// run relays until either side ends, then closes the upstream connection
// and returns. The caller closes the client connection.
func (r *relay) run(ctx context.Context) Stats {
	r.ctx = ctx
	r.stopCtx, r.stop = context.WithCancelCause(ctx)
	defer r.stop(errSessionEnded)
	var resWG sync.WaitGroup
	resWG.Go(func() {
		defer r.recoverTo(nil)
		r.writeResults()
	})

	done := make(chan outcome, 2)
	go func() {
		var o outcome
		defer func() { done <- o.orInternal() }()
		defer r.recoverTo(&o.err)
		o.reason, o.err = r.clientLoop()
	}()
	go func() {
		var o outcome
		defer func() { done <- o.orInternal() }()
		defer r.recoverTo(&o.err)
		o.reason, o.err = r.serverLoop()
	}()
	var first outcome
	select {
	case first = <-done:
	case <-ctx.Done():
		first = outcome{reason: ReasonShutdown, err: fatalf(codeAdminShutdown, ctx.Err(), "terminating connection due to administrator command")}
	}
	// Stop both sides: closing upstream ends the server goroutine's reads,
	// a write deadline its writes to a client that stopped reading, and a
	// past read deadline ends the client goroutine while the client
	// connection stays open for a final error message; a statement on
	// hold is cancelled.
	r.stopping.Store(true)
	r.stop(errSessionEnded)
	r.upstream.Close()
	r.client.SetWriteDeadline(time.Now().Add(stopWriteTimeout))
	r.client.SetReadDeadline(time.Unix(1, 0))
	if first.reason == ReasonShutdown {
		<-done
		<-done
	} else {
		<-done
	}
	// Both goroutines have ended: the client connection is ours.
	var fe *Error
	if errors.As(first.err, &fe) && fe.Code != "" {
		r.cw.Write(fe.response())
	}
	r.cw.Flush()
	close(r.resultsEnd)
	resWG.Wait()
	return Stats{Up: r.up.Load(), Down: r.down.Load(), Reason: first.reason, Err: first.err}
}

// outcome is how one direction of the relay ended.
type outcome struct {
	reason string
	err    error
}

// orInternal names the reason of an outcome that a panic cut short.
func (o outcome) orInternal() outcome {
	if o.reason == "" {
		o.reason = "internal error"
	}
	return o
}

// recoverTo turns a panic in one of the relay's goroutines into an error
// that ends the session: a bug must cost one session, never the daemon.
func (r *relay) recoverTo(err *error) {
	if p := recover(); p != nil {
		r.s.log.Error("postgres relay panicked", "session", r.sess.Base.Session, "panic", fmt.Sprint(p))
		if err != nil {
			*err = fatalf(codeSystemError, fmt.Errorf("internal error: %v", p), "tollgate internal error: session closed")
		}
	}
}

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
		if typ == 'd' && n > inlineMax {
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
		if typ == 'X' {
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
	case 'Q':
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
	case 'P':
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
	case 'B':
		var b pgproto3.Bind
		if err := b.Decode(body); err != nil {
			return false, malformed("Bind", err)
		}
		r.mu.Lock()
		r.st.bind(b.DestinationPortal, b.PreparedStatement, b.ResultFormatCodes, len(b.Parameters))
		r.mu.Unlock()
		r.maskBind(&b)
	case 'D':
		var d pgproto3.Describe
		if err := d.Decode(body); err != nil {
			return false, malformed("Describe", err)
		}
		r.mu.Lock()
		r.st.describe(d.ObjectType, d.Name)
		r.mu.Unlock()
	case 'E':
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
	case 'C':
		var c pgproto3.Close
		if err := c.Decode(body); err != nil {
			return false, malformed("Close", err)
		}
		r.mu.Lock()
		r.st.close(c.ObjectType, c.Name)
		r.mu.Unlock()
	case 'S':
		if len(body) != 0 {
			return false, malformed("Sync", nil)
		}
		r.discard = false
		r.mu.Lock()
		r.st.push(&expect{kind: expectSync})
		r.mu.Unlock()
	case 'H', 'X', 'c':
		if len(body) != 0 {
			return false, malformed(string(typ), nil)
		}
	case 'F':
		var f pgproto3.FunctionCall
		if err := f.Decode(body); err != nil {
			return false, malformed("FunctionCall", err)
		}
		info := sql.Statement{Classes: functionCallClasses}
		detail := map[string]string{audit.DetailFunctionOID: strconv.FormatUint(uint64(f.Function), 10)}
		return r.execute(expectFunction, info, r.judge("", info), "function", detail)
	case 'd', 'f':
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

// serverLoop reads server messages, tracks responses and forwards them.
func (r *relay) serverLoop() (string, error) {
	for {
		typ, n, err := readHeader(r.ur)
		if err != nil {
			return r.serverEnd(err)
		}
		r.down.Add(int64(n) + 5)
		if r.mk != nil {
			r.wmu.Lock()
			handled, reason, err := r.maskServer(typ, n)
			if handled && reason == "" && err == nil && r.ur.Buffered() == 0 {
				if ferr := r.cw.Flush(); ferr != nil {
					reason, err = ReasonClientError, ferr
				}
			}
			r.wmu.Unlock()
			if reason != "" || err != nil {
				return reason, err
			}
			if handled {
				continue
			}
		}
		var body []byte
		whole := readWhole(typ)
		if whole {
			if body, err = readBody(r.ur, &r.ubuf, n); err != nil {
				return r.serverEnd(err)
			}
		}
		if reason, err := r.serverFrame(typ, n, body, whole); reason != "" {
			return reason, err
		}
	}
}

// serverEnd ends the server goroutine after a read error.
func (r *relay) serverEnd(err error) (string, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.serverReadEnd(err)
}

// serverFrame handles one server message (its body read when whole) and
// writes it to the client, as one unit among the client's writes. A
// non-empty reason ends the session.
func (r *relay) serverFrame(typ byte, n int, body []byte, whole bool) (string, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if whole {
		out, forward, stop := r.serverMessage(typ, body)
		switch {
		case out != nil:
			if _, err := r.cw.Write(out); err != nil {
				return ReasonClientError, err
			}
		case forward:
			h := frameHeader(typ, n)
			r.cw.Write(h[:])
			if _, err := r.cw.Write(body); err != nil {
				return ReasonClientError, err
			}
		}
		releaseBody(&r.ubuf)
		if stop != nil {
			r.cw.Flush()
			return ReasonUnsafe, stop
		}
	} else {
		// Rows, COPY data, notices, notifications and bodiless
		// responses pass as they come: a row is never held whole,
		// whatever its size.
		r.mu.Lock()
		drop := r.serverState(typ)
		r.mu.Unlock()
		switch {
		case drop:
			if _, err := r.ur.Discard(n); err != nil {
				return r.serverReadEnd(err)
			}
		default:
			h := frameHeader(typ, n)
			if _, err := r.cw.Write(h[:]); err != nil {
				return ReasonClientError, err
			}
			if n > 0 {
				if _, err := io.CopyN(r.cw, r.ur, int64(n)); err != nil {
					return r.serverReadEnd(err)
				}
			}
		}
	}
	if r.ur.Buffered() == 0 {
		if err := r.cw.Flush(); err != nil {
			return ReasonClientError, err
		}
	}
	return "", nil
}

// readWhole reports whether a server message type is read whole, because
// its content updates the session's state or is not forwarded as is.
func readWhole(typ byte) bool {
	switch typ {
	case 'C', 'E', 'Z', 'S', 'T', 'K', 'R', 'v':
		return true
	}
	return false
}

func (r *relay) serverReadEnd(err error) (string, error) {
	r.cw.Flush()
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return ReasonUpstreamClosed, nil
	}
	return ReasonUpstreamError, err
}

// serverMessage updates the protocol state for a server message. It
// returns a replacement message (whole, with its header) or reports
// whether to forward it as it is, and an error when the session must end.
func (r *relay) serverMessage(typ byte, body []byte) (out []byte, forward bool, stop error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &r.st
	switch typ {
	case 'T':
		if f := st.front(); f != nil && f.kind == expectDescribe {
			if f.injected {
				st.pop(expectDescribe)
				return nil, false, nil // tollgate's probe of a name
			}
			st.described(f, body)
			st.pop(expectDescribe)
			if f.ownDescribe {
				return nil, false, nil // tollgate's own Describe, for masking
			}
		}
	case 'C':
		var cc pgproto3.CommandComplete
		if cc.Decode(body) == nil {
			r.completed(string(cc.CommandTag))
		}
	case 'E':
		var er pgproto3.ErrorResponse
		if er.Decode(body) == nil {
			if f := st.front(); f != nil && f.raise && (er.Code == codeInsufficientPrivilege || er.Code == codeQueryCanceled) {
				out = stripContext(body)
			}
			r.failed(er.Code)
		}
	case 'Z':
		r.ready()
	case 'S':
		var ps pgproto3.ParameterStatus
		if ps.Decode(body) == nil {
			switch ps.Name {
			case "standard_conforming_strings":
				r.scsOff = !isOn(ps.Value)
			case "client_encoding":
				c, ok := codecFor(ps.Value)
				if !ok {
					return nil, true, fatalf(codeFeatureUnsupported, ErrNotAllowed, "client_encoding %s is not supported through tollgate", ps.Value)
				}
				r.enc = c
			}
		}
	case 'K':
		// The real cancel key never reaches the client.
		return nil, false, nil
	case 'R', 'v':
		r.s.log.Warn("unexpected message from server after login", "session", r.sess.Base.Session, "type", string(typ))
		return nil, false, nil
	}
	return out, true, nil
}

// serverState updates the protocol state for a server message that is
// streamed through, and reports whether to drop it: the ParseComplete and
// BindComplete of messages tollgate sent in place of a refused one.
// Called with mu held.
func (r *relay) serverState(typ byte) bool {
	st := &r.st
	switch typ {
	case 'D':
		if f := st.front(); f != nil && f.exec != nil {
			f.exec.rows++
		}
	case '1', '2':
		kind := expectParse
		if typ == '2' {
			kind = expectBind
		}
		f := st.front()
		st.pop(kind)
		return f != nil && f.kind == kind && f.injected
	case '3':
		f := st.front()
		st.pop(expectClose)
		return f != nil && f.kind == expectClose && f.injected
	case 't':
		// A ParameterDescription is the first of two answers to a
		// Describe of a statement.
		f := st.front()
		return f != nil && f.kind == expectDescribe && f.injected
	case 'n':
		f := st.front()
		st.pop(expectDescribe)
		return f != nil && f.kind == expectDescribe && f.injected
	case 'I':
		r.completed("")
	case 's':
		if f := st.front(); f != nil && f.kind == expectExecute {
			if f.exec != nil {
				f.exec.suspended = true
				r.finish(f.exec)
			}
			st.pop(expectExecute)
		}
	}
	return false
}

// completed handles CommandComplete and EmptyQueryResponse.
func (r *relay) completed(tag string) {
	f := r.st.front()
	if f == nil || f.exec == nil {
		return
	}
	f.exec.tags = append(f.exec.tags, tag)
	if f.kind == expectExecute {
		r.finish(f.exec)
		r.st.pop(expectExecute)
	}
}

// failed handles an ErrorResponse: in a simple query it ends the query
// (at ReadyForQuery); in the extended protocol the server skips every
// message up to the next Sync, and so does the queue.
func (r *relay) failed(code string) {
	st := &r.st
	f := st.front()
	if f == nil {
		return // asynchronous (FATAL on shutdown, idle timeouts)
	}
	switch f.kind {
	case expectQuery, expectFunction:
		if f.exec.sqlstate == "" {
			f.exec.sqlstate = code
		}
		return
	case expectSync:
		return // the error belongs to the implicit commit at Sync
	}
	if f.injected {
		// The Parse or Bind tollgate sent in place of a refused message
		// failed (the transaction was already aborted): the error
		// stands for the refused statement.
		for _, q := range st.queue[st.head:] {
			if q.raise {
				if q.exec != nil && !q.exec.done {
					q.exec.sqlstate = code
					r.finish(q.exec)
				}
				break
			}
		}
	}
	if f.kind == expectExecute {
		if f.exec != nil {
			f.exec.sqlstate = code
			r.finish(f.exec)
		}
		st.pop(expectExecute)
	}
	for _, e := range st.skipToSync() {
		e.skipped = true
		r.finish(e)
	}
}

// ready handles ReadyForQuery.
func (r *relay) ready() {
	st := &r.st
	defer func() {
		// The Executes sent after this Sync are still to be answered.
		r.unsynced = slices.ContainsFunc(st.queue[st.head:], func(q *expect) bool { return q.kind == expectExecute })
	}()
	for {
		f := st.front()
		if f == nil {
			return
		}
		st.pop(f.kind)
		if f.exec != nil {
			r.finish(f.exec)
		}
		if f.kind == expectQuery || f.kind == expectFunction || f.kind == expectSync {
			return
		}
	}
}

// settled reports whether the server has reported every setting the
// statements sent so far changed: nothing is awaiting an answer, and a
// ReadyForQuery followed the last Execute. Called with mu held.
func (r *relay) settled() bool {
	return r.st.front() == nil && !r.unsynced
}

// finish queues the result record of an execution, once. Called with mu
// held.
func (r *relay) finish(e *exec) {
	if e.done {
		return
	}
	e.done = true
	if len(e.sqlOps) > 0 {
		// Each statement that completed took effect; an error ends a
		// text at the statement that failed.
		r.sqlp.done(e.sqlOps, len(e.tags))
	}
	rec := r.sess.Base
	rec.Kind = audit.KindResult
	now := time.Now()
	rec.Time = now.UTC()
	rec.DurationNS = now.Sub(e.start).Nanoseconds()
	d := map[string]string{audit.DetailN: strconv.FormatInt(e.n, 10), audit.DetailProtocol: e.protocol}
	if e.seqSet {
		d[audit.DetailStatementSeq] = strconv.FormatUint(e.seq, 10)
	}
	if len(e.tags) > 0 {
		d[audit.DetailTag] = strings.Join(e.tags, "; ")
	}
	d[audit.DetailRows] = strconv.FormatInt(resultRows(e), 10)
	if e.sqlstate != "" {
		d[audit.DetailSQLState] = e.sqlstate
	}
	if e.skipped {
		d[audit.DetailSkipped] = "true"
	}
	if e.suspended {
		d[audit.DetailSuspended] = "true"
	}
	maskDetail(e, d)
	r.executedDDL(e)
	rec.Detail = d
	r.resMu.Lock()
	r.pending = append(r.pending, &rec)
	n := len(r.pending)
	r.resMu.Unlock()
	kick := r.resKick
	if n >= maxPendingResults {
		kick = r.resUrgent
	}
	select {
	case kick <- struct{}{}:
	default:
	}
}

// resultRows is the row count of a result: from the command tags where
// they carry one (INSERT, UPDATE, DELETE, SELECT, COPY, MERGE, FETCH,
// MOVE), else the DataRows counted.
func resultRows(e *exec) int64 {
	var total int64
	have := false
	for _, t := range e.tags {
		fields := strings.Fields(t)
		if len(fields) < 2 {
			continue
		}
		if v, err := strconv.ParseInt(fields[len(fields)-1], 10, 64); err == nil {
			total += v
			have = true
		}
	}
	if !have {
		return e.rows
	}
	return total
}

// writeResults writes the result records that no statement record took
// along: after resultLinger, at once when many are pending, and all that
// are left when the session ends.
func (r *relay) writeResults() {
	for {
		select {
		case <-r.resKick:
			select {
			case <-time.After(resultLinger):
			case <-r.resUrgent:
			case <-r.resultsEnd:
				r.flushResults()
				return
			}
		case <-r.resUrgent:
		case <-r.resultsEnd:
			r.flushResults()
			return
		}
		r.flushResults()
	}
}

// flushResults writes the pending result records, together so that the
// log commits them together.
func (r *relay) flushResults() {
	r.resMu.Lock()
	batch := r.pending
	r.pending = nil
	r.resMu.Unlock()
	if len(batch) == 0 {
		return
	}
	r.s.opts.Recorder.RecordAllEventually(batch)
}

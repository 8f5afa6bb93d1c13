// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
)

// The server half of the relay: reads the server's answers, tracks the
// protocol state they complete and forwards them to the client
// (serverLoop and what it calls), and completes each execution's result.

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
	case typeCommandComplete, typeErrorResponse, typeReadyForQuery, typeParameterStatus, typeRowDescription, typeBackendKeyData, typeAuthentication, typeNegotiateProtocolVersion:
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
	case typeRowDescription:
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
	case typeCommandComplete:
		var cc pgproto3.CommandComplete
		if cc.Decode(body) == nil {
			r.completed(string(cc.CommandTag))
		}
	case typeErrorResponse:
		var er pgproto3.ErrorResponse
		if er.Decode(body) == nil {
			if f := st.front(); f != nil && f.raise && (er.Code == codeInsufficientPrivilege || er.Code == codeQueryCanceled) {
				out = stripContext(body)
			}
			r.failed(er.Code)
		}
	case typeReadyForQuery:
		r.ready()
	case typeParameterStatus:
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
	case typeBackendKeyData:
		// The real cancel key never reaches the client.
		return nil, false, nil
	case typeAuthentication, typeNegotiateProtocolVersion:
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
	case typeDataRow:
		if f := st.front(); f != nil && f.exec != nil {
			f.exec.rows++
		}
	case typeParseComplete, typeBindComplete:
		kind := expectParse
		if typ == typeBindComplete {
			kind = expectBind
		}
		f := st.front()
		st.pop(kind)
		return f != nil && f.kind == kind && f.injected
	case typeCloseComplete:
		f := st.front()
		st.pop(expectClose)
		return f != nil && f.kind == expectClose && f.injected
	case typeParameterDescription:
		// A ParameterDescription is the first of two answers to a
		// Describe of a statement.
		f := st.front()
		return f != nil && f.kind == expectDescribe && f.injected
	case typeNoData:
		f := st.front()
		st.pop(expectDescribe)
		return f != nil && f.kind == expectDescribe && f.injected
	case typeEmptyQueryResponse:
		r.completed("")
	case typePortalSuspended:
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

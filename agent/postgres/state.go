// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

var (
	unknownClasses      = []policy.Class{policy.ClassUnknown}
	functionCallClasses = []policy.Class{policy.ClassFunctionCall}
)

// expectKind is the client message a queued response belongs to.
type expectKind byte

const (
	expectQuery    expectKind = 'Q' // responses up to ReadyForQuery
	expectParse    expectKind = 'P' // ParseComplete
	expectBind     expectKind = 'B' // BindComplete
	expectDescribe expectKind = 'D' // [ParameterDescription] RowDescription or NoData
	expectExecute  expectKind = 'E' // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
	expectClose    expectKind = 'C' // CloseComplete
	expectSync     expectKind = 'S' // ReadyForQuery
	expectFunction expectKind = 'F' // FunctionCallResponse, ReadyForQuery
)

// expect is one client message whose response is still to come.
type expect struct {
	kind expectKind
	exec *exec // Query, Execute, FunctionCall
	// injected marks a message tollgate sent in place of a refused one:
	// its ParseComplete or BindComplete is not the client's to see.
	injected bool
	// raise marks the statement that makes the server raise a refusal:
	// its ErrorResponse loses the PL/pgSQL context line.
	raise bool
	// Describe: what is described, so the RowDescription can be kept.
	objType byte
	name    string
	stmt    *prepared // the statement described, as it was when asked
	// portal is the portal described or executed, as it was when asked
	// (a later Bind may replace the name).
	portal *portal
	// ownDescribe marks a Describe tollgate sent itself, so that masking
	// knows a result's columns: its response is not forwarded.
	ownDescribe bool
}

// prepared is a statement prepared with Parse.
type prepared struct {
	info sql.Statement
	// verdict is the decision made at Parse, honoured at each Execute
	// while the policy and the grants it saw are still in force.
	verdict verdict
	// rowDesc is the body of the RowDescription a Describe returned, nil
	// until then (or for statements that return no rows).
	rowDesc []byte
	// describing is set once a Describe of the statement was sent.
	describing bool
	// Masking, kept by the server goroutine: the plans made for this
	// statement, by result format codes, and COPY ... TO STDOUT specs.
	plans  map[string]*cachedPlan
	copies []copySpec
}

// portal is a portal created with Bind.
type portal struct {
	stmtName string
	stmt     *prepared // nil if tollgate did not see the statement parsed
	// resultFormats are the Bind's result format codes (0 text, 1 binary;
	// none means all text, one applies to all columns).
	resultFormats []int16
	params        int
	// rowDesc is the body of the RowDescription a Describe of the portal
	// returned (its format codes are the Bind's), nil until then.
	rowDesc []byte
	// describing is set once a Describe of the portal was sent.
	describing bool
	// paramLog is the bind parameters as the statement record shows
	// them, masked; empty when masking is off.
	paramLog string
	// plan is the masking plan of the portal's rows, made at its first
	// row, kept for the Executes that continue a suspended portal.
	plan *cachedPlan
}

// protoState is what the relay knows about the session's extended
// protocol objects and the responses it expects, in order: it gives
// results their statement, keeps the verdicts made at Parse for the
// Executes, and keeps the queue in step with the server, including the
// messages tollgate sends in place of refused ones.
type protoState struct {
	stmts   map[string]*prepared
	portals map[string]*portal
	queue   []*expect
	head    int
	// discarding is set after an error in the extended protocol when no
	// Sync was queued yet: the server ignores everything up to the next
	// Sync, so what arrives until then is queued as skipped.
	discarding bool
}

func newProtoState() protoState {
	return protoState{stmts: map[string]*prepared{}, portals: map[string]*portal{}}
}

// push queues an expected response.
func (s *protoState) push(e *expect) {
	if s.discarding {
		if e.kind == expectSync {
			s.discarding = false
		} else if e.exec != nil {
			e.exec.skipped = true
		}
	}
	s.queue = append(s.queue, e)
}

// front returns the oldest expected response, or nil.
func (s *protoState) front() *expect {
	if s.head >= len(s.queue) {
		return nil
	}
	return s.queue[s.head]
}

// pop removes the front if it is of kind k and reports whether it did.
func (s *protoState) pop(k expectKind) bool {
	f := s.front()
	if f == nil || f.kind != k {
		return false
	}
	s.queue[s.head] = nil
	s.head++
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
	} else if s.head > 1024 && s.head*2 > len(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	return true
}

// skipToSync drops the expected responses up to (not including) the next
// Sync and returns the executions among them. Without a queued Sync,
// later messages are skipped too until one comes.
func (s *protoState) skipToSync() []*exec {
	var skipped []*exec
	for {
		f := s.front()
		if f == nil {
			s.discarding = true
			return skipped
		}
		if f.kind == expectSync {
			return skipped
		}
		if f.exec != nil && !f.exec.done {
			skipped = append(skipped, f.exec)
		}
		s.pop(f.kind)
	}
}

// parse records a Parse and queues its ParseComplete. An unnamed
// statement replaces the previous one.
func (s *protoState) parse(name string, info sql.Statement, v verdict) {
	s.stmts[name] = &prepared{info: info, verdict: v}
	s.push(&expect{kind: expectParse})
}

// refusedParse records a Parse that was refused: the server creates no
// statement of that name (and tollgate's injected statement replaced the
// unnamed one), so any use of the name is unknown to tollgate.
func (s *protoState) refusedParse(name string) {
	delete(s.stmts, name)
	delete(s.stmts, "")
}

// bind records a Bind and queues its BindComplete.
func (s *protoState) bind(portalName, stmtName string, formats []int16, params int) {
	ps := s.stmts[stmtName]
	// The portal's own rowDesc comes only from a Describe of the portal,
	// which carries the Bind's result formats; the statement's does not.
	s.portals[portalName] = &portal{stmtName: stmtName, stmt: ps, resultFormats: append([]int16(nil), formats...), params: params}
	s.push(&expect{kind: expectBind})
}

// describe queues a Describe's response.
func (s *protoState) describe(objType byte, name string) {
	e := &expect{kind: expectDescribe, objType: objType, name: name}
	switch objType {
	case 'S':
		if e.stmt = s.stmts[name]; e.stmt != nil {
			e.stmt.describing = true
		}
	case 'P':
		if e.portal = s.portals[name]; e.portal != nil {
			e.portal.describing = true
		}
	}
	s.push(e)
}

// described keeps the RowDescription a Describe returned, with the
// statement or portal that was described when the Describe was sent.
func (s *protoState) described(e *expect, body []byte) {
	desc := append([]byte(nil), body...)
	switch {
	case e.objType == 'S' && e.stmt != nil:
		e.stmt.rowDesc = desc
	case e.objType == 'P' && e.portal != nil:
		e.portal.rowDesc = desc
	}
}

// insertBeforeLast queues e just ahead of the response queued last: the
// answer to a message tollgate sends just ahead of the client's.
func (s *protoState) insertBeforeLast(e *expect) {
	n := len(s.queue)
	s.queue = append(s.queue, nil)
	copy(s.queue[n:], s.queue[n-1:n])
	s.queue[n-1] = e
	if s.discarding && e.exec != nil {
		e.exec.skipped = true
	}
}

// last returns the expected response queued last, or nil.
func (s *protoState) last() *expect {
	if s.head >= len(s.queue) {
		return nil
	}
	return s.queue[len(s.queue)-1]
}

// close forgets a statement or portal and queues the CloseComplete.
func (s *protoState) close(objType byte, name string) {
	switch objType {
	case 'S':
		delete(s.stmts, name)
	case 'P':
		delete(s.portals, name)
	}
	s.push(&expect{kind: expectClose})
}

// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/internal/rawio"
	"github.com/tollgate-dev/tollgate/policy/mask"
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
	// Both sockets are read and written with raw system calls where they
	// are plain sockets (not TLS): the relay goes idle between each
	// request and its answer, and net.Conn's calls wake the runtime's
	// sysmon thread on each such turn (see internal/rawio).
	client, upstream = rawio.Wrap(client), rawio.Wrap(upstream)
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

// SPDX-License-Identifier: Apache-2.0

package evidence

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tollgate-dev/tollgate/audit"
)

// heartbeatGap is the longest silence between heartbeats (written every
// 60 s) that is not reported, while the daemon was not restarted.
const heartbeatGap = 3 * time.Minute

// verifyChunk is how much of records.jsonl the reader hands a worker at a
// time (whole lines: a chunk ends after its last newline). Small enough
// that a chunk is still in the CPU's caches when the in-order consumer
// reads what the worker found, large enough to amortise the hand-overs.
const verifyChunk = 256 << 10

// kinds lists the record kinds of schema version 1, the only ones the
// verifier accepts.
var kinds = [...]audit.Kind{audit.KindAgentStart, audit.KindAgentStop, audit.KindPolicyLoad, audit.KindSessionStart, audit.KindSessionEnd,
	audit.KindStatement, audit.KindResult, audit.KindApprovalRequest, audit.KindApprovalDecision, audit.KindGrant, audit.KindHeartbeat, audit.KindError,
	audit.KindChannelOpen, audit.KindChannelRequest, audit.KindChannelData, audit.KindChannelClose, audit.KindSFTP}

// kindIndex returns the index of k in kinds, -1 if unknown. A switch on
// the string compiles to a few length and word comparisons, where a loop
// over kinds compared them all.
func kindIndex(k []byte) int {
	switch audit.Kind(k) {
	case audit.KindAgentStart:
		return 0
	case audit.KindAgentStop:
		return 1
	case audit.KindPolicyLoad:
		return 2
	case audit.KindSessionStart:
		return 3
	case audit.KindSessionEnd:
		return 4
	case audit.KindStatement:
		return 5
	case audit.KindResult:
		return 6
	case audit.KindApprovalRequest:
		return 7
	case audit.KindApprovalDecision:
		return 8
	case audit.KindGrant:
		return 9
	case audit.KindHeartbeat:
		return 10
	case audit.KindError:
		return 11
	case audit.KindChannelOpen:
		return 12
	case audit.KindChannelRequest:
		return 13
	case audit.KindChannelData:
		return 14
	case audit.KindChannelClose:
		return 15
	case audit.KindSFTP:
		return 16
	}
	return -1
}

// lineHead is what the in-order checks need of a record's leading fields.
// The byte slices point into the record's line.
type lineHead struct {
	log     []byte
	seq     uint64
	time    time.Time
	kind    []byte
	session []byte // nil if the record has none
}

// lineResult is what a worker found about one line.
type lineResult struct {
	leaf [audit.HashSize]byte
	head lineHead
	rec  *audit.Record // decoded for kinds whose body the semantics need
	err  error
	// kind is the index of the record's kind in kinds, -1 if unknown.
	kind int
	// sameLog is true if the record names the same log as the first
	// line of its batch, compared by the worker while the line is in
	// its cache: the consumer then compares only the batch's first.
	sameLog bool
}

// recordBatch is one read of records.jsonl: the whole lines in it go to a
// worker, all of it to the file hasher. Batches and their buffers are
// reused: the reader (until it copied the partial line at the end into the
// next batch), the file hasher and the consumer each hold a reference, and
// the last to let go returns the batch to the free list.
type recordBatch struct {
	data    []byte // the start of a line from the last read, then this read
	fresh   int    // data[fresh:] was read for this batch
	lines   []byte // whole lines, each ending in '\n'; a part of data
	res     []lineResult
	tooLong bool // after the lines: a line longer than any record
	done    chan struct{}
	refs    atomic.Int32
	free    chan *recordBatch
}

// release drops one reference; the last returns the batch for reuse.
func (b *recordBatch) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	clear(b.res) // drop what the results point to
	b.res, b.lines, b.tooLong = b.res[:0], nil, false
	select {
	case b.free <- b:
	default: // enough spare batches
	}
}

// process splits the batch into lines and checks each.
func (b *recordBatch) process(lh *leafHasher, cc *audit.CanonicalChecker) {
	n := bytes.Count(b.lines, []byte{'\n'})
	if cap(b.res) < n {
		b.res = make([]lineResult, n)
	}
	b.res = b.res[:n]
	rest := b.lines
	for i := range b.res {
		j := bytes.IndexByte(rest, '\n')
		res := &b.res[i]
		checkLine(lh, cc, rest[:j], res)
		if i > 0 && res.err == nil && b.res[0].err == nil {
			res.sameLog = bytes.Equal(res.head.log, b.res[0].head.log)
		}
		rest = rest[j+1:]
	}
}

// checkLine hashes and parses one line: the whole record must be in the
// canonical encoding (checked without allocating, by cc).
func checkLine(lh *leafHasher, cc *audit.CanonicalChecker, line []byte, res *lineResult) {
	*res = lineResult{}
	lh.sum(&res.leaf, line)
	if len(line) > audit.MaxRecordSize {
		res.err = fmt.Errorf("line of %d bytes, longer than the largest record (%d bytes)", len(line), audit.MaxRecordSize)
		return
	}
	if r, ok := cc.Check(line); ok {
		// The record's strings alias line, which lives as long as the
		// batch.
		res.head = lineHead{log: aliasBytes(r.Log), seq: r.Seq, time: r.Time, kind: aliasBytes(string(r.Kind))}
		res.kind = kindIndex(res.head.kind)
		if r.Session != "" {
			res.head.session = aliasBytes(r.Session)
		}
		if r.Kind == audit.KindHeartbeat || r.Kind == audit.KindApprovalRequest || r.Kind == audit.KindApprovalDecision {
			// The semantics read its detail after the checker moved
			// on: a record of its own (canonical, so audit.DecodeFast
			// takes its fast path).
			res.rec, _ = audit.DecodeFast(line)
		}
		return
	}
	res.err, res.kind = audit.CanonicalError(line), -1
}

// aliasBytes returns the bytes of s without copying; they must not be
// modified.
func aliasBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// readRecords streams records.jsonl through the workers and the in-order
// consumer, and returns the file's SHA-256. The reader only reads chunks of
// whole lines; hashing the file, hashing and parsing the records, and the
// tree and semantics run in their own goroutines.
func (v *verifier) readRecords(r io.Reader, size int64) []byte {
	rs := v.newRecordState()
	v.recs = rs
	// Small files get small buffers (the tar header's size is a hint
	// only: a short file just ends earlier).
	chunk := int(min(max(size+1, 4096), int64(v.chunk)))

	work := make(chan *recordBatch, 2*v.opts.Workers)
	ordered := make(chan *recordBatch, 4*v.opts.Workers)
	toHash := make(chan *recordBatch, 8)
	// Room for every batch that can be in flight.
	free := make(chan *recordBatch, cap(work)+cap(ordered)+cap(toHash)+v.opts.Workers+4)
	newBatch := func(carry []byte) *recordBatch {
		var b *recordBatch
		select {
		case b = <-free:
		default:
			b = &recordBatch{done: make(chan struct{}, 1), free: free}
		}
		if cap(b.data) < len(carry)+chunk {
			b.data = make([]byte, 0, len(carry)+chunk)
		}
		b.data = append(b.data[:0], carry...)
		b.fresh = len(carry)
		b.refs.Store(3) // reader, file hasher, consumer
		return b
	}

	fileHash := sha256.New()
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range toHash {
			fileHash.Write(b.data[b.fresh:])
			b.release()
		}
	}()
	for range v.opts.Workers {
		go func() {
			lh := newLeafHasher()
			var cc audit.CanonicalChecker
			for b := range work {
				b.process(lh, &cc)
				b.done <- struct{}{}
			}
		}()
	}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for b := range ordered {
			<-b.done
			rs.consumeBatch(b.res)
			if b.tooLong {
				rs.tooLong()
			}
			b.release()
		}
	}()

	var prev *recordBatch
	var carry []byte // the start of a line whose end is not read yet
	skipping := false
	var readErr error
	for readErr == nil {
		b := newBatch(carry)
		if prev != nil {
			prev.release() // carry, which pointed into it, is copied
		}
		prev = b
		n, err := readFull(r, b.data[len(carry):len(carry)+chunk])
		b.data = b.data[:len(carry)+n]
		if err != nil {
			readErr = err
		}
		lines := b.data
		if skipping {
			// Drop the rest of an overlong line.
			i := bytes.IndexByte(lines, '\n')
			if i < 0 {
				lines = lines[len(lines):]
			} else {
				lines, skipping = lines[i+1:], false
			}
		}
		cut := bytes.LastIndexByte(lines, '\n') + 1
		b.lines, carry = lines[:cut], lines[cut:]
		if len(carry) > audit.MaxRecordSize {
			b.tooLong = true
			carry, skipping = nil, true
		}
		toHash <- b
		if cut > 0 {
			work <- b
		} else {
			b.done <- struct{}{}
		}
		ordered <- b
	}
	close(work)
	close(ordered)
	<-consumed
	close(toHash)
	<-hashed
	if len(carry) > 0 && !skipping {
		rs.rep().failf(BundleRecords, "ends with %d bytes after the last newline (a partial record)", len(carry))
	}
	if prev != nil {
		prev.release()
	}
	if !errors.Is(readErr, io.EOF) {
		rs.rep().failf(BundleRecords, "cannot read: %v", readErr)
	}
	return fileHash.Sum(nil)
}

// readFull reads until b is full or r fails; io.EOF means r ended cleanly.
func readFull(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sessionState is what the records said about one session so far.
type sessionState struct {
	start, end          uint64 // seqs
	started, ended, cut bool
	statements, results uint64
	requests, decisions uint64
	startedBefore       bool
	// approvals are the ids of the session's approval requests: each
	// decision (partial votes and the final one) names one of them.
	approvals map[string]bool
}

// recordState checks the record stream in order: seq, origin, tree and
// semantics.
type recordState struct {
	v *verifier

	lines     uint64
	expect    uint64 // seq the next line must have
	seqKnown  bool
	origin    string
	beyondRep bool

	// Tree: acc is the compact range [0, begin+lines) once the range
	// proof is known (planned); before that, leaf hashes are kept in
	// leaves.
	acc        *audit.CompactRange
	planned    bool
	leaves     [][audit.HashSize]byte
	checkSizes []uint64 // sizes to take roots at, ascending
	next       int
	roots      map[uint64][]byte
	treeOK     bool

	trustedMsg    string
	trustedProved bool
	provedFrom    []uint64

	// First and last record's session, for the manifest's claim
	// (lastSession's storage is reused from batch to batch).
	firstSession string
	lastSession  []byte
	// firstLogOK is whether the first record of the batch being
	// consumed names the bundle's log.
	firstLogOK bool

	// Semantics.
	kindCount     [len(kinds)]uint64
	sessions      map[string]*sessionState
	lastHeartbeat time.Time
	hbSince       uint64 // seq of the last heartbeat or daemon start
	unsynced      int
	firstUnsynced uint64
	// Record times along seq: how many went back, the first that did.
	timeBack      int
	firstTimeBack uint64
	timeBackBy    time.Duration
}

func (rs *recordState) rep() *VerifyReport { return rs.v.rep }

// newRecordState starts the stream state; the tree is planned now if the
// checkpoints and range proof were read before the records.
func (v *verifier) newRecordState() *recordState {
	rs := &recordState{v: v, roots: map[uint64][]byte{}, sessions: map[string]*sessionState{}}
	if v.cp != nil {
		rs.origin = v.cp.Origin
	}
	if v.rng != nil {
		rs.expect, rs.seqKnown = v.rng.Begin, true
	}
	rs.planTree()
	return rs
}

// planTree sets up the running tree once the range proof is known.
func (rs *recordState) planTree() {
	v := rs.v
	if rs.planned || v.rng == nil {
		return
	}
	acc, err := audit.NewCompactRange(v.rng.Begin, hashBytes(v.rng.Left))
	if err != nil {
		return // checkRangeProof already refused such a proof
	}
	rs.acc = acc
	for _, c := range v.earlier {
		rs.checkSizes = append(rs.checkSizes, c.Size)
	}
	if t := v.trusted; t != nil && t.Size >= v.rng.Begin && t.Size <= v.rng.End {
		rs.checkSizes = append(rs.checkSizes, t.Size)
	}
	slices.Sort(rs.checkSizes)
	rs.checkSizes = slices.Compact(rs.checkSizes)
	rs.planned = true
	rs.snapshot()
	for _, h := range rs.leaves {
		rs.addLeaf(h)
	}
	rs.leaves = nil
}

// addLeaf appends a leaf hash to the tree (or keeps it for later).
func (rs *recordState) addLeaf(h [audit.HashSize]byte) {
	if !rs.planned {
		rs.leaves = append(rs.leaves, h)
		return
	}
	rs.acc.Append(&h)
	if rs.next < len(rs.checkSizes) {
		rs.snapshot()
	}
}

// snapshot records the root when the tree reached a size to check.
func (rs *recordState) snapshot() {
	for rs.next < len(rs.checkSizes) && rs.checkSizes[rs.next] < rs.acc.Size() {
		rs.next++
	}
	if rs.next < len(rs.checkSizes) && rs.checkSizes[rs.next] == rs.acc.Size() {
		rs.roots[rs.acc.Size()] = rs.acc.Root()
		rs.next++
	}
}

// tooLong reports a line longer than any record.
func (rs *recordState) tooLong() {
	rs.lines++
	rs.rep().fail(Problem{File: BundleRecords, Line: rs.lines, Message: fmt.Sprintf("line longer than the largest record (%d bytes)", audit.MaxRecordSize)})
	rs.expect++
	rs.addLeaf([audit.HashSize]byte{}) // keep positions: the root will not match
}

// consumeBatch checks a batch's lines, in order.
func (rs *recordState) consumeBatch(res []lineResult) {
	for i := range res {
		rs.consume(&res[i], i == 0)
	}
	// The last valid record's session, copied once per batch: the
	// session bytes alias the batch.
	for i := len(res) - 1; i >= 0; i-- {
		if res[i].err == nil {
			rs.lastSession = append(rs.lastSession[:0], res[i].head.session...)
			break
		}
	}
}

// consume checks one line, in order.
func (rs *recordState) consume(res *lineResult, first bool) {
	rs.lines++
	line := rs.lines
	rs.addLeaf(res.leaf)
	rep := rs.rep()
	if res.err != nil {
		p := Problem{File: BundleRecords, Line: line, Message: "not a valid record: " + res.err.Error()}
		if rs.seqKnown {
			s := rs.expect
			p.Seq = &s
		}
		rep.fail(p)
		rs.expect++
		return
	}
	h := &res.head
	seq := h.seq
	at := func(msg string, args ...any) Problem {
		s := seq // only failures pay for a pointer
		return Problem{File: BundleRecords, Line: line, Seq: &s, Message: fmt.Sprintf(msg, args...)}
	}
	if !rs.seqKnown {
		rs.expect, rs.seqKnown = seq, true
	}
	if r := rs.v.rng; r != nil && seq >= r.End && seq == rs.expect {
		if !rs.beyondRep {
			rep.fail(at("seq %d is beyond the range [%d, %d) the signed checkpoint covers: a record was added without a checkpoint", seq, r.Begin, r.End))
			rs.beyondRep = true
		}
	} else if seq != rs.expect {
		switch {
		case seq > rs.expect:
			rep.fail(at("seq %d where %d was expected: record %d is missing (removed) or out of order", seq, rs.expect, rs.expect))
		default:
			rep.fail(at("seq %d where %d was expected: a record is repeated or out of order", seq, rs.expect))
		}
	}
	rs.expect = seq + 1
	// A record the worker found to name the same log as its batch's
	// first is right exactly when that one was.
	logOK := rs.firstLogOK
	if !res.sameLog {
		if rs.origin == "" {
			rs.origin = string(h.log)
		}
		logOK = string(h.log) == rs.origin
		if first {
			rs.firstLogOK = logOK
		}
	}
	if !logOK {
		rep.fail(at("record of log %q in a bundle of log %q", h.log, rs.origin))
	}
	if line == 1 {
		rep.FirstTime = h.time
		rs.firstSession = string(h.session)
	} else if h.time.Before(rep.LastTime) {
		// The log stamps records in seq order; logs written before it
		// did could go back by moments, so this warns rather than fails.
		if rs.timeBack == 0 {
			rs.firstTimeBack, rs.timeBackBy = seq, rep.LastTime.Sub(h.time)
		}
		rs.timeBack++
	}
	rep.LastTime = h.time
	k := res.kind
	if k < 0 {
		rep.fail(at("record kind %q is unknown to this verifier", h.kind))
		return
	}
	rs.kindCount[k]++
	rs.semantics(kinds[k], h, res.rec, at)
}

// semantics checks what a record means against what came before.
func (rs *recordState) semantics(kind audit.Kind, h *lineHead, rec *audit.Record, at func(string, ...any) Problem) {
	rep := rs.rep()
	seq := h.seq
	begin := uint64(0)
	if rs.v.rng != nil {
		begin = rs.v.rng.Begin
	}
	switch kind {
	case audit.KindAgentStart:
		var cut []string
		for id, s := range rs.sessions {
			if !s.ended && !s.cut {
				s.cut = true
				cut = append(cut, id)
			}
		}
		if len(cut) > 0 {
			slices.Sort(cut)
			n := len(cut)
			rep.Sessions.Interrupted += n
			more := ""
			if n > 5 {
				more, cut = fmt.Sprintf(" and %d more", n-5), cut[:5]
			}
			rep.warn(at("daemon started while %d session(s) had no end: a crash or kill cut them (%s%s)", n, strings.Join(cut, ", "), more))
		}
		rs.lastHeartbeat, rs.hbSince = time.Time{}, seq
		return
	case audit.KindAgentStop:
		rs.lastHeartbeat = time.Time{}
		return
	case audit.KindHeartbeat:
		if !rs.lastHeartbeat.IsZero() && h.time.Sub(rs.lastHeartbeat) > heartbeatGap {
			rep.warn(at("no heartbeat for %s before this one (since seq %d) while the daemon ran", h.time.Sub(rs.lastHeartbeat).Round(time.Second), rs.hbSince))
		}
		rs.lastHeartbeat, rs.hbSince = h.time, seq
		if rec != nil {
			if s := rec.Detail[audit.DetailClockSync]; s != "synchronised" {
				if rs.unsynced == 0 {
					rs.firstUnsynced = seq
				}
				rs.unsynced++
			}
		}
		return
	case audit.KindSessionStart, audit.KindSessionEnd, audit.KindStatement, audit.KindResult, audit.KindApprovalRequest, audit.KindApprovalDecision,
		audit.KindChannelOpen, audit.KindChannelRequest, audit.KindChannelData, audit.KindChannelClose, audit.KindSFTP:
	default:
		return
	}
	if len(h.session) == 0 {
		if kind == audit.KindApprovalRequest || kind == audit.KindApprovalDecision {
			return // approvals may concern grants rather than a session
		}
		rep.fail(at("%s record without a session", kind))
		return
	}
	s := rs.sessions[string(h.session)]
	if kind == audit.KindSessionStart {
		if s != nil {
			rep.fail(at("session %s starts again (it started at seq %d)", h.session, s.start))
			return
		}
		rs.sessions[strings.Clone(string(h.session))] = &sessionState{start: seq, started: true}
		rep.Sessions.Started++
		return
	}
	if s == nil {
		if begin == 0 {
			rep.fail(at("%s for session %s, which never started", kind, h.session))
			return
		}
		// It started before the exported range.
		s = &sessionState{startedBefore: true}
		rs.sessions[strings.Clone(string(h.session))] = s
		rep.Sessions.StartedBefore++
	}
	if s.ended {
		rep.fail(at("%s for session %s after its end at seq %d", kind, h.session, s.end))
		return
	}
	if s.cut {
		rep.fail(at("%s for session %s, which a daemon restart had cut", kind, h.session))
		return
	}
	switch kind {
	case audit.KindSessionEnd:
		s.ended, s.end = true, seq
		rep.Sessions.Ended++
	case audit.KindStatement:
		s.statements++
		rep.Sessions.Statements++
	case audit.KindResult:
		if s.results >= s.statements && !s.startedBefore {
			rep.fail(at("result in session %s without a prior statement", h.session))
		}
		s.results++
	case audit.KindApprovalRequest:
		s.requests++
		if id := approvalID(rec); id != "" {
			if s.approvals == nil {
				s.approvals = map[string]bool{}
			}
			s.approvals[id] = true
		}
	case audit.KindApprovalDecision:
		// Decisions are matched to requests by approval id; records
		// without one are counted against the session's requests.
		if id := approvalID(rec); id != "" {
			if !s.approvals[id] && !s.startedBefore {
				rep.fail(at("approval decision %s in session %s without a prior request", id, h.session))
			}
		} else if s.decisions >= s.requests && !s.startedBefore {
			rep.fail(at("approval decision in session %s without a prior request", h.session))
		}
		s.decisions++
	}
}

// approvalID is the approval id an approval record names, if any.
func approvalID(rec *audit.Record) string {
	if rec == nil {
		return ""
	}
	return rec.Detail[audit.DetailApproval]
}

// trustedFailure notes why the trusted checkpoint does not relate.
func (rs *recordState) trustedFailure(msg string) { rs.trustedMsg = msg }

// warnTimeBack reports records whose time is before the previous one's.
func (rs *recordState) warnTimeBack() {
	if rs.timeBack > 0 {
		rs.rep().warn(Problem{File: BundleRecords, Seq: &rs.firstTimeBack,
			Message: fmt.Sprintf("%d record(s) carry a time before the record before them (the first, at this seq, by %s): record times go back along seq", rs.timeBack, rs.timeBackBy)})
	}
}

// finishTree ends the record stream: the records must be exactly the range,
// their tree with the range proof must give the signed root, and the
// earlier checkpoints' roots must match.
func (rs *recordState) finishTree() {
	v, rep := rs.v, rs.rep()
	rs.planTree()
	rep.Records = rs.lines
	for k, n := range rs.kindCount {
		if n > 0 {
			rep.Kinds[string(kinds[k])] = n
		}
	}
	for _, s := range rs.sessions {
		if !s.ended && !s.cut {
			rep.Sessions.Open++
		}
	}
	if rs.unsynced > 0 {
		rep.warn(Problem{File: BundleRecords, Seq: &rs.firstUnsynced,
			Message: fmt.Sprintf("%d heartbeat(s) say the clock was not synchronised (first at this seq): record times may be off", rs.unsynced)})
	}
	rs.warnTimeBack()
	if !rs.planned {
		return
	}
	want := v.rng.End - v.rng.Begin
	switch {
	case rs.lines < want:
		rep.failf(BundleRecords, "has %d records, the signed range [%d, %d) has %d: records are missing (the tail was truncated or records removed)", rs.lines, v.rng.Begin, v.rng.End, want)
	case rs.lines > want:
		rep.failf(BundleRecords, "has %d records, the signed range [%d, %d) has %d: records were added", rs.lines, v.rng.Begin, v.rng.End, want)
	}
	// Earlier checkpoints, in order, localise a difference.
	good := v.rng.Begin
	for _, c := range v.earlier {
		root, ok := rs.roots[c.Size]
		if !ok {
			continue // fewer records than its size: reported above
		}
		name := BundleCheckpointsDir + fmt.Sprint(c.Size) + ".note"
		if !bytes.Equal(root, c.Root) {
			rep.failf(name, "the records give another root at size %d than this signed checkpoint: a record in seq [%d, %d) was changed, removed, added or reordered", c.Size, good, c.Size)
			rs.trustedMsg = "cannot be checked: the records do not match the host's checkpoints"
			return
		}
		good = c.Size
	}
	if rs.lines != want {
		rs.trustedMsg = "cannot be checked: the records do not match the signed range"
		return
	}
	root, err := rs.acc.RootWith(v.rng.Size, hashBytes(v.rng.Right))
	if err != nil {
		rep.failf(BundleRangeProof, "%v", err)
		return
	}
	if !bytes.Equal(root, v.cp.Root) {
		rep.failf(BundleCheckpoint, "the records [%d, %d) with the range proof give another root than the signed one at size %d: a record in seq [%d, %d) was changed, removed, added or reordered (or the range proof is wrong)",
			v.rng.Begin, v.rng.End, v.cp.Size, good, v.rng.End)
		rs.trustedMsg = "cannot be checked: the records do not match the signed root"
		return
	}
	rs.treeOK = true
}

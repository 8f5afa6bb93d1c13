// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// DefaultCheckpointInterval is the checkpoint interval when
// Options.CheckpointInterval is zero.
const DefaultCheckpointInterval = time.Second

// Options configure Open.
type Options struct {
	// HostID names the host in the log id "tollgate/<host-id>/<epoch>".
	// It is required to create a log and must match the stored host id
	// when opening an existing one read-write; empty accepts any. It
	// consists of 1 to 255 characters from [A-Za-z0-9._-].
	HostID string

	// Timeout bounds the wait for the file lock, which another process
	// (the daemon, or a reader while the daemon is stopped) may hold.
	// Zero means DefaultTimeout; Open never waits forever. When it
	// expires, Open returns ErrLocked.
	Timeout time.Duration

	// ReadOnly opens an existing log for reading only, with a shared lock,
	// for CLI reads while the daemon is stopped. Append returns
	// ErrReadOnly.
	ReadOnly bool

	// Logger receives state changes (log unwritable, writable again).
	// Nil discards them.
	Logger *slog.Logger

	// NoSync skips fsync on commit. Records are then NOT durable when
	// Append returns. For tests only; never set it in the daemon.
	NoSync bool

	// FlushInterval selects when an appended record counts as durable.
	// Zero (sync: always) flushes the journal write holding a record
	// (fdatasync) before Append returns. A positive interval (sync:
	// batch) returns once the record is written to the journal (pwrite),
	// so it survives a crash of the daemon, and flushes within the
	// interval: a power loss or kernel crash can lose the records
	// appended in the last interval. Either way the indexer stores only
	// flushed records in bbolt, so no checkpoint covers a record that is
	// not on disk.
	FlushInterval time.Duration

	// Key signs checkpoints. Without it the log keeps its Merkle tree but
	// signs no checkpoints. The first Open with a key records its
	// verifier key in the log; later opens with another key fail with
	// ErrKeyMismatch. Ignored when ReadOnly.
	Key *HostKey

	// JournalSize is the size of the journal file next to the log
	// (path + JournalSuffix), where records become durable before the
	// indexer stores them in bbolt. Zero means DefaultJournalSize; it must
	// be at least MinJournalSize. It applies when the journal is created;
	// an existing journal keeps its size.
	JournalSize int64

	// CheckpointInterval is the shortest time between two checkpoints
	// while records keep arriving; unsigned records are signed within
	// about this long even if no more arrive. Zero means
	// DefaultCheckpointInterval.
	CheckpointInterval time.Duration

	// Observer, when set, is told of each group commit (for metrics).
	Observer Observer
}

// Observer watches the log, for metrics. Its methods must return at
// once: they are called on the writer goroutine (Committed; in batch mode
// also on appending goroutines that write the journal) and on the
// appending goroutines (Durable).
type Observer interface {
	// Committed reports one group commit: the records it made durable
	// and how long writing and syncing the journal took. In batch mode
	// (Options.FlushInterval) it reports each journal write (its records
	// and the write's time) and each flush apart, with records 0 and
	// the fdatasync's time.
	Committed(records int, took time.Duration)
	// Durable reports records once durable, in their order. waited is
	// how long the caller of Append or AppendAll waited for them; it is
	// negative for AppendEach's, which nothing waits for.
	Durable(rs []*Record, waited time.Duration)
}

// Log is a host's append-only audit log in a bbolt file and its journal.
// One Log owns both: a single writer goroutine group-commits appended
// records to the journal, and a single indexer goroutine stores them in the
// bbolt file. All methods are safe for concurrent use.
type Log struct {
	path     string
	opts     Options
	logger   *slog.Logger
	readOnly bool

	host  string
	epoch string
	id    string
	// head is the encoding of every record before its seq (encodeSplit),
	// shared read-only by all requests.
	head []byte

	// size is the number of durable (acknowledged) records.
	size atomic.Uint64

	// dbMu guards db against being swapped or closed while a read
	// transaction uses it; the indexer takes it exclusively to reopen the
	// file and readers share it. The indexer itself reads db without it:
	// it is the only goroutine that changes db.
	dbMu     sync.RWMutex
	db       *bolt.DB // nil while the file could not be reopened
	dbClosed bool     // Close closed the file

	// mu guards the queue, producers, nextSeq, closed and expect.
	mu     sync.Mutex
	queue  []*request
	closed bool
	// producers is how many requests in the queue are marked producer.
	producers int
	// expect is how many producers the writer expects in its next batch,
	// and lastCommit how long its last commit took (written by the writer
	// only).
	expect     int
	lastCommit time.Duration
	// gather is the longest the writer waits for expected records:
	// maxGather (tests change it).
	gather time.Duration
	// nextSeq is the seq the next queued record will get if every batch
	// before it commits: size plus the records queued or being
	// committed.
	nextSeq uint64
	// lastTime is the time of the newest record queued (under mu): a
	// record is never stamped earlier than the one before it in seq
	// order (see enqueue).
	lastTime time.Time
	// clockBackWarned is when enqueue last warned that the clock went
	// back (under mu): once a minute at most while it has not caught up.
	clockBackWarned time.Time
	// wake has room for one token: Append and Close leave one after
	// changing the queue or closed.
	wake chan struct{}
	// writerDone is closed when the writer goroutine has exited.
	writerDone chan struct{}

	// changedMu guards changed, which is closed and replaced whenever size
	// grows (a broadcast to Wait).
	changedMu sync.Mutex
	changed   chan struct{}
	// closing is closed by Close.
	closing chan struct{}

	// healthMu guards health and dbFailed.
	healthMu sync.Mutex
	health   [2]error // per source (healthJournal, healthStore): nil, or the last failure (wraps ErrUnwritable)
	dbFailed bool     // the last reopen failed

	// ckptWanted asks the writer for a checkpoint of unsigned records
	// (guarded by mu); ckptWaiters are answered when it committed.
	ckptWanted  bool
	ckptWaiters []chan error

	// jrnl is the journal (nil when read-only); only the writer uses it.
	jrnl *journal
	// indexed is how many records bbolt holds; the indexer is the only
	// goroutine that moves it (under idxMu).
	indexed atomic.Uint64
	// idxMu guards the indexer's state below; idxCond is broadcast after
	// each of its attempts and when it exits.
	idxMu   sync.Mutex
	idxCond *sync.Cond
	// unindexed are the acknowledged records bbolt does not hold yet, in
	// seq order: the indexer's queue, and what readers see beyond bbolt.
	unindexed []jrec
	// unindexedBytes is the size of their data.
	unindexedBytes int
	idxForce       bool
	idxWaiters     []chan error
	// idxErr is the cause of the indexer's last attempt failing, nil
	// after a success; idxRuns counts attempts.
	idxErr  error
	idxRuns uint64
	idxStop bool
	// idxHurry asks for a transaction now, not after indexInterval.
	idxHurry  bool
	idxExited bool
	idxWake   chan struct{}
	idxDone   chan struct{}

	// hook extends the append transaction (Merkle tree, checkpoints).
	// Only the indexer uses it; it is set before the indexer starts.
	hook txHook
	// tree is hook when it is the Merkle tree (nil in tests with other
	// hooks and in read-only logs).
	tree *merkleTree
	// hashLeaves has producers compute leaf hashes for the tree.
	hashLeaves bool
	// flushEvery is Options.FlushInterval: zero flushes every journal
	// write, positive leaves writes unflushed for up to this long.
	flushEvery time.Duration
	// wmu is held by whoever writes the journal in batch mode: the
	// writer goroutine or an appending goroutine that found it free
	// (see lead). It guards the journal and the writer's state below
	// (unsynced to flushErr, seqStale) and wdone.
	wmu sync.Mutex
	// wdone is set when the writer finished: nothing writes any more.
	wdone bool
	// synced is how many records are flushed to disk: the indexer stores
	// no record beyond it. It equals size except in batch mode.
	synced atomic.Uint64
	// syncWanted asks the writer to flush now (a reader waits for records
	// to be stored).
	syncWanted atomic.Bool
	// unsynced and unsyncedBytes count the records written to the
	// journal but not flushed, since unsyncedSince; flushErr is the last
	// flush's failure. Only the writer uses them.
	unsynced      int
	unsyncedBytes int
	unsyncedSince time.Time
	flushErr      error

	// seqStale is set by the writer when a batch held a record prepared
	// for another seq than it got: nextSeq is behind the file.
	seqStale bool

	// pruned is what Prune removed: records [0, below) and the time of
	// the newest of them (nil: nothing). Set at Open and by the indexer.
	pruned atomic.Pointer[PruneState]
	// idxPrune is a prune batch for the indexer (guarded by idxMu);
	// pruneMu makes Prune calls take turns.
	idxPrune *pruneReq
	pruneMu  sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// Open opens the audit log in the bbolt file at path, creating the file
// (mode 0600) and a new log with a fresh random epoch if it does not exist.
// The log id "tollgate/<host-id>/<epoch>" is fixed at creation and stable
// across reopens. Open returns ErrLocked if the file stays locked by another
// opener for Options.Timeout.
//
// A read-only Log (Options.ReadOnly) sees the log as it was at Open; the
// file cannot change while it is open, because a writer needs the exclusive
// lock.
//
// A read-write Log maintains the log's RFC 6962 Merkle tree in the same
// transactions as the records; a log written before the tree (format 1)
// gets its tree built once, here. With Options.Key it signs checkpoints.
func Open(path string, opts Options) (*Log, error) {
	if opts.ReadOnly {
		return open(path, opts, nil)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	interval := opts.CheckpointInterval
	if interval <= 0 {
		interval = DefaultCheckpointInterval
	}
	var t *merkleTree
	if opts.Key != nil {
		t = newMerkleTree(logger, opts.Key.Signer, opts.Key.VerifierKey, interval)
	} else {
		t = newMerkleTree(logger, nil, "", interval)
	}
	return open(path, opts, t)
}

// open is Open with an optional hook for the append transaction.
func open(path string, opts Options, hook txHook) (_ *Log, err error) {
	if opts.HostID != "" {
		if err := checkHostID(opts.HostID); err != nil {
			return nil, fmt.Errorf("open audit log %s: %w", path, err)
		}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		path:       path,
		opts:       opts,
		logger:     logger,
		readOnly:   opts.ReadOnly,
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		changed:    make(chan struct{}),
		closing:    make(chan struct{}),
		hook:       hook,
		gather:     maxGather,
		flushEvery: max(opts.FlushInterval, 0),
		idxWake:    make(chan struct{}, 1),
		idxDone:    make(chan struct{}),
	}
	l.idxCond = sync.NewCond(&l.idxMu)
	jsize := opts.JournalSize
	if jsize == 0 {
		jsize = DefaultJournalSize
	}
	if l.flushEvery > 0 {
		// A journal write costs microseconds: waiting to gather more
		// records into it would only add latency.
		l.gather = 0
	}
	if jsize < MinJournalSize {
		return nil, fmt.Errorf("open audit log %s: journal size %d below the minimum %d", path, jsize, MinJournalSize)
	}
	if t, ok := hook.(*merkleTree); ok {
		l.tree = t
	}
	db, err := l.openDB()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()

	var st logState
	if l.readOnly {
		err = db.View(func(tx *bolt.Tx) error {
			st, err = loadState(tx)
			return err
		})
	} else {
		st, err = initOrLoad(db, opts.HostID)
	}
	if err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	if !l.readOnly {
		if opts.HostID != "" && opts.HostID != st.host {
			return nil, fmt.Errorf("open audit log %s: created for host %q, not %q: %w", path, st.host, opts.HostID, ErrHostMismatch)
		}
		if hook != nil {
			if err := hook.open(db); err != nil {
				return nil, fmt.Errorf("open audit log %s: %w", path, err)
			}
		}
		var recs []jrec
		l.jrnl, recs, err = loadJournal(path+JournalSuffix, st.id, st.size, jsize, opts.NoSync)
		if err != nil {
			return nil, fmt.Errorf("open audit log %s: %w", path, err)
		}
		defer func() {
			if err != nil {
				_ = l.jrnl.close()
			}
		}()
		// bbolt does not sync the directory: without this a crash
		// could lose a new file, with every record acknowledged in it.
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("open audit log %s: %w", path, err)
		}
		if len(recs) > 0 && !opts.NoSync {
			// Written by a daemon in batch mode, they may be in the
			// page cache only: the indexer stores only flushed
			// records, so the journal never lags the bbolt file.
			if err := l.jrnl.sync(); err != nil {
				return nil, fmt.Errorf("open audit log %s: flush journal: %w", path, err)
			}
		}
		l.unindexed = recs
		for _, r := range recs {
			l.unindexedBytes += len(r.data)
		}
		if len(recs) > 0 {
			logger.Info("audit records from the journal to store", "path", path, "stored", st.size, "journaled", len(recs))
		}
	} else {
		l.unindexed, err = readOnlyJournal(path+JournalSuffix, st.id, st.size)
		if err != nil {
			return nil, fmt.Errorf("open audit log %s: %w", path, err)
		}
	}
	l.host, l.epoch, l.id = st.host, st.epoch, st.id
	if st.pruned > 0 {
		l.pruned.Store(&PruneState{Below: st.pruned, NewestTime: st.prunedTime})
	}
	l.head = encodeHead(SchemaVersion, l.id)
	l.indexed.Store(st.size)
	size := st.size + uint64(len(l.unindexed))
	l.size.Store(size)
	l.synced.Store(size)
	l.nextSeq = size
	l.hashLeaves = l.tree != nil
	l.db = db
	if l.lastTime, err = l.newestTime(&st); err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	if l.readOnly {
		close(l.writerDone)
		close(l.idxDone)
	} else {
		go l.indexLoop()
		go l.run()
		if l.tree != nil && l.tree.signer != nil {
			go l.checkpointLoop(l.tree.interval)
		}
	}
	return l, nil
}

// openDB opens the bbolt file with the Log's options.
func (l *Log) openDB() (*bolt.DB, error) {
	timeout := l.opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	db, err := bolt.Open(l.path, 0o600, &bolt.Options{
		Timeout:  timeout,
		ReadOnly: l.readOnly,
		NoSync:   l.opts.NoSync,
		// The freelist is rebuilt from the tree at open instead of being
		// written by every commit: an append-only log frees few pages,
		// but the array freelist page(s) were rewritten on each of the
		// many small commits, costing write and flush time on the
		// durable path. The hashmap freelist allocates in O(1).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open audit log %s: %w after %v: %w", l.path, ErrLocked, timeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open audit log %s: %w: %w", l.path, ErrFormat, err)
	default:
		return nil, fmt.Errorf("open audit log %s: %w", l.path, err)
	}
}

// initOrLoad creates a new log in an empty database, or loads an existing one.
func initOrLoad(db *bolt.DB, host string) (logState, error) {
	var st logState
	err := db.Update(func(tx *bolt.Tx) error {
		if isEmpty(tx) {
			if host == "" {
				return fmt.Errorf("new log needs a host id: %w", ErrInvalidHostID)
			}
			if err := initLog(tx, host, time.Now()); err != nil {
				return err
			}
		}
		var err error
		st, err = loadState(tx)
		return err
	})
	return st, err
}

// syncDir fsyncs a directory, making the names in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ID returns the log id, "tollgate/<host-id>/<epoch>". It is the "log" field
// of every record and the origin of the log's checkpoints.
func (l *Log) ID() string { return l.id }

// Epoch returns the random epoch fixed when the log was created
// (16 lower-case hex digits).
func (l *Log) Epoch() string { return l.epoch }

// Size returns the number of durable records; the next Append gets this seq.
func (l *Log) Size() uint64 { return l.size.Load() }

// Healthy returns nil if the last journal write and the last store in the
// bbolt file succeeded (or none was tried yet), an error wrapping
// ErrUnwritable and its cause while either fails, and ErrClosed after
// Close.
func (l *Log) Healthy() error {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	return l.healthLocked()
}

// Append writes r to the log and returns its seq once it is durable: the
// journal write holding it was flushed (fdatasync), or, with
// Options.FlushInterval, written to the journal and flushed within that
// interval. It sets r.V and r.Log, sets
// r.Time to the current time if it is zero, or to the time of the record
// before it if r.Time is earlier (record times never go back along seq;
// a caller that needs another instant keeps it in Detail), and on success
// sets r.Seq. The record is encoded when Append is called; later changes
// to r do not affect what is stored.
//
// If the journal write fails, or the bbolt file cannot store records (see
// Healthy), Append returns an error wrapping ErrUnwritable and the cause;
// nothing of the batch was acknowledged and seq did not advance, and the
// next Append tries again. Once r is queued it will be written even
// if ctx ends: ctx only bounds the wait, so Append may return ctx.Err() for
// a record that is (or later becomes) durable under the next seq. Callers
// that must not act unrecorded treat ctx.Err() like any other error.
// After Close, Append returns ErrClosed.
func (l *Log) Append(ctx context.Context, r *Record) (uint64, error) {
	start := time.Now()
	rs := [1]*Record{r}
	reqs, err := l.enqueue(ctx, rs[:], true, nil)
	if err != nil {
		return 0, err
	}
	select {
	case res := <-reqs[0].done:
		if res.err != nil {
			return 0, res.err
		}
		r.Seq = res.seq
		if l.opts.Observer != nil {
			l.opts.Observer.Durable(rs[:], time.Since(start))
		}
		return res.seq, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// AppendAll writes rs to the log in their order, with consecutive seqs,
// and returns once all are durable, setting each one's Seq. It is Append
// for a burst: the records are queued together, so that they usually share
// one commit, and no other producer's record comes between them. A burst
// longer than a commit's limit spans consecutive commits; if one fails,
// AppendAll returns its error, and the burst's records in the other
// commits may be stored or not: a caller that acts only after AppendAll
// returned nil never acts unrecorded. The rules of Append on ctx apply.
func (l *Log) AppendAll(ctx context.Context, rs []*Record) error {
	start := time.Now()
	reqs, err := l.enqueue(ctx, rs, true, nil)
	if err != nil {
		return err
	}
	for i, req := range reqs {
		select {
		case res := <-req.done:
			if res.err != nil {
				return res.err
			}
			rs[i].Seq = res.seq
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if l.opts.Observer != nil {
		l.opts.Observer.Durable(rs, time.Since(start))
	}
	return nil
}

// AppendEach is AppendAll for records that are appended whatever happens
// to the others: it waits for every record and returns one error per
// record, nil for each that is durable (its Seq set); a record that cannot
// be encoded gets its error and the others are appended. A nil slice means
// all are durable. It does not take a context: it waits until each record
// was committed or failed.
func (l *Log) AppendEach(rs []*Record) []error {
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(rs))
		}
		errs[i] = err
	}
	reqs, err := l.enqueue(context.Background(), rs, false, fail)
	if err != nil {
		for i := range rs {
			fail(i, err)
		}
		return errs
	}
	for i, req := range reqs {
		if req == nil {
			continue
		}
		res := <-req.done
		if res.err != nil {
			fail(i, res.err)
			continue
		}
		rs[i].Seq = res.seq
		if l.opts.Observer != nil {
			l.opts.Observer.Durable(rs[i:i+1], -1)
		}
	}
	return errs
}

// enqueue encodes rs and queues them together for the writer. A record
// that cannot be encoded fails the whole call, unless invalid is set: then
// invalid gets it and its request is nil. producer marks the call as one
// producer the writer expects back (see request.producer).
func (l *Log) enqueue(ctx context.Context, rs []*Record, producer bool, invalid func(int, error)) ([]*request, error) {
	if l.readOnly {
		return nil, fmt.Errorf("append: %w", ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reqs := make([]*request, len(rs))
	now := time.Now().UTC()
	for i, r := range rs {
		r.V = SchemaVersion
		r.Log = l.id
		if r.Time.IsZero() {
			r.Time = now
		}
		// The head is the same for every record of the log (V and Log
		// were just set): encoded once, at Open.
		tail, err := l.encodeTail(r)
		if err != nil {
			if len(rs) > 1 {
				err = fmt.Errorf("record %d of %d: %w", i+1, len(rs), err)
			}
			err = fmt.Errorf("append: %w", err)
			if invalid == nil {
				return nil, err
			}
			invalid(i, err)
			continue
		}
		reqs[i] = &request{head: l.head, tail: tail, done: make(chan result, 1)}
	}

	var back time.Duration
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("append: %w", ErrClosed)
	}
	for i, req := range reqs {
		if req != nil {
			// Records are stamped before they take their place in seq
			// order (encoding runs outside the lock), so one stamped a
			// moment later may take the earlier seq: it lends its time to
			// the ones behind it. The time's width is fixed, so the
			// encoded tail is patched in place.
			if rs[i].Time.Before(l.lastTime) {
				back = max(back, l.lastTime.Sub(rs[i].Time))
				rs[i].Time = l.lastTime
				setTailTime(req.tail, l.lastTime)
			}
			l.lastTime = rs[i].Time
			req.seq = l.nextSeq
			l.nextSeq++
			if producer {
				req.producer, producer = true, false
				l.producers++
			}
			l.queue = append(l.queue, req)
		}
	}
	// A step of the clock back (or a caller's old time) holds the records'
	// time at the last one's until the clock catches up: say so, since
	// their times then tell order, not the wall clock.
	warnBack := back > time.Second && time.Since(l.clockBackWarned) > time.Minute
	if warnBack {
		l.clockBackWarned = time.Now()
	}
	last := l.lastTime
	l.mu.Unlock()
	if warnBack {
		l.logger.Warn("audit record time is before the previous record's: records are stamped with the previous time until the clock passes it (did the clock step back?)",
			"behind", back.String(), "stamped", last.Format(time.RFC3339Nano))
	}
	// Prepared before the writer is woken, so that an idle writer finds
	// them ready; a busy one may take them unprepared and build them.
	for _, req := range reqs {
		if req != nil {
			l.prepare(req)
		}
	}
	if l.flushEvery > 0 {
		l.lead()
	} else {
		l.signal()
	}
	return reqs, nil
}

// tailTimeAt is where the time value starts in an encoded tail.
var tailTimeAt = len(`,"time":"`)

// setTailTime overwrites the time in an encoded tail (encodeTail's
// layout: the time comes first, in the fixed-width timeLayout).
func setTailTime(tail []byte, t time.Time) {
	appendTime(tail[tailTimeAt:tailTimeAt], t)
}

// newestTime is the time of the log's last record at open (zero for an
// empty log; the newest pruned time when retention removed every record).
func (l *Log) newestTime(st *logState) (time.Time, error) {
	size := l.Size()
	if size == 0 {
		return time.Time{}, nil
	}
	if st.pruned >= size {
		return st.prunedTime, nil
	}
	es, err := l.Tail(1)
	if err != nil {
		return time.Time{}, err
	}
	if len(es) != 1 {
		return time.Time{}, fmt.Errorf("last record %d missing: %w", size-1, ErrCorrupt)
	}
	r, err := es[0].Record()
	if err != nil {
		return time.Time{}, fmt.Errorf("last record %d: %w", size-1, err)
	}
	return r.Time, nil
}

// encodeTail is encodeSplit's tail for a record of this log (r.V and
// r.Log set); the head is l.head.
func (l *Log) encodeTail(r *Record) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return encodeTail(r, len(l.head))
}

// signal wakes the writer without blocking.
func (l *Log) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close stops accepting records, waits until every record queued before it
// was committed (or failed), stops the writer and closes the file. Wait
// calls return ErrClosed. Close is safe to call more than once; later calls
// return the first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.closing)
		l.signal()
		<-l.writerDone

		l.dbMu.Lock()
		defer l.dbMu.Unlock()
		l.dbClosed = true
		if l.db != nil {
			if err := l.db.Close(); err != nil {
				l.closeErr = fmt.Errorf("close audit log %s: %w", l.path, err)
			}
			l.db = nil
		}
	})
	return l.closeErr
}

// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The journal is where a record first becomes durable. A bbolt commit costs
// page writes and two flushes (one for the pages, one for the meta page
// that makes them visible); a statement waiting for that before it reaches
// the server pays both. The journal costs one write and one flush per group:
// the writer appends a group's records as frames to a preallocated,
// zero-filled file (so the flush changes no file metadata) and answers the
// producers; a second goroutine, the indexer, then stores them in bbolt
// with the Merkle tree in larger transactions, off the statements' path.
// Open replays what the indexer had not stored before a crash.
//
// File layout: a header block, then frames, each
//
//	length uint32 | crc32c(seq ‖ data) uint32 | seq uint64 | data
//
// (big endian). A zero length ends the frames. The writer starts again at
// the first frame once everything written was stored in bbolt and that
// commit was flushed; frames left over from the previous pass carry lower
// seqs, so a reader stops at the first frame that is not the next seq, that
// fails its checksum, or that does not fit.
const (
	journalHeaderSize = 4096
	frameHeaderSize   = 16

	// DefaultJournalSize is the journal's size when Options.JournalSize is
	// zero.
	DefaultJournalSize = 8 << 20
	// MinJournalSize is the smallest journal: its header and one frame of
	// the largest record.
	MinJournalSize = journalHeaderSize + frameHeaderSize + MaxRecordSize
)

// journalMagic opens the header, followed by the log id's length (uint16)
// and the log id, then crc32c of all of that.
const journalMagic = "tollgate audit journal 1\n"

// JournalSuffix is appended to the log file's path to name its journal.
const JournalSuffix = ".journal"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// journal is an open journal file. Only the writer goroutine uses it.
type journal struct {
	f      *os.File
	path   string
	size   int64 // file size: the frames end before it
	off    int64 // where the next group goes
	noSync bool
	buf    []byte
	// dirty is a range a failed write may have left partly written. It
	// is zeroed before anything else is written: a shorter group written
	// over it later must not leave valid-looking frames of the failed
	// one behind it.
	dirty [2]int64
}

// jrec is a record in the journal that the indexer has not stored yet.
type jrec struct {
	seq  uint64
	data []byte
	// leaf is the record's leaf hash when the producer computed it, nil
	// otherwise.
	leaf *[HashSize]byte
}

// journalHeader returns the header block for the log id.
func journalHeader(id string) []byte {
	h := make([]byte, 0, journalHeaderSize)
	h = append(h, journalMagic...)
	h = binary.BigEndian.AppendUint16(h, uint16(len(id)))
	h = append(h, id...)
	h = binary.BigEndian.AppendUint32(h, crc32.Checksum(h, crcTable))
	return h[:journalHeaderSize]
}

// createJournal creates a zero-filled journal of size bytes for the log id.
// It writes zeros rather than allocating, so that later writes overwrite
// allocated, written blocks and fdatasync has no metadata to flush. The
// file is made under a temporary name and renamed into place once flushed,
// so a crash leaves either no journal or a whole one.
func createJournal(path, id string, size int64) (err error) {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create journal: %w", err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			_ = os.Remove(tmp)
			err = fmt.Errorf("create journal %s: %w", path, err)
		}
	}()
	zero := make([]byte, 1<<20)
	copy(zero, journalHeader(id))
	for off := int64(0); off < size; off += int64(len(zero)) {
		n := min(int64(len(zero)), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		if off == 0 {
			clear(zero[:journalHeaderSize])
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		f = nil
		return err
	}
	f = nil
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// readJournal reads the journal at path for the log id: its size and the
// frames of the current pass with seq >= from, which must continue at from
// exactly. end is where the current pass ends. A missing file gives
// os.ErrNotExist.
func readJournal(path, id string, from uint64) (recs []jrec, size, end int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0, err
	}
	if err := checkJournalHeader(b, id); err != nil {
		return nil, 0, 0, fmt.Errorf("journal %s: %w", path, err)
	}
	recs, end, err = scanFrames(b, from)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("journal %s: %w", path, err)
	}
	return recs, int64(len(b)), end, nil
}

// checkJournalHeader checks that b starts with the header of the log id.
func checkJournalHeader(b []byte, id string) error {
	if len(b) < journalHeaderSize || !bytes.HasPrefix(b, []byte(journalMagic)) {
		return fmt.Errorf("not a tollgate audit journal: %w", ErrFormat)
	}
	p := b[len(journalMagic):]
	n := int(binary.BigEndian.Uint16(p))
	if len(journalMagic)+2+n+4 > journalHeaderSize {
		return fmt.Errorf("header: log id of %d bytes: %w", n, ErrCorrupt)
	}
	hl := len(journalMagic) + 2 + n
	if crc32.Checksum(b[:hl], crcTable) != binary.BigEndian.Uint32(b[hl:]) {
		return fmt.Errorf("header checksum: %w", ErrCorrupt)
	}
	if got := string(p[2 : 2+n]); got != id {
		return fmt.Errorf("belongs to log %q, not %q: %w", got, id, ErrCorrupt)
	}
	return nil
}

// scanFrames reads the frames of the current pass from a whole journal
// file and returns those with seq >= from and where the pass ends. The pass
// starts at the first frame and ends at the first frame that is empty,
// does not fit, fails its checksum or does not carry the next seq. Its
// records below from are stored in bbolt already; a pass that skips from
// lost records and fails with ErrCorrupt.
func scanFrames(b []byte, from uint64) ([]jrec, int64, error) {
	var recs []jrec
	off := int64(journalHeaderSize)
	var next uint64
	first := true
	for off+frameHeaderSize <= int64(len(b)) {
		h := b[off : off+frameHeaderSize]
		n := int64(binary.BigEndian.Uint32(h[0:4]))
		if n == 0 || n > MaxRecordSize || off+frameHeaderSize+n > int64(len(b)) {
			break
		}
		seq := binary.BigEndian.Uint64(h[8:16])
		if !first && seq != next {
			break
		}
		body := b[off+8 : off+frameHeaderSize+n]
		if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(h[4:8]) {
			break
		}
		if first && seq > from {
			return nil, 0, fmt.Errorf("first journaled record is %d, the log stores up to %d: records lost: %w", seq, from, ErrCorrupt)
		}
		first = false
		if seq >= from {
			recs = append(recs, jrec{seq: seq, data: append([]byte(nil), b[off+frameHeaderSize:off+frameHeaderSize+n]...)})
		}
		next = seq + 1
		off += frameHeaderSize + n
	}
	return recs, off, nil
}

// openJournal opens the journal for writing at off.
func openJournal(path string, size, off int64, noSync bool) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return &journal{f: f, path: path, size: size, off: off, noSync: noSync}, nil
}

// frameSize is the space a record of n bytes takes in the journal.
func frameSize(n int) int64 { return frameHeaderSize + int64(n) }

// fits reports whether n more bytes of frames fit after the current pass.
func (j *journal) fits(n int64) bool { return j.off+n <= j.size }

// rewind starts a new pass at the first frame. Only when every record of
// the pass is stored in bbolt and flushed.
func (j *journal) rewind() { j.off = journalHeaderSize }

// write appends recs as frames and flushes them: when it returns nil the
// records are durable. On failure the pass does not advance.
func (j *journal) write(recs []jrec) error {
	from, err := j.writeFrames(recs)
	if err != nil {
		return err
	}
	if err := j.sync(); err != nil {
		j.dirty = [2]int64{from, j.off}
		j.off = from
		return fmt.Errorf("flush journal: %w", err)
	}
	return nil
}

// writeFrames appends recs as frames without flushing them (one pwrite)
// and returns where they start: when it returns nil the records are in
// the page cache, so they survive the daemon's crash but not the
// machine's until a sync. On failure the pass does not advance.
func (j *journal) writeFrames(recs []jrec) (int64, error) {
	if j.dirty[1] > j.dirty[0] {
		// A failed write may have left frames behind: zero them first.
		if err := j.zero(j.dirty[0], j.dirty[1]); err != nil {
			return 0, fmt.Errorf("clear failed journal write: %w", err)
		}
		j.dirty = [2]int64{}
	}
	buf := j.buf[:0]
	for _, r := range recs {
		buf = appendFrame(buf, r)
	}
	if cap(buf) <= 4<<20 {
		j.buf = buf
	}
	if !j.fits(int64(len(buf))) {
		return 0, fmt.Errorf("journal write of %d bytes at %d beyond its size %d: %w", len(buf), j.off, j.size, ErrCorrupt)
	}
	if _, err := j.f.WriteAt(buf, j.off); err != nil {
		j.dirty = [2]int64{j.off, j.off + int64(len(buf))}
		return 0, fmt.Errorf("write journal: %w", err)
	}
	from := j.off
	j.off += int64(len(buf))
	return from, nil
}

// appendFrame appends r's frame to b.
func appendFrame(b []byte, r jrec) []byte {
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], r.seq)
	crc := crc32.Update(crc32.Update(0, crcTable, seq[:]), crcTable, r.data)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.data)))
	b = binary.BigEndian.AppendUint32(b, crc)
	b = append(b, seq[:]...)
	return append(b, r.data...)
}

// zero overwrites [from, to) with zeros and flushes.
func (j *journal) zero(from, to int64) error {
	z := make([]byte, min(to-from, 1<<20))
	for off := from; off < to; off += int64(len(z)) {
		n := min(int64(len(z)), to-off)
		if _, err := j.f.WriteAt(z[:n], off); err != nil {
			return err
		}
	}
	return j.sync()
}

func (j *journal) sync() error {
	if j.noSync {
		return nil
	}
	return unix.Fdatasync(int(j.f.Fd()))
}

func (j *journal) close() error { return j.f.Close() }

// loadJournal opens or creates the journal of a read-write log whose bbolt
// file stores size records: it returns the journaled records that bbolt
// does not have yet and the journal positioned after them.
func loadJournal(path, id string, size uint64, want int64, noSync bool) (*journal, []jrec, error) {
	recs, jsize, end, err := readJournal(path, id, size)
	if errors.Is(err, os.ErrNotExist) {
		if err := createJournal(path, id, want); err != nil {
			return nil, nil, err
		}
		j, err := openJournal(path, want, journalHeaderSize, noSync)
		return j, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	if jsize < MinJournalSize {
		return nil, nil, fmt.Errorf("journal %s: %d bytes, want at least %d: %w", path, jsize, MinJournalSize, ErrCorrupt)
	}
	j, err := openJournal(path, jsize, end, noSync)
	return j, recs, err
}

// readOnlyJournal returns the journaled records a read-only log of size
// records does not have in bbolt; none if there is no journal.
func readOnlyJournal(path, id string, size uint64) ([]jrec, error) {
	recs, _, _, err := readJournal(path, id, size)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return recs, err
}

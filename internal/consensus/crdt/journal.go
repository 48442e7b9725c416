package crdt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

const (
	// journalSegmentSize is the size at which the journal starts a new
	// file, so that resolved operations go away with whole files.
	journalSegmentSize = 4 << 20
	// journalSyncInterval spaces the background fsyncs of the journal when
	// acknowledgements do not wait for them: a power failure can lose the
	// acknowledgements of about this long, a crash of the process none.
	journalSyncInterval = 10 * time.Millisecond
	// journalSuffix ends the name of every segment file.
	journalSuffix = ".journal"
	// recordHeader is a record's payload length and CRC-32C, both uint32.
	recordHeader = 8
	// maxRecord bounds a record's payload when reading: a length beyond it
	// is corruption, not a pin.
	maxRecord = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// op is one LogPin or LogUnpin.
type op struct {
	seq   uint64
	pin   bool   // false: unpin
	key   string // CRDT key: "/" + CID
	value []byte // pin encoding; for an unpin, encodeUnpin's (empty in older journals)
}

// journal is the write-ahead log of this peer's operations. Every LogPin
// and LogUnpin is in it before it is acknowledged: pebble keeps writes that
// are not synced in the process's memory, so the journal is what brings
// back, at the next start, an acknowledged operation whose CRDT commit died
// with the process.
//
// It is a folder of segment files, each named after the sequence number of
// its first record, holding records of: payload length and CRC-32C
// (Castagnoli) of the payload, both uint32 little endian, then the payload:
// sequence number (uvarint), kind ('p' pin, 'u' unpin), key length
// (uvarint), key, value. Sequence numbers grow across segments. A record
// that is cut short or fails its checksum ends its segment when read: it
// was never acknowledged, as an append returns only after its whole write.
//
// With syncAcks, append returns once its records are fsynced (concurrent
// appends share fsyncs); without, once they are written to the file, and a
// background loop fsyncs the journal every journalSyncInterval while it
// grows. A full segment is fsynced before the next one starts.
//
// Methods are safe for concurrent use; close must be the last call.
type journal struct {
	dir      string
	syncAcks bool
	log      zerolog.Logger

	mu     sync.Mutex
	f      *os.File // current segment; nil until the next append
	fPath  string
	fSize  int64
	fLast  uint64    // sequence number of f's last record
	full   []segment // earlier segments, oldest first
	seq    uint64    // last sequence number given
	gen    uint64    // appends written so far
	buf    []byte
	closed bool

	// syncMu serialises fsyncs; synced is the generation they cover.
	syncMu sync.Mutex
	synced uint64

	grew chan struct{} // wakes the background fsync loop
	done chan struct{}
	wg   sync.WaitGroup
}

type segment struct {
	path string
	last uint64 // sequence number of its last record
}

// openJournal opens the journal in dir, creating the folder if needed, and
// reads it: replay (if not nil) gets the operations numbered above
// resolved, in order, groupCommitSize at a time, so that memory does not
// grow with the journal. Numbering continues after the greater of resolved
// and the last record.
func openJournal(dir string, syncAcks bool, resolved uint64, log zerolog.Logger, replay func([]op) error) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &journal{dir: dir, syncAcks: syncAcks, log: log, seq: resolved,
		grew: make(chan struct{}, 1), done: make(chan struct{})}
	if err := j.load(resolved, replay); err != nil {
		return nil, err
	}
	if !syncAcks {
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			j.syncLoop()
		}()
	}
	return j, nil
}

// segments lists the segment files in name (and so sequence) order.
func (j *journal) segments() ([]string, error) {
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), journalSuffix) && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

func (j *journal) load(resolved uint64, replay func([]op) error) error {
	names, err := j.segments()
	if err != nil {
		return err
	}
	var pending []op
	flush := func() error {
		if len(pending) == 0 || replay == nil {
			return nil
		}
		err := replay(pending)
		pending = pending[:0]
		return err
	}
	for _, name := range names {
		path := filepath.Join(j.dir, name)
		last, err := j.readSegment(path, func(o op) error {
			if o.seq <= resolved {
				return nil
			}
			pending = append(pending, o)
			if len(pending) < groupCommitSize {
				return nil
			}
			return flush()
		})
		if err != nil {
			return err
		}
		if last == 0 {
			// Its first write never completed: nothing in it was
			// acknowledged, and its name could be given again.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			continue
		}
		j.seq = max(j.seq, last)
		j.full = append(j.full, segment{path: path, last: last})
	}
	return flush()
}

// readSegment calls fn for every intact record of the segment at path and
// returns the last sequence number read, or fn's first error.
func (j *journal) readSegment(path string, fn func(op) error) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var (
		last   uint64
		offset int64
		header [recordHeader]byte
	)
	for {
		_, err := io.ReadFull(r, header[:])
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		var o op
		if err == nil {
			o, err = readRecord(r, header)
		}
		if err == nil && o.seq <= last {
			err = fmt.Errorf("sequence number %d after %d", o.seq, last)
		}
		if err != nil {
			rest := int64(-1)
			if st, serr := f.Stat(); serr == nil {
				rest = st.Size() - offset
			}
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				// Never acknowledged: its write did not complete.
				j.log.Warn().Str("segment", path).Int64("offset", offset).Int64("bytes", rest).Err(err).
					Msg("journal: segment ends with an incomplete record; ignoring the rest")
				return last, nil
			}
			// A whole record that does not check out is damage, not a
			// write cut short: what follows it is lost, say so loudly.
			j.log.Error().Str("segment", path).Int64("offset", offset).Int64("bytes_skipped", rest).Uint64("last_good_seq", last).Err(err).
				Msg("journal: damaged record; the rest of the segment is skipped and the operations it held are not committed")
			return last, nil
		}
		if err := fn(o); err != nil {
			return last, err
		}
		last = o.seq
		offset += recordHeader + int64(binary.LittleEndian.Uint32(header[:4]))
	}
}

// readRecord reads the payload announced by header and decodes it.
func readRecord(r io.Reader, header [recordHeader]byte) (op, error) {
	n := binary.LittleEndian.Uint32(header[:4])
	if n > maxRecord {
		return op{}, fmt.Errorf("record of %d bytes", n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return op{}, fmt.Errorf("record cut short: %w", err)
	}
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(header[4:]) {
		return op{}, errors.New("checksum mismatch")
	}
	return decodeRecord(payload)
}

func decodeRecord(p []byte) (op, error) {
	seq, w := binary.Uvarint(p)
	if w <= 0 || len(p) < w+1 {
		return op{}, errors.New("malformed record")
	}
	kind := p[w]
	p = p[w+1:]
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) || (kind != markPin && kind != markUnpin) {
		return op{}, errors.New("malformed record")
	}
	p = p[w:]
	return op{seq: seq, pin: kind == markPin, key: string(p[:n]), value: p[n:]}, nil
}

// appendRecord appends o's record to buf.
func appendRecord(buf []byte, o *op) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, recordHeader)...)
	buf = binary.AppendUvarint(buf, o.seq)
	buf = append(buf, kindByte(o.pin))
	buf = binary.AppendUvarint(buf, uint64(len(o.key)))
	buf = append(buf, o.key...)
	buf = append(buf, o.value...)
	payload := buf[start+recordHeader:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, castagnoli))
	return buf
}

// append numbers ops, writes them with one write, calls then (if not nil)
// while no other append can run, so that whatever then records follows
// journal order, and returns once the records are as durable as the
// journal's mode requires.
func (j *journal) append(ops []op, then func()) error {
	if len(ops) == 0 {
		return nil
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrShutdown
	}
	j.buf = j.buf[:0]
	for i := range ops {
		j.seq++
		ops[i].seq = j.seq
		j.buf = appendRecord(j.buf, &ops[i])
	}
	err := j.writeLocked(ops[len(ops)-1].seq)
	if err == nil && then != nil {
		then()
	}
	j.gen++
	gen := j.gen
	if len(j.buf) > 1<<20 {
		j.buf = nil // do not keep a rare large buffer
	}
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if j.syncAcks {
		return j.syncTo(gen)
	}
	select {
	case j.grew <- struct{}{}:
	default:
	}
	return nil
}

// writeLocked writes j.buf to the current segment, starting one if needed,
// and moves to a new segment when it is full.
func (j *journal) writeLocked(last uint64) error {
	if j.f == nil {
		first, _ := binary.Uvarint(j.buf[recordHeader:])
		path := filepath.Join(j.dir, fmt.Sprintf("%020d%s", first, journalSuffix))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		// The new name must survive a power failure as well as its data.
		if err := syncDir(j.dir); err != nil {
			_ = f.Close()
			return err
		}
		j.f, j.fPath, j.fSize = f, path, 0
	}
	n, err := j.f.Write(j.buf)
	j.fSize += int64(n)
	if err != nil {
		// A partial record ends the segment when read; start anew.
		if rerr := j.retireLocked(); rerr != nil {
			j.log.Error().Err(rerr).Msg("journal: retire a segment after a failed write")
		}
		return err
	}
	j.fLast = last
	if j.fSize >= journalSegmentSize {
		if err := j.retireLocked(); err != nil {
			// The records were written: only their fsync is in doubt.
			j.log.Error().Err(err).Msg("journal: retire a full segment")
		}
	}
	return nil
}

// retireLocked fsyncs and closes the current segment and lists it as full.
func (j *journal) retireLocked() error {
	err := errors.Join(j.f.Sync(), j.f.Close())
	if j.fSize > 0 {
		j.full = append(j.full, segment{path: j.fPath, last: j.fLast})
	}
	j.f = nil
	if err != nil {
		return fmt.Errorf("segment %s: %w", j.fPath, err)
	}
	return nil
}

// syncTo returns once the writes of generation gen are fsynced.
func (j *journal) syncTo(gen uint64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if j.synced >= gen {
		return nil
	}
	j.mu.Lock()
	f, upTo := j.f, j.gen
	j.mu.Unlock()
	// Earlier segments were fsynced when they were retired; a segment
	// closed meanwhile was retired or released, so it needs nothing more.
	if f != nil {
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("journal: fsync: %w", err)
		}
	}
	j.synced = upTo
	return nil
}

// syncLoop fsyncs the journal while it grows, at most every
// journalSyncInterval.
func (j *journal) syncLoop() {
	for {
		select {
		case <-j.done:
			return
		case <-j.grew:
		}
		start := time.Now()
		j.mu.Lock()
		gen := j.gen
		j.mu.Unlock()
		if err := j.syncTo(gen); err != nil {
			j.log.Error().Err(err).Msg("journal: background fsync")
		}
		t := time.NewTimer(journalSyncInterval - time.Since(start))
		select {
		case <-j.done:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// release deletes the segments whose operations are all numbered upTo or
// below: the caller made their outcome durable elsewhere.
func (j *journal) release(upTo uint64) error {
	j.mu.Lock()
	var drop []string
	keep := j.full[:0]
	for _, s := range j.full {
		if s.last <= upTo {
			drop = append(drop, s.path)
		} else {
			keep = append(keep, s)
		}
	}
	clear(j.full[len(keep):])
	j.full = keep
	if j.f != nil && j.fLast <= upTo {
		if err := j.f.Close(); err != nil {
			j.log.Error().Err(err).Str("segment", j.fPath).Msg("journal: close a released segment")
		}
		drop = append(drop, j.fPath)
		j.f = nil
	}
	j.mu.Unlock()
	var errs []error
	for _, p := range drop {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: release: %w", err)
	}
	return nil
}

// close stops the background loop and fsyncs and closes the current
// segment. Appends fail with ErrShutdown afterwards.
func (j *journal) close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	close(j.done)
	j.wg.Wait()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	if err := j.retireLocked(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// removeJournal deletes the journal in dir.
func removeJournal(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func kindByte(pin bool) byte {
	if pin {
		return markPin
	}
	return markUnpin
}

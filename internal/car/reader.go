package car

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"slices"

	"github.com/ipfs/boxo/verifcid"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	mhreg "github.com/multiformats/go-multihash/core"
	// Register blake2, blake3, sha3 and murmur3 so that every hash function
	// go-multihash knows can be verified (the allow-list still decides which
	// are accepted).
	_ "github.com/multiformats/go-multihash/register/all"
)

const (
	// DefaultMaxBlockSize is the default cap on a block's data: twice
	// kubo's own 2 MiB block limit, so anything kubo can import passes.
	DefaultMaxBlockSize = 4 << 20
	// DefaultMaxHeaderSize is the default cap on the CARv1 header. A
	// one-root header is about 60 bytes; the cap only stops hostile input.
	DefaultMaxHeaderSize = 1 << 20
	// MaxCIDSize is the longest CID accepted in a section. With the default
	// allow-list digests are at most 128 bytes, so real CIDs are far
	// shorter; the section length limit is MaxBlockSize + MaxCIDSize.
	MaxCIDSize = 512

	// readBufSize is the bufio size in front of the input: large enough
	// that varint and CID reads rarely reach the underlying reader, while
	// block data larger than it is read straight into the block buffer.
	readBufSize = 64 << 10
	// minBlockBuf is the first allocation of the block buffer.
	minBlockBuf = 64 << 10
	// maxMaxBlockSize keeps MaxBlockSize + MaxCIDSize far from overflow.
	maxMaxBlockSize = 1 << 30
)

// Options configure NewReader and Verify. The zero value gives the
// defaults.
type Options struct {
	// MaxBlockSize caps the data of a single block, in bytes (default
	// DefaultMaxBlockSize, at most 1 GiB). A longer block is an ErrTooLarge
	// error. It bounds the Reader's memory.
	MaxBlockSize int
	// MaxHeaderSize caps the CARv1 header, in bytes (default
	// DefaultMaxHeaderSize, at most 1 GiB).
	MaxHeaderSize int
	// Allowlist decides which hash functions and digest lengths are
	// accepted (default verifcid.DefaultAllowlist, kubo's policy). Blocks
	// whose CIDs it refuses are ErrUnsupportedHash errors.
	Allowlist verifcid.Allowlist
	// ZeroLengthSectionAsEOF ends the CAR at a section of length zero
	// instead of failing with ErrMalformed. Some writers pad CARv1 files
	// with zeros; CARv2 payloads never need it because their size is known.
	ZeroLengthSectionAsEOF bool
	// AllowMissingRoot lets Verify succeed when no block of the CAR has the
	// root's multihash. Only for callers that know the root is already
	// available elsewhere (e.g. a CAR completing a DAG kubo mostly has);
	// by default a missing root is ErrRootMissing, because a root that is
	// not there cannot be pinned from the CAR.
	AllowMissingRoot bool
	// Unverified skips hashing each block's data (the allow-list still
	// applies), for a reader whose blocks all go to a consumer that
	// hashes them itself, such as kubo's dag/import: the one check is
	// enough, and costs a full pass over the data.
	Unverified bool
}

func (o Options) withDefaults() Options {
	if o.MaxBlockSize <= 0 {
		o.MaxBlockSize = DefaultMaxBlockSize
	}
	o.MaxBlockSize = min(o.MaxBlockSize, maxMaxBlockSize)
	if o.MaxHeaderSize <= 0 {
		o.MaxHeaderSize = DefaultMaxHeaderSize
	}
	o.MaxHeaderSize = min(o.MaxHeaderSize, maxMaxBlockSize)
	if o.Allowlist == nil {
		o.Allowlist = verifcid.DefaultAllowlist
	}
	return o
}

// Reader reads and verifies the blocks of a CARv1 or CARv2 stream one at a
// time. It holds one block buffer, reused from block to block, so its
// memory is bounded by Options.MaxBlockSize whatever the size of the CAR.
//
// A Reader is not safe for concurrent use. After Next or NextRaw returned
// an error (including io.EOF) every further call returns the same error.
type Reader struct {
	br   *bufio.Reader
	opts Options

	off     int64 // bytes consumed from the input
	end     int64 // CARv2: offset where the inner payload ends; else -1
	version int
	roots   []cid.Cid

	index     int64  // index of the next block
	buf       []byte // current section (CID bytes + data), reused
	lastMH    []byte // multihash of the last block read, aliases buf
	lastCodec uint64 // codec of the last block read

	hashers map[hasherKey]hash.Hash
	sum     []byte // scratch for digests
	err     error  // sticky
}

type hasherKey struct {
	code uint64
	size int
}

// maxCachedHashers bounds the hasher cache: a CAR mixing more hash
// functions than this is odd, and gets fresh hashers rather than growth.
const maxCachedHashers = 8

// NewReader reads the CAR header from r and returns a Reader positioned at
// the first block. For a CARv2 it reads the pragma and the CARv2 header,
// skips to the data offset and reads the inner CARv1 header; the blocks end
// where the header says the payload ends. The index and anything after the
// payload are never parsed nor waited for (at most a buffer's worth of them
// is read ahead), so a CARv2 followed by more data still ends cleanly.
//
// NewReader accepts any number of roots, including none; callers that need
// exactly one use SingleRoot (Verify does).
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	rd := &Reader{
		br:   bufio.NewReaderSize(r, readBufSize),
		opts: opts.withDefaults(),
		end:  -1,
	}
	h, err := rd.readHeader("header")
	if err != nil {
		return nil, err
	}
	switch h.version {
	case 1:
		if !h.hasRoots {
			return nil, rd.headerErr(ErrMalformed, 0, `CARv1 header has no "roots" field`)
		}
		rd.version, rd.roots = 1, h.roots
		return rd, nil
	case 2:
		if h.hasRoots {
			return nil, rd.headerErr(ErrMalformed, 0, `CARv2 pragma has a "roots" field`)
		}
		rd.version = 2
		if err := rd.readV2(); err != nil {
			return nil, err
		}
		return rd, nil
	default:
		return nil, &Error{
			Kind: ErrVersion, Offset: 0, Block: -1,
			msg: fmt.Sprintf("car: unsupported CAR version %d (this reader handles versions 1 and 2)", h.version),
		}
	}
}

// readV2 reads the fixed CARv2 header after the pragma, skips to the inner
// payload and reads its CARv1 header.
func (r *Reader) readV2() error {
	start := r.off
	var hb [v2HeaderLen]byte
	n, err := io.ReadFull(r.br, hb[:])
	r.off += int64(n)
	if err != nil {
		return r.readErr(err, -1, fmt.Sprintf("CARv2 header: want %d bytes, got %d", v2HeaderLen, n))
	}
	dataOffset := binary.LittleEndian.Uint64(hb[16:24])
	dataSize := binary.LittleEndian.Uint64(hb[24:32])
	switch {
	case dataOffset < uint64(r.off):
		return r.headerErr(ErrMalformed, start, fmt.Sprintf("CARv2 data offset %d points inside the CARv2 header, which ends at %d", dataOffset, r.off))
	case dataOffset > math.MaxInt64/2:
		return r.headerErr(ErrMalformed, start, fmt.Sprintf("CARv2 data offset %d is outside the file", dataOffset))
	case dataSize == 0 || dataSize > math.MaxInt64/2:
		return r.headerErr(ErrMalformed, start, fmt.Sprintf("CARv2 data size %d is invalid", dataSize))
	}
	// Skip the padding between the header and the payload. Discard goes
	// through the bufio buffer: no allocation however large the gap.
	for gap := int64(dataOffset) - r.off; gap > 0; gap = int64(dataOffset) - r.off {
		n, err := r.br.Discard(int(min(gap, 1<<30)))
		r.off += int64(n)
		if err != nil {
			return r.readErr(err, -1, fmt.Sprintf("CARv2 data payload announced at offset %d", dataOffset))
		}
	}
	r.end = int64(dataOffset + dataSize)
	h, err := r.readHeader("CARv2 inner header")
	if err != nil {
		return err
	}
	if h.version != 1 || !h.hasRoots {
		return r.headerErr(ErrMalformed, int64(dataOffset), fmt.Sprintf("CARv2 payload is not a CARv1 (version %d)", h.version))
	}
	r.roots = h.roots
	return nil
}

// readHeader reads a varint-prefixed header block and decodes it.
func (r *Reader) readHeader(what string) (header, error) {
	start := r.off
	hint := ""
	if start == 0 {
		hint = "; is this a CAR file?"
	}
	l, _, err := r.readUvarint()
	switch {
	case err == io.EOF && start == 0:
		return header{}, &Error{Kind: ErrTruncated, Offset: 0, Block: -1, msg: "car: truncated at offset 0 (empty input: no CAR header)"}
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return header{}, r.readErr(io.ErrUnexpectedEOF, -1, what+": length varint cut short")
	case errors.Is(err, errBadVarint):
		return header{}, r.headerErr(ErrMalformed, start, what+" length: "+err.Error())
	case err != nil:
		return header{}, r.readErr(err, -1, what)
	case l == 0:
		return header{}, r.headerErr(ErrMalformed, start, what+" has length 0")
	case l > uint64(r.opts.MaxHeaderSize):
		return header{}, r.headerErr(ErrTooLarge, start, fmt.Sprintf("%s length %d exceeds the limit of %d bytes", what, l, r.opts.MaxHeaderSize))
	}
	if n, err := r.fill(int(l)); err != nil {
		return header{}, r.readErr(err, -1, fmt.Sprintf("%s: want %d bytes, got %d%s", what, l, n, hint))
	}
	h, err := decodeHeader(r.buf)
	if err != nil {
		detail := err.Error()
		if start != 0 {
			detail = what + ": " + detail
		}
		return header{}, r.headerErr(ErrMalformed, start, detail)
	}
	return h, nil
}

// Version returns the CAR version of the input: 1 or 2.
func (r *Reader) Version() int { return r.version }

// Roots returns the roots named by the (inner CARv1) header. The slice is a
// copy.
func (r *Reader) Roots() []cid.Cid { return slices.Clone(r.roots) }

// Offset returns the number of input bytes consumed so far: after a
// successful Next, the offset of the next section.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next block, verified against its CID, or io.EOF after
// the last one. The block's data is a fresh copy the caller may keep.
func (r *Reader) Next() (blocks.Block, error) {
	c, data, err := r.NextRaw()
	if err != nil {
		return nil, err
	}
	b, err := blocks.NewBlockWithCid(bytes.Clone(data), c)
	if err != nil {
		return nil, err // only in go-ipfs-util debug mode, which re-hashes
	}
	return b, nil
}

// NextRaw is Next without the copy: it returns the next block's CID and
// data, verified, or io.EOF after the last block. data aliases the Reader's
// buffer and is only valid until the next call; it must not be modified.
func (r *Reader) NextRaw() (cid.Cid, []byte, error) {
	if r.err != nil {
		return cid.Undef, nil, r.err
	}
	c, data, err := r.readSection()
	if err != nil {
		r.err = err
		r.lastMH = nil
		return cid.Undef, nil, err
	}
	r.index++
	return c, data, nil
}

func (r *Reader) readSection() (cid.Cid, []byte, error) {
	start, idx := r.off, r.index
	l, _, err := r.readUvarint()
	switch {
	case err == io.EOF && r.end >= 0 && r.off < r.end:
		return cid.Undef, nil, r.readErr(err, idx, fmt.Sprintf("block %d: the CARv2 data payload should run to offset %d", idx, r.end))
	case err == io.EOF:
		return cid.Undef, nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return cid.Undef, nil, r.readErr(err, idx, fmt.Sprintf("block %d: section length varint cut short", idx))
	case errors.Is(err, errBadVarint):
		return cid.Undef, nil, r.blockErr(ErrMalformed, start, idx, cid.Undef, nil, "section length: "+err.Error())
	case err != nil:
		return cid.Undef, nil, r.readErr(err, idx, fmt.Sprintf("block %d", idx))
	case l == 0:
		if r.opts.ZeroLengthSectionAsEOF {
			return cid.Undef, nil, io.EOF
		}
		return cid.Undef, nil, r.blockErr(ErrMalformed, start, idx, cid.Undef, nil, "zero-length section")
	case l > uint64(r.opts.MaxBlockSize+MaxCIDSize):
		return cid.Undef, nil, r.blockErr(ErrTooLarge, start, idx, cid.Undef, nil,
			fmt.Sprintf("section length %d exceeds the limit of %d bytes (block size limit %d + CID)", l, r.opts.MaxBlockSize+MaxCIDSize, r.opts.MaxBlockSize))
	}
	if n, err := r.fill(int(l)); err != nil {
		return cid.Undef, nil, r.readErr(err, idx, fmt.Sprintf("block %d: want %d bytes, got %d", idx, l, n))
	}
	n, c, err := cid.CidFromBytes(r.buf)
	if err != nil {
		return cid.Undef, nil, r.blockErr(ErrMalformed, start, idx, cid.Undef, err, "invalid CID: "+err.Error())
	}
	if n > MaxCIDSize {
		return cid.Undef, nil, r.blockErr(ErrTooLarge, start, idx, c, nil, fmt.Sprintf("CID of %d bytes exceeds the limit of %d", n, MaxCIDSize))
	}
	data := r.buf[n:]
	if len(data) > r.opts.MaxBlockSize {
		return cid.Undef, nil, r.blockErr(ErrTooLarge, start, idx, c, nil,
			fmt.Sprintf("block of %d bytes exceeds the limit of %d", len(data), r.opts.MaxBlockSize))
	}
	codec, code, digest, mhStart, ok := splitCID(r.buf[:n])
	if !ok {
		// CidFromBytes accepted it, so this cannot happen; refuse rather
		// than skip verification if it ever does.
		return cid.Undef, nil, r.blockErr(ErrMalformed, start, idx, c, nil, "cannot locate the CID's multihash")
	}
	if detail, kind := r.verify(code, digest, data); kind != nil {
		return cid.Undef, nil, r.blockErr(kind, start, idx, c, nil, detail)
	}
	r.lastCodec, r.lastMH = codec, r.buf[mhStart:n]
	return c, data, nil
}

// splitCID returns the codec, the hash function code, the digest and the
// offset of the multihash of a CID given as bytes (CIDv0: a bare sha2-256
// multihash, codec dag-pb; CIDv1: version, codec, multihash).
func splitCID(b []byte) (codec, code uint64, digest []byte, mhStart int, ok bool) {
	if len(b) == 34 && b[0] == mh.SHA2_256 && b[1] == 32 {
		return cid.DagProtobuf, mh.SHA2_256, b[2:], 0, true
	}
	_, n := uvarint(b) // version, checked by CidFromBytes
	if n <= 0 {
		return 0, 0, nil, 0, false
	}
	i := n
	if codec, n = uvarint(b[i:]); n <= 0 {
		return 0, 0, nil, 0, false
	}
	i += n
	mhStart = i
	if code, n = uvarint(b[i:]); n <= 0 {
		return 0, 0, nil, 0, false
	}
	i += n
	l, n := uvarint(b[i:])
	if n <= 0 || l != uint64(len(b)-i-n) {
		return 0, 0, nil, 0, false
	}
	return codec, code, b[i+n:], mhStart, true
}

// verify checks data against a CID's hash function and digest. It returns
// a description and the error kind, or a nil kind when the data matches.
func (r *Reader) verify(code uint64, digest, data []byte) (detail string, kind error) {
	al := r.opts.Allowlist
	name := hashName(code)
	if !al.IsAllowed(code) {
		return fmt.Sprintf("hash function %s is not allowed", name), ErrUnsupportedHash
	}
	if lo := al.MinDigestSize(code); len(digest) < lo {
		return fmt.Sprintf("%s digest of %d bytes is shorter than the minimum of %d", name, len(digest), lo), ErrUnsupportedHash
	}
	if hi := al.MaxDigestSize(code); len(digest) > hi {
		return fmt.Sprintf("%s digest of %d bytes is longer than the maximum of %d", name, len(digest), hi), ErrUnsupportedHash
	}
	if r.opts.Unverified {
		return "", nil
	}
	if code == mh.IDENTITY {
		// The "digest" is the data itself.
		if !bytes.Equal(digest, data) {
			return "hash mismatch (identity CID does not embed this data)", ErrHashMismatch
		}
		return "", nil
	}
	h, err := r.hasher(code, len(digest))
	if err != nil {
		return fmt.Sprintf("cannot compute %s with a %d-byte digest: %v", name, len(digest), err), ErrUnsupportedHash
	}
	h.Reset()
	h.Write(data) // hash.Hash.Write never fails
	r.sum = h.Sum(r.sum[:0])
	if len(r.sum) < len(digest) {
		return fmt.Sprintf("%s produces %d bytes, the CID has a %d-byte digest", name, len(r.sum), len(digest)), ErrUnsupportedHash
	}
	// A digest shorter than the function's output is a truncated hash, as
	// go-multihash defines it: compare the prefix.
	if !bytes.Equal(r.sum[:len(digest)], digest) {
		return "hash mismatch", ErrHashMismatch
	}
	return "", nil
}

// hasher returns a reusable hasher for code producing at least size bytes.
// Hashers are cached because building one (and its internal state) per
// block would cost an allocation per block for nothing.
func (r *Reader) hasher(code uint64, size int) (hash.Hash, error) {
	k := hasherKey{code, size}
	if h, ok := r.hashers[k]; ok {
		return h, nil
	}
	h, err := mhreg.GetVariableHasher(code, size)
	if err != nil {
		return nil, err
	}
	if r.hashers == nil {
		r.hashers = make(map[hasherKey]hash.Hash, 1)
	}
	if len(r.hashers) < maxCachedHashers {
		r.hashers[k] = h
	}
	return h, nil
}

func hashName(code uint64) string {
	if name, ok := mh.Codes[code]; ok {
		return name
	}
	return fmt.Sprintf("multihash 0x%x", code)
}

var errBadVarint = errors.New("invalid varint (over 9 bytes or not minimally encoded)")

// readByte reads one byte, treating the end of a CARv2 payload as the end
// of input.
func (r *Reader) readByte() (byte, error) {
	if r.end >= 0 && r.off >= r.end {
		return 0, io.EOF
	}
	c, err := r.br.ReadByte()
	if err != nil {
		return 0, err
	}
	r.off++
	return c, nil
}

// readUvarint reads a multiformats varint. It returns io.EOF only when the
// input ends before its first byte, io.ErrUnexpectedEOF when it ends inside
// it, errBadVarint for an invalid encoding.
func (r *Reader) readUvarint() (v uint64, n int, err error) {
	for i := 0; ; i++ {
		c, err := r.readByte()
		if err != nil {
			if err == io.EOF && i == 0 {
				return 0, 0, io.EOF
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return 0, i, io.ErrUnexpectedEOF
			}
			return 0, i, err
		}
		if i == maxVarintLen-1 && c >= 0x80 {
			return 0, i + 1, errBadVarint
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, i + 1, errBadVarint
			}
			return v, i + 1, nil
		}
	}
}

// fill reads exactly n bytes into r.buf. The buffer grows as data actually
// arrives, so a hostile length prefix costs at most about twice the bytes
// really present, not n. It returns the number of bytes read and, when the
// input (or the CARv2 payload) ends first, io.ErrUnexpectedEOF.
func (r *Reader) fill(n int) (int, error) {
	avail := n
	if r.end >= 0 && int64(n) > r.end-r.off {
		avail = int(r.end - r.off)
	}
	buf := r.buf[:0]
	for len(buf) < avail {
		if len(buf) == cap(buf) {
			want := min(max(2*cap(buf), minBlockBuf), n)
			buf = slices.Grow(buf, want-len(buf))
		}
		k, err := io.ReadFull(r.br, buf[len(buf):min(avail, cap(buf))])
		buf = buf[:len(buf)+k]
		r.off += int64(k)
		if err != nil {
			r.buf = buf
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return len(buf), err
		}
	}
	r.buf = buf
	if avail < n {
		return avail, io.ErrUnexpectedEOF
	}
	return n, nil
}

// readErr turns an error of the underlying reader into an *Error: an early
// end of input becomes ErrTruncated at the current offset, anything else an
// I/O error. what says what was being read.
func (r *Reader) readErr(err error, block int64, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		if r.end >= 0 && r.off >= r.end {
			what += fmt.Sprintf("; the CARv2 data payload ends at offset %d", r.end)
		}
		return &Error{Kind: ErrTruncated, Offset: r.off, Block: block,
			msg: fmt.Sprintf("car: truncated at offset %d (%s)", r.off, what)}
	}
	return &Error{Offset: r.off, Block: block, Err: err,
		msg: fmt.Sprintf("car: reading at offset %d (%s): %v", r.off, what, err)}
}

func (r *Reader) headerErr(kind error, off int64, what string) error {
	hint := ""
	if off == 0 && r.version == 0 {
		hint = " (is this a CAR file?)"
	}
	return &Error{Kind: kind, Offset: off, Block: -1,
		msg: fmt.Sprintf("car: %s at offset %d: %s%s", kindWord(kind), off, what, hint)}
}

func (r *Reader) blockErr(kind error, off, idx int64, c cid.Cid, cause error, what string) error {
	msg := fmt.Sprintf("car: block %d at offset %d: ", idx, off)
	if c.Defined() {
		msg += c.String() + ": "
	}
	return &Error{Kind: kind, Offset: off, Block: idx, Cid: c, Err: cause, msg: msg + what}
}

func kindWord(kind error) string {
	switch kind {
	case ErrTooLarge:
		return "header too large"
	case ErrMalformed:
		return "malformed header"
	default:
		return "bad header"
	}
}

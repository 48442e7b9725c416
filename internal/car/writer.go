package car

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// writeBufSize coalesces the small writes (section prefixes, small blocks)
// into larger ones: the destination is typically an io.Pipe feeding an HTTP
// request, where every Write is a goroutine hand-off. Blocks larger than
// the buffer go through with at most one extra copy of its first part.
const writeBufSize = 64 << 10

// Writer writes a CARv1 stream: the header naming the roots, then one
// section per Put. It does not hash blocks: callers write blocks they have
// verified or produced themselves (Verify writes blocks its Reader has
// verified).
//
// Output is buffered: call Flush after the last Put. A Writer is not safe
// for concurrent use. After a write error every further call returns that
// error.
type Writer struct {
	bw      *bufio.Writer
	n       int64
	scratch []byte
	err     error
}

// NewWriter starts a CARv1 stream on w with the given roots. The header is
// buffered, not yet written. Roots must be defined CIDs; the CARv1 format
// allows any number of them, including none.
func NewWriter(w io.Writer, roots []cid.Cid) (*Writer, error) {
	for i, c := range roots {
		if !c.Defined() {
			return nil, fmt.Errorf("car: root %d is an undefined CID", i)
		}
	}
	hdr := appendHeader(nil, roots)
	wr := &Writer{bw: bufio.NewWriterSize(w, writeBufSize), scratch: make([]byte, 0, maxVarintLen+MaxCIDSize)}
	wr.scratch = appendUvarint(wr.scratch, uint64(len(hdr)))
	if err := wr.write(wr.scratch); err != nil {
		return nil, wr.fail(err, "header")
	}
	if err := wr.write(hdr); err != nil {
		return nil, wr.fail(err, "header")
	}
	return wr, nil
}

// Put writes a block as one section.
func (w *Writer) Put(b blocks.Block) error {
	return w.PutRaw(b.Cid(), b.RawData())
}

// PutRaw writes one section from a CID and its data. The data is not
// retained after PutRaw returns, so it may alias a buffer the caller
// reuses (such as Reader.NextRaw's).
func (w *Writer) PutRaw(c cid.Cid, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if !c.Defined() {
		return errors.New("car: Put with an undefined CID")
	}
	w.scratch = appendUvarint(w.scratch[:0], uint64(c.ByteLen()+len(data)))
	w.scratch = append(w.scratch, c.KeyString()...)
	if err := w.write(w.scratch); err != nil {
		return w.fail(err, "section of "+c.String())
	}
	if err := w.write(data); err != nil {
		return w.fail(err, "block "+c.String())
	}
	return nil
}

// Flush writes any buffered output to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail(err, "buffered output")
	}
	return nil
}

// Written returns the number of bytes of CAR output produced so far
// (including bytes still buffered).
func (w *Writer) Written() int64 { return w.n }

func (w *Writer) write(b []byte) error {
	n, err := w.bw.Write(b)
	w.n += int64(n)
	return err
}

// fail records a write error; what is only formatted on this slow path.
func (w *Writer) fail(err error, what string) error {
	w.err = fmt.Errorf("car: writing %s: %w", what, err)
	return w.err
}

package car

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// maxRootsShown bounds how many roots a SingleRoot error lists.
const maxRootsShown = 3

// SingleRoot returns the only root of roots, or an ErrRoots error naming
// them when there are none or several: an import pins one DAG, and picking
// one of several roots would silently drop the others.
func SingleRoot(roots []cid.Cid) (cid.Cid, error) {
	if len(roots) == 1 {
		return roots[0], nil
	}
	if len(roots) == 0 {
		return cid.Undef, &Error{Kind: ErrRoots, Offset: -1, Block: -1,
			msg: "car: CAR has no roots; import needs exactly one"}
	}
	names := make([]string, 0, maxRootsShown+1)
	for _, c := range roots[:min(len(roots), maxRootsShown)] {
		names = append(names, c.String())
	}
	if len(roots) > maxRootsShown {
		names = append(names, fmt.Sprintf("and %d more", len(roots)-maxRootsShown))
	}
	return cid.Undef, &Error{Kind: ErrRoots, Offset: -1, Block: -1,
		msg: fmt.Sprintf("car: CAR has %d roots (%s); import needs exactly one", len(roots), strings.Join(names, ", "))}
}

// Stats describe a Verify run.
type Stats struct {
	// Version is the CAR version of the input (1 or 2).
	Version int
	// Blocks is the number of blocks read and verified.
	Blocks int64
	// DataBytes is the total size of the blocks' data.
	DataBytes int64
	// BytesRead is the number of input bytes consumed.
	BytesRead int64
	// BytesWritten is the number of CARv1 bytes written to w.
	BytesWritten int64
}

// Verify reads a CARv1 or CARv2 stream from r, verifies every block against
// its CID, and writes a clean CARv1 stream (the same single root, then the
// blocks in input order) to w. It returns the root when the CAR has
// exactly one root (ErrRoots otherwise), every block verifies, and a block
// with the root's multihash is present (ErrRootMissing otherwise, unless
// opts.AllowMissingRoot). w may be nil to verify only.
//
// Verify streams: a block is written to w as soon as it has been verified,
// so the memory used is one block, and w sees only verified blocks. But w
// sees them before the whole CAR has been checked: a later block may still
// fail, the root may turn out to be missing. A caller piping w into kubo's
// dag/import must therefore
//
//   - import without pinning (pin-roots=false) and pin the returned root
//     only when Verify returned nil;
//   - on error, abort the import rather than end it cleanly, e.g.
//     pipeWriter.CloseWithError(err), so kubo does not take a truncated
//     stream for a complete CAR. Blocks kubo stored before the abort stay
//     unpinned and go at the next garbage collection.
//
// The whole output has been written to w (flushed) when Verify returns nil.
// Bytes of r after a CARv2 payload (its index) are not needed: Verify
// returns at the payload's end without reading r to EOF.
//
// ctx is checked between blocks; it cannot interrupt a Read blocked on r,
// so a caller reading from the network should also tie r to ctx (an HTTP
// request body is).
func Verify(ctx context.Context, r io.Reader, w io.Writer, opts Options) (cid.Cid, Stats, error) {
	var st Stats
	cr, err := NewReader(r, opts)
	if err != nil {
		return cid.Undef, st, err
	}
	st.Version = cr.Version()
	root, err := SingleRoot(cr.roots)
	if err != nil {
		st.BytesRead = cr.Offset()
		return cid.Undef, st, err
	}
	rootMH, rootCodec := []byte(root.Hash()), root.Type()
	// An identity root carries its data in the CID: it is always there.
	present := root.Prefix().MhType == mh.IDENTITY

	var cw *Writer
	if w != nil {
		if cw, err = NewWriter(w, cr.roots); err != nil {
			return cid.Undef, st, err
		}
	}
	done := func(err error) (cid.Cid, Stats, error) {
		st.BytesRead = cr.Offset()
		if cw != nil {
			st.BytesWritten = cw.Written()
		}
		if err != nil {
			return cid.Undef, st, err
		}
		return root, st, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return done(fmt.Errorf("car: verify stopped after %d blocks: %w", st.Blocks, err))
		}
		c, data, err := cr.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return done(err)
		}
		st.Blocks++
		st.DataBytes += int64(len(data))
		// Compare multihash and codec, not the CIDs: kubo stores blocks by
		// multihash, so a root named as CIDv0 is satisfied by the same
		// block under a CIDv1 and vice versa. The codec must match: kubo
		// decodes the root with the root's codec, and it is the one part
		// of a CID no hash covers.
		if !present && cr.lastCodec == rootCodec && bytes.Equal(cr.lastMH, rootMH) {
			present = true
		}
		if cw != nil {
			if err := cw.PutRaw(c, data); err != nil {
				return done(err) // names the block's CID
			}
		}
	}
	if !present && !opts.AllowMissingRoot {
		return done(&Error{Kind: ErrRootMissing, Offset: -1, Block: -1, Cid: root,
			msg: fmt.Sprintf("car: root %s is not among the CAR's %d blocks; cannot pin it from this CAR", root, st.Blocks)})
	}
	if cw != nil {
		if err := cw.Flush(); err != nil {
			return done(err)
		}
	}
	return done(nil)
}

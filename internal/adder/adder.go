// Package adder turns files and directories into a UnixFS DAG, the way
// kubo's `ipfs add` does, and streams its blocks to a BlockSink.
//
// Given the same Options, the CIDs are those kubo v0.38.1 computes: same
// chunkers, layouts, leaves, CID versions and hash functions, and the same
// automatic HAMT sharding of directories whose estimated size reaches
// 256KiB. Inputs are paths on disk, the multipart/form-data body that
// ipfs-cluster-ctl and kubo clients send, a single reader (stdin), or any
// boxo files.Directory.
//
// Memory does not grow with the size of the content: file data is read in
// chunks and each block goes to the sink as soon as it is made; nothing is
// read back. What is kept is one list of links per directory being built
// (kubo keeps as much) and one small record per directory, for the output
// events sent when the add completes.
package adder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	gopath "path"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/hamt"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/boxo/ipld/unixfs/importer/trickle"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"ipfs-cluster/internal/api"
)

// maxNameLen bounds one name (path component). Filesystems stop at 255
// bytes; multipart senders could send anything, and a name lands whole in
// a directory block, so absurd names would make blocks kubo cannot move.
const maxNameLen = 4096

// progressEvery is how many bytes of a file are read between two progress
// events (kubo's progressReaderIncrement).
const progressEvery = 256 << 10

// OutputFunc receives the events of an add, from the goroutine running it,
// in order:
//
//   - with Options.Progress, {Name, Bytes} as a file is read: Bytes is how
//     much of it has been read so far;
//   - {Name, Cid, Size} when a file or symlink is complete;
//   - {Name, Cid, Size} for every directory, deepest first, once its
//     top-level entry (or, when wrapping, everything) is complete: the
//     last event is the root.
//
// Names are the paths kubo prints: "dir/sub/file", or "" for the wrapping
// directory; an unnamed file (a reader without a name) is named by its CID.
// Size is the cumulative size of the DAG below the node (kubo's Size). The
// function must not block for long: the add waits for it.
type OutputFunc func(api.AddedOutput)

// Adder performs one add. Create it with New and call one of its Add
// methods once; another call returns ErrAdderUsed. The add runs in the
// caller's goroutine and starts none of its own, so nothing outlives it.
type Adder struct {
	set  settings
	sink BlockSink
	out  OutputFunc
	used atomic.Bool
}

// New validates opts (errors wrap ErrInvalidOption) and returns an Adder
// writing blocks to sink and events to out, which may be nil.
func New(opts Options, sink BlockSink, out OutputFunc) (*Adder, error) {
	if sink == nil {
		return nil, errors.New("adder: nil sink")
	}
	set, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = func(api.AddedOutput) {}
	}
	return &Adder{set: set, sink: sink, out: out}, nil
}

// AddMultipart adds the files of a multipart/form-data body in the format
// of boxo's files.MultiFileReader, which ipfs-cluster-ctl and kubo's
// clients send: one part per file, directory ("application/x-directory")
// or symlink ("application/symlink"), named by its path. Parts are read as
// they come, so the body is never buffered.
func (a *Adder) AddMultipart(ctx context.Context, r *multipart.Reader) (api.Cid, error) {
	return a.AddFiles(ctx, partTree(r))
}

// AddReader adds the content of r as one file named name, like
// `ipfs add --stdin-name name`. With an empty name the file is named by its
// CID, as kubo names stdin.
func (a *Adder) AddReader(ctx context.Context, name string, r io.Reader) (api.Cid, error) {
	return a.AddFiles(ctx, files.NewSliceDirectory([]files.DirEntry{
		files.FileEntry(name, files.NewReaderFile(r)),
	}))
}

// AddFiles adds every entry of top. Without Wrap, top must hold one entry
// (a file, or a directory with everything below it), which is the root:
// one add pins one root, and a second entry would be stored but left
// unpinned. With Wrap, the entries go into one directory, which is the
// root. The entries of top are never filtered as hidden: they were named
// explicitly. AddFiles closes top.
func (a *Adder) AddFiles(ctx context.Context, top files.Directory) (api.Cid, error) {
	defer top.Close()
	if !a.used.CompareAndSwap(false, true) {
		return api.CidUndef, ErrAdderUsed
	}
	b := &build{ctx: ctx, set: a.set, dag: newSinkDAG(ctx, a.sink), out: a.out}
	if a.set.wrap {
		root, err := b.addDir("", top, true)
		if err != nil {
			return api.CidUndef, err
		}
		b.flushDirs()
		return api.NewCid(root.cid), nil
	}

	var root cid.Cid
	first := ""
	it := top.Entries()
	for it.Next() {
		if root.Defined() {
			return api.CidUndef, fmt.Errorf("%w: %q and %q: several files or folders are added with wrap-with-directory, or one at a time", ErrInvalidInput, first, it.Name())
		}
		first = it.Name()
		e, err := b.addEntry("", it.Name(), it.Node())
		if err != nil {
			return api.CidUndef, err
		}
		b.flushDirs()
		root = e.cid
	}
	if err := it.Err(); err != nil {
		return api.CidUndef, b.inputErr("", err)
	}
	if !root.Defined() {
		return api.CidUndef, fmt.Errorf("%w: nothing to add", ErrInvalidInput)
	}
	return api.NewCid(root), nil
}

// build is the state of one add. It belongs to the goroutine running it.
type build struct {
	ctx  context.Context
	set  settings
	dag  *sinkDAG
	out  OutputFunc
	dirs []api.AddedOutput // directory events waiting for flushDirs
}

// entry is a finished node as its parent links to it.
type entry struct {
	cid  cid.Cid
	size uint64 // cumulative DAG size: the link's Tsize
}

// inputErr wraps an error about the input at path in ErrInvalidInput,
// unless the add was cancelled, which is then the error to report.
func (b *build) inputErr(path string, err error) error {
	if cerr := context.Cause(b.ctx); cerr != nil {
		return fmt.Errorf("add cancelled: %w", cerr)
	}
	where := path
	if where == "" {
		where = "input"
	}
	switch {
	case errors.Is(err, ErrInvalidInput) || errors.Is(err, ErrInvalidOption):
		return fmt.Errorf("%s: %w", where, err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// A multipart body ends with a closing boundary; without it the
		// upload was cut short, and what arrived is not the whole add.
		return fmt.Errorf("%w: %s: the upload ended before the multipart body's closing boundary: %w", ErrInvalidInput, where, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrInvalidInput, where, err)
}

// addEntry adds node, named name inside the directory at parent, and
// closes it. An unnamed file is named by its CID.
func (b *build) addEntry(parent, name string, node files.Node) (entry, error) {
	defer node.Close()
	if err := context.Cause(b.ctx); err != nil {
		return entry{}, fmt.Errorf("add cancelled: %w", err)
	}
	path := gopath.Join(parent, name)
	switch {
	case name == "" && parent != "":
		// Only top-level entries may be unnamed (a reader, stdin).
		return entry{}, b.inputErr(parent, fmt.Errorf("%w: unnamed entry", ErrInvalidInput))
	case name != "":
		if err := checkName(name); err != nil {
			return entry{}, b.inputErr(path, err)
		}
	}
	switch n := node.(type) {
	case files.Directory:
		if name == "" && b.set.wrap {
			return entry{}, b.inputErr("", fmt.Errorf("%w: unnamed directory in the wrapping directory", ErrInvalidInput))
		}
		return b.addDir(path, n, false)
	case *files.Symlink:
		return b.addSymlink(parent, name, n)
	case files.File:
		return b.addFile(parent, name, n)
	default:
		return entry{}, b.inputErr(path, fmt.Errorf("%w: unsupported file type %T", ErrInvalidInput, node))
	}
}

// checkName refuses names that cannot be one directory entry.
func checkName(name string) error {
	switch {
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q is not a valid name", ErrInvalidInput, name)
	case strings.Contains(name, "/"):
		return fmt.Errorf("%w: name %q contains a slash", ErrInvalidInput, name)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: name of %d bytes is longer than %d", ErrInvalidInput, len(name), maxNameLen)
	}
	return nil
}

func isHidden(name string) bool {
	return name != "." && name != ".." && strings.HasPrefix(name, ".")
}

// addFile chunks a file into a balanced or trickle DAG.
func (b *build) addFile(parent, name string, f files.File) (entry, error) {
	path := gopath.Join(parent, name)
	r := &fileReader{ctx: b.ctx, r: f}
	if b.set.progress {
		r.progress = func(n uint64) { b.out(api.AddedOutput{Name: path, Bytes: n}) }
	}
	params := helpers.DagBuilderParams{
		Dagserv:    b.dag,
		RawLeaves:  b.set.rawLeaves,
		Maxlinks:   b.set.maxLinks,
		CidBuilder: b.set.prefix,
	}
	db, err := params.New(b.set.chunker.splitter(r))
	if err != nil {
		return entry{}, b.nodeErr(path, err)
	}
	var nd ipld.Node
	if b.set.trickle {
		nd, err = trickle.Layout(db)
	} else {
		nd, err = balanced.Layout(db)
	}
	if err == nil && r.err != nil {
		err = r.err
	}
	if err != nil {
		return entry{}, b.nodeErr(path, err)
	}
	r.finish()
	return b.finished(parent, name, nd)
}

// addSymlink stores the link itself, never its target, as kubo does: links
// that loop or dangle are added like any other.
func (b *build) addSymlink(parent, name string, l *files.Symlink) (entry, error) {
	path := gopath.Join(parent, name)
	data, err := unixfs.SymlinkData(l.Target)
	if err != nil {
		return entry{}, b.inputErr(path, err)
	}
	nd := merkledag.NodeWithData(data)
	if err := nd.SetCidBuilder(b.set.prefix); err != nil {
		return entry{}, b.nodeErr(path, err)
	}
	if err := b.dag.Add(b.ctx, nd); err != nil {
		return entry{}, b.nodeErr(path, err)
	}
	return b.finished(parent, name, nd)
}

// finished reports a finished file or symlink node and returns its entry.
func (b *build) finished(parent, name string, nd ipld.Node) (entry, error) {
	size, err := nd.Size()
	if err != nil {
		return entry{}, b.nodeErr(gopath.Join(parent, name), err)
	}
	if name == "" {
		name = nd.Cid().String()
	}
	b.out(api.AddedOutput{Name: gopath.Join(parent, name), Cid: api.NewCid(nd.Cid()), Size: size})
	return entry{cid: nd.Cid(), size: size}, nil
}

// nodeErr wraps an error met while building or storing a node: the input
// failing to read, the sink failing, or the add being cancelled.
func (b *build) nodeErr(path string, err error) error {
	if cerr := context.Cause(b.ctx); cerr != nil {
		return fmt.Errorf("add cancelled: %w", cerr)
	}
	var rerr *readError
	if errors.As(err, &rerr) {
		return b.inputErr(path, rerr.err)
	}
	if path == "" {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// addDir adds every entry of dir, then the directory node. Entries of the
// top-level (wrapping) directory are not filtered as hidden.
func (b *build) addDir(path string, dir files.Directory, top bool) (entry, error) {
	var links []*ipld.Link
	estimate := 0
	// The events of each subfolder's tree, by name, for a HAMT to list
	// in its own order.
	start := len(b.dirs)
	subtrees := map[string][2]int{}
	it := dir.Entries()
	for it.Next() {
		name, node := it.Name(), it.Node()
		if !top && !b.set.hidden && isHidden(name) {
			node.Close()
			continue
		}
		before := len(b.dirs)
		e, err := b.addEntry(path, name, node)
		if err != nil {
			return entry{}, err
		}
		if len(b.dirs) > before {
			subtrees[name] = [2]int{before, len(b.dirs)}
		}
		if name == "" {
			name = e.cid.String() // an unnamed file in the wrapper, as kubo names it
		}
		links = append(links, &ipld.Link{Name: name, Cid: e.cid, Size: e.size})
		// boxo's estimate of a basic directory's size (linksize).
		estimate += len(name) + e.cid.ByteLen()
	}
	if err := it.Err(); err != nil {
		return entry{}, b.inputErr(path, err)
	}
	if top && len(links) == 0 {
		// kubo refuses an add without files, wrapped or not.
		return entry{}, fmt.Errorf("%w: nothing to add", ErrInvalidInput)
	}

	slices.SortFunc(links, func(x, y *ipld.Link) int { return strings.Compare(x.Name, y.Name) })
	for i := 1; i < len(links); i++ {
		if links[i].Name == links[i-1].Name {
			// kubo's MFS refuses a second entry of the same name.
			return entry{}, b.inputErr(path, fmt.Errorf("%w: two entries named %q", ErrInvalidInput, links[i].Name))
		}
	}

	var nd ipld.Node
	var err error
	if b.shard(len(links), estimate) {
		var order []string
		if nd, order, err = b.hamtNode(links); err == nil {
			b.reorderDirs(start, subtrees, order)
		}
	} else {
		nd, err = b.basicNode(links)
	}
	if err != nil {
		return entry{}, b.nodeErr(path, err)
	}
	size, err := nd.Size()
	if err != nil {
		return entry{}, b.nodeErr(path, err)
	}
	b.dirs = append(b.dirs, api.AddedOutput{Name: path, Cid: api.NewCid(nd.Cid()), Size: size})
	return entry{cid: nd.Cid(), size: size}, nil
}

// shard reports whether a directory of n entries and estimated size
// estimate is a HAMT in kubo v0.38.1. kubo adds entries one at a time to a
// basic directory and converts it for good as soon as adding one makes the
// estimate reach the threshold (boxo v0.35 compares with >=; later boxo
// versions use >, which is why this is not left to boxo) or the entry
// count exceed max-directory-links. Adds only grow the estimate, so the
// decision on the final totals is the same.
func (b *build) shard(n, estimate int) bool {
	if b.set.maxDirLinks > 0 && n > b.set.maxDirLinks {
		return true
	}
	return b.set.shardingSize > 0 && estimate >= b.set.shardingSize
}

func (b *build) basicNode(links []*ipld.Link) (ipld.Node, error) {
	nd := unixfs.EmptyDirNode()
	if err := nd.SetCidBuilder(b.set.prefix); err != nil {
		return nil, err
	}
	nd.SetLinks(links)
	if err := b.dag.Add(b.ctx, nd); err != nil {
		return nil, err
	}
	return nd, nil
}

// hamtNode builds the HAMT of a large directory with boxo's hamt package,
// as kubo's MFS does. A HAMT's shape depends only on its keys, not on the
// order they were set, so setting the final links equals kubo's sequence
// of inserts and updates. Node writes every shard to the DAG service. It
// also returns the entry names in the HAMT's order.
func (b *build) hamtNode(links []*ipld.Link) (ipld.Node, []string, error) {
	shard, err := hamt.NewShard(b.dag, b.set.fanout)
	if err != nil {
		return nil, nil, err
	}
	shard.SetCidBuilder(b.set.prefix)
	for _, l := range links {
		if err := shard.SetLink(b.ctx, l.Name, l); err != nil {
			return nil, nil, err
		}
	}
	nd, err := shard.Node()
	if err != nil {
		return nil, nil, err
	}
	order := make([]string, 0, len(links))
	err = shard.ForEachLink(b.ctx, func(l *ipld.Link) error {
		order = append(order, l.Name)
		return nil
	})
	return nd, order, err
}

// reorderDirs puts the folder events held since start, which follow the
// folder's entries in name order, in the order kubo lists a HAMT's
// entries: its own order. subtrees holds each subfolder's events.
func (b *build) reorderDirs(start int, subtrees map[string][2]int, order []string) {
	if len(subtrees) < 2 {
		return
	}
	held := slices.Clone(b.dirs[start:])
	b.dirs = b.dirs[:start]
	for _, name := range order {
		if r, ok := subtrees[name]; ok {
			b.dirs = append(b.dirs, held[r[0]-start:r[1]-start]...)
		}
	}
}

// flushDirs sends the directory events held back until the end of a
// top-level entry, as kubo does.
func (b *build) flushDirs() {
	for _, d := range b.dirs {
		b.out(d)
	}
	b.dirs = b.dirs[:0]
}

// readError marks an error of the input reader, to tell it from sink
// errors once boxo's importers have passed it up.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// fileReader reads a file for the chunker: it stops at cancellation, marks
// read errors, and reports progress. It keeps the first error, which the
// file's add then fails with: boxo's size chunker takes any error that is
// io.ErrUnexpectedEOF, wrapped or not, for the short last chunk of a
// whole file. A multipart body cut inside a file fails so: the cut file
// would be added, and reported, before anything said the body was cut.
type fileReader struct {
	ctx      context.Context
	r        io.Reader
	n        uint64
	last     uint64
	progress func(uint64)
	err      error
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := context.Cause(r.ctx); err != nil {
		if r.err == nil {
			r.err = err
		}
		return 0, err
	}
	n, err := r.r.Read(p)
	r.n += uint64(n)
	if r.progress != nil && r.n-r.last >= progressEvery {
		r.last = r.n
		r.progress(r.n)
	}
	if err != nil && err != io.EOF {
		if r.err == nil {
			r.err = &readError{err: err}
		}
		return n, r.err
	}
	return n, err
}

// finish sends the final progress event: the file's full size.
func (r *fileReader) finish() {
	if r.progress != nil && (r.last != r.n || r.n == 0) {
		r.last = r.n
		r.progress(r.n)
	}
}

package adder

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ipfs/boxo/files"
)

// maxSymlinkTarget bounds a symlink part: a target longer than any path a
// system accepts is not a symlink.
const maxSymlinkTarget = 64 << 10

// maxPathLen bounds a part's path, as PATH_MAX bounds one on disk. Every
// folder on the way is kept, path and all, until the add ends, and named
// in the output: a body of a few kilobytes nesting thousands of folders
// would cost memory and output quadratic in its size.
const maxPathLen = 4096

// partTree returns the tree of files that a multipart/form-data add body
// describes, read as the body streams in: parts come depth first, each
// named by its path (a directory part, "application/x-directory", before
// its entries; a folder with no part of its own is implied by the paths
// below it). Names and order are those of boxo's parser, which kubo's
// clients and ipfs-cluster-ctl write for, so CIDs do not change; but a
// part that parser would drop without a word, one below a file or a
// symlink, is an error here: an add never loses what was sent.
func partTree(mr *multipart.Reader) files.Directory {
	return &partDir{w: &partWalker{mr: mr}, path: "/"}
}

// partWalker is the body's cursor, shared by every directory of the tree.
// One goroutine, the add's, uses it.
type partWalker struct {
	mr   *multipart.Reader
	part *multipart.Part // the next part, read but not taken yet
	name string          // its cleaned path, such as "/dir/file"
	err  error           // the error that ended the body; io.EOF at its end
}

// peek returns the next part without taking it.
func (w *partWalker) peek() (*multipart.Part, string, error) {
	if w.part == nil && w.err == nil {
		p, err := w.mr.NextPart()
		name := ""
		if err == nil {
			name = partPath(p)
		}
		switch {
		case err != nil:
			w.err = err
		case len(name)-1 > maxPathLen:
			w.err = fmt.Errorf("%w: %.64q...: a path of %d bytes is longer than %d", ErrInvalidInput, name[1:], len(name)-1, maxPathLen)
		default:
			w.part, w.name = p, name
		}
	}
	return w.part, w.name, w.err
}

func (w *partWalker) take() { w.part = nil }

// partPath is a part's path as boxo's parser reads it: the filename
// parameter, URL-unescaped when it can be, cleaned and rooted at "/".
func partPath(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return "/"
	}
	name := params["filename"]
	if unescaped, err := url.QueryUnescape(name); err == nil {
		name = unescaped
	}
	return path.Clean("/" + name)
}

// partDir is a directory of the body: one with its own part, or one
// implied by the paths of the parts below it.
type partDir struct {
	w    *partWalker
	path string
}

func (d *partDir) Close() error               { return nil }
func (d *partDir) Mode() os.FileMode          { return os.ModeDir }
func (d *partDir) ModTime() time.Time         { return time.Time{} }
func (d *partDir) Size() (int64, error)       { return 0, files.ErrNotSupported }
func (d *partDir) Entries() files.DirIterator { return &partIter{d: d} }

// partIter walks one directory's entries.
type partIter struct {
	d       *partDir
	name    string
	node    files.Node
	err     error
	lastDir bool // the last entry returned is a directory
}

func (it *partIter) Name() string     { return it.name }
func (it *partIter) Node() files.Node { return it.node }

func (it *partIter) Err() error {
	// NextPart says a clean end with io.EOF itself; a body cut before
	// its closing boundary ends with an error that wraps io.EOF.
	if it.err == io.EOF {
		return nil
	}
	return it.err
}

func (it *partIter) Next() bool {
	if it.err != nil {
		return false
	}
	prefix := it.d.path
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	for {
		part, name, err := it.d.w.peek()
		if err != nil {
			it.err = err
			return false
		}
		rel, below := strings.CutPrefix(name, prefix)
		if !below {
			return false // the next entry of an enclosing directory
		}
		first, _, nested := strings.Cut(rel, "/")
		if nested && it.name != "" && first == it.name {
			if !it.lastDir {
				it.err = fmt.Errorf("%w: %s: %s is not a folder", ErrInvalidInput, strings.TrimPrefix(name, "/"), strings.TrimPrefix(path.Join(it.d.path, first), "/"))
				return false
			}
			// Left over from a folder that was not read to its
			// end (a hidden one, skipped): not part of the add.
			it.d.w.take()
			continue
		}
		if nested {
			it.name, it.lastDir = first, true
			it.node = &partDir{w: it.d.w, path: path.Join(it.d.path, first)}
			return true
		}
		it.d.w.take()
		it.name = rel
		it.node, it.lastDir, it.err = partNode(it.d.w, part, name)
		return it.err == nil
	}
}

// partNode is the file, directory or symlink one part carries.
func partNode(w *partWalker, p *multipart.Part, name string) (files.Node, bool, error) {
	ctype := p.Header.Get("Content-Type")
	if ctype != "" {
		var err error
		if ctype, _, err = mime.ParseMediaType(ctype); err != nil {
			return nil, false, fmt.Errorf("%w: %s: content type: %w", ErrInvalidInput, strings.TrimPrefix(name, "/"), err)
		}
	}
	switch ctype {
	case "multipart/form-data", "application/x-directory":
		return &partDir{w: w, path: name}, true, nil
	case "application/symlink":
		target, err := io.ReadAll(io.LimitReader(p, maxSymlinkTarget+1))
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s: %w", ErrInvalidInput, strings.TrimPrefix(name, "/"), err)
		}
		if len(target) > maxSymlinkTarget {
			return nil, false, fmt.Errorf("%w: %s: a symlink target longer than %d bytes", ErrInvalidInput, strings.TrimPrefix(name, "/"), maxSymlinkTarget)
		}
		return files.NewLinkFile(string(target), nil), false, nil
	}
	return files.NewReaderFile(p), false, nil
}

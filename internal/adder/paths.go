package adder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ipfs/boxo/files"

	"ipfs-cluster/internal/api"
)

// AddPaths adds files and directories of the local filesystem, like
// `ipfs add [-r] [-H] [-w] path...`: each path is named by its base name
// ("." by the working directory's), directories need Options.Recursive,
// hidden entries below a path are skipped unless Options.Hidden, and
// symlinks are added as symlinks, never followed. A path given twice is
// added once; two different paths with the same base name are an error.
//
// Before any block is made, every path is checked: it exists, every
// directory below it can be listed and every file opened, and it holds
// nothing but regular files, directories and symlinks (a FIFO is accepted
// as a top-level path and read like a file, as kubo does). A failed check
// returns an error wrapping ErrInvalidInput and naming the path, and the
// Adder stays unused. What changes on disk after the check fails the add
// midway, with the same kind of error.
func (a *Adder) AddPaths(ctx context.Context, paths ...string) (api.Cid, error) {
	if a.used.Load() {
		return api.CidUndef, ErrAdderUsed
	}
	if len(paths) == 0 {
		return api.CidUndef, fmt.Errorf("%w: no path to add", ErrInvalidInput)
	}
	filter, err := files.NewFilter("", nil, a.set.hidden)
	if err != nil {
		return api.CidUndef, fmt.Errorf("adder: %w", err)
	}
	byName := map[string]string{}
	var tops []topPath
	for _, p := range paths {
		if err := context.Cause(ctx); err != nil {
			return api.CidUndef, fmt.Errorf("add cancelled: %w", err)
		}
		tp, err := a.checkPath(p)
		if err != nil {
			return api.CidUndef, err
		}
		if prev, ok := byName[tp.name]; ok {
			if prev == tp.abs {
				continue
			}
			return api.CidUndef, fmt.Errorf("%w: %s and %s would both be named %q", ErrInvalidInput, prev, tp.abs, tp.name)
		}
		byName[tp.name] = tp.abs
		tops = append(tops, tp)
	}
	return a.AddFiles(ctx, &pathDir{tops: tops, filter: filter})
}

// topPath is a checked path given to AddPaths.
type topPath struct {
	path string // as given, cleaned
	abs  string
	name string
	stat os.FileInfo // from Lstat
}

// checkPath stats a path and, for a directory, walks it.
func (a *Adder) checkPath(p string) (topPath, error) {
	clean := filepath.Clean(p)
	abs, err := filepath.Abs(clean)
	if err != nil {
		return topPath{}, fmt.Errorf("%w: %s: %w", ErrInvalidInput, p, err)
	}
	st, err := os.Lstat(clean)
	if err != nil {
		return topPath{}, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	tp := topPath{path: clean, abs: abs, name: filepath.Base(abs), stat: st}
	if err := checkName(tp.name); err != nil {
		return topPath{}, fmt.Errorf("%s: %w", p, err)
	}
	switch mode := st.Mode(); {
	case mode.IsDir():
		if !a.set.recursive {
			return topPath{}, fmt.Errorf("%w: %s is a directory: adding it needs recursive", ErrInvalidInput, p)
		}
		return tp, a.walk(clean)
	case mode.IsRegular():
		return tp, checkOpen(clean)
	case mode&(fs.ModeSymlink|fs.ModeNamedPipe) != 0:
		return tp, nil
	default:
		return topPath{}, fmt.Errorf("%w: %s: unsupported file type %s", ErrInvalidInput, p, mode.Type())
	}
}

// walk checks everything below dir that the add will read.
func (a *Adder) walk(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
		if p == dir {
			return nil
		}
		name := d.Name()
		if !a.set.hidden && isHidden(name) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err := checkName(name); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		switch t := d.Type(); {
		case t.IsDir(), t&fs.ModeSymlink != 0:
			return nil
		case t.IsRegular():
			return checkOpen(p)
		default:
			return fmt.Errorf("%w: %s: unsupported file type %s", ErrInvalidInput, p, t)
		}
	})
}

func checkOpen(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	return f.Close()
}

// pathDir is the directory of the paths given to AddPaths. It opens each
// path only when the add reaches it, so that adding thousands of paths
// does not hold thousands of files open.
type pathDir struct {
	tops   []topPath
	filter *files.Filter
}

func (d *pathDir) Close() error               { return nil }
func (d *pathDir) Mode() os.FileMode          { return os.ModeDir }
func (d *pathDir) ModTime() time.Time         { return time.Time{} }
func (d *pathDir) Size() (int64, error)       { return 0, files.ErrNotSupported }
func (d *pathDir) Entries() files.DirIterator { return &pathIter{tops: d.tops, filter: d.filter} }

// pathIter makes the node of each path as the add reaches it.
type pathIter struct {
	tops   []topPath
	filter *files.Filter
	cur    topPath
	node   files.Node
	err    error
}

func (it *pathIter) Name() string     { return it.cur.name }
func (it *pathIter) Node() files.Node { return it.node }
func (it *pathIter) Err() error       { return it.err }

func (it *pathIter) Next() bool {
	if len(it.tops) == 0 {
		return false
	}
	tp := it.tops[0]
	it.tops = it.tops[1:]
	it.cur = tp
	if tp.stat.Mode()&fs.ModeNamedPipe != 0 {
		f, err := os.Open(tp.path)
		if err != nil {
			it.err = fmt.Errorf("%w: %w", ErrInvalidInput, err)
			return false
		}
		it.node = files.NewReaderFile(f)
		return true
	}
	node, err := files.NewSerialFileWithFilter(tp.path, it.filter, tp.stat)
	if err != nil {
		if !errors.Is(err, ErrInvalidInput) {
			err = fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
		it.err = err
		return false
	}
	it.node = node
	return true
}

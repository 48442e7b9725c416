package client

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/ipfs/boxo/files"

	"ipfs-cluster/internal/api"
)

// Add uploads local files and directories to POST /add with the given
// query (the adder's and the pin's parameters, as the reference names
// them) and calls fn with each line of the reply. The body is streamed:
// nothing is read into memory. Directories need recursive=true in query;
// hidden=true includes dot files below them.
//
// A path that is an http or https URL is fetched and sent as a file named
// after the URL's last path element, as the reference's client does; the
// fetch starts, and must succeed, before anything is sent.
func (c *Client) Add(ctx context.Context, paths []string, query url.Values, fn func(api.AddedOutput) error) error {
	var fetched []io.Closer
	defer func() {
		for _, f := range fetched {
			f.Close()
		}
	}()
	dir, err := uploadTree(paths, query, func(u *url.URL) (files.Node, error) {
		body, err := fetch(ctx, u)
		if err != nil {
			return nil, err
		}
		fetched = append(fetched, body)
		return files.NewReaderFile(body), nil
	})
	if err != nil {
		return &InputError{Err: err}
	}
	return c.AddFiles(ctx, dir, query, fn)
}

// InputError is a fault in what the caller asked to send (a path that
// cannot be read, a URL that cannot be fetched), found before anything
// was sent to the API.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }

func (e *InputError) Unwrap() error { return e.Err }

// IsURL reports whether an add path is a URL to fetch.
func IsURL(p string) bool {
	return strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://")
}

// fetch GETs u and returns the body of a successful reply.
func fetch(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, fmt.Errorf("add %s: the server answered %s", u, resp.Status)
	}
	return resp.Body, nil
}

// urlName is the name a fetched URL is added under: its last path
// element, or its host when the path has none.
func urlName(u *url.URL) string {
	if name := path.Base(u.Path); name != "/" && name != "." {
		return name
	}
	return u.Host
}

// AddFiles is Add for an already built tree, such as one file read from
// stdin or a CAR.
func (c *Client) AddFiles(ctx context.Context, dir files.Directory, query url.Values, fn func(api.AddedOutput) error) error {
	if n, ok := ctx.Value(uploadCounterKey{}).(*atomic.Int64); ok {
		dir = countedDir{Directory: dir, n: n}
	}
	mfr := files.NewMultiFileReader(dir, true, false)
	r := request{method: http.MethodPost, path: "/add", query: query,
		body: mfr, contentType: "multipart/form-data; boundary=" + mfr.Boundary()}
	if query.Get("stream-channels") == "false" {
		// The buffered mode answers with one array, once the add is done.
		return c.stream(ctx, r, decodeItem(r, func(all []api.AddedOutput) error {
			for _, o := range all {
				if err := fn(o); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	return c.stream(ctx, r, decodeItem(r, fn))
}

type uploadCounterKey struct{}

// WithUploadCounter makes the adds made with ctx count the bytes of file
// content they have sent into n, for a progress display against
// UploadSize.
func WithUploadCounter(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, uploadCounterKey{}, n)
}

// countedDir, countedEntries and countedFile wrap an upload tree to count
// the file bytes read from it. Symlinks stay as they are: the multipart
// writer tells them from files by their type.
type countedDir struct {
	files.Directory
	n *atomic.Int64
}

func (d countedDir) Entries() files.DirIterator {
	return countedEntries{DirIterator: d.Directory.Entries(), n: d.n}
}

type countedEntries struct {
	files.DirIterator
	n *atomic.Int64
}

func (it countedEntries) Node() files.Node {
	switch nd := it.DirIterator.Node().(type) {
	case *files.Symlink:
		return nd
	case files.Directory:
		return countedDir{Directory: nd, n: it.n}
	case files.File:
		return countedFile{File: nd, n: it.n}
	default:
		return nd
	}
}

type countedFile struct {
	files.File
	n *atomic.Int64
}

func (f countedFile) Read(p []byte) (int, error) {
	k, err := f.File.Read(p)
	f.n.Add(int64(k))
	return k, err
}

// uploadTree checks every path, and every file below a directory, before
// anything is sent, and names the one that cannot be added. A path given
// twice is added once, and "." is named after the directory it is, as
// kubo does.
func uploadTree(paths []string, query url.Values, fetchURL func(*url.URL) (files.Node, error)) (_ files.Directory, err error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("add: no path given")
	}
	recursive := query.Get("recursive") == "true"
	hidden := query.Get("hidden") == "true"
	filter, err := files.NewFilter("", nil, hidden)
	if err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	entries := make([]files.DirEntry, 0, len(paths))
	defer func() {
		if err != nil { // the files opened so far, a URL's body
			for _, e := range entries {
				e.Node().Close()
			}
		}
	}()
	seen := make(map[string]bool, len(paths))
	// Several paths are wrapped in one directory, where two entries
	// cannot have the same name: kubo refuses this too.
	named := make(map[string]string, len(paths))
	add := func(name, p string, node files.Node) error {
		if prev, ok := named[name]; ok {
			node.Close()
			return fmt.Errorf("add: %s and %s would both be named %q in the directory that wraps them", prev, p, name)
		}
		named[name] = p
		entries = append(entries, files.FileEntry(name, node))
		return nil
	}
	for _, p := range paths {
		if IsURL(p) {
			u, err := url.Parse(p)
			if err != nil {
				return nil, fmt.Errorf("add: %w", err)
			}
			node, err := fetchURL(u)
			if err != nil {
				return nil, err
			}
			if err := add(urlName(u), p, node); err != nil {
				return nil, err
			}
			continue
		}
		// As kubo does: a trailing slash would make the system follow a
		// symlink that the path names, and reject a file.
		p = filepath.Clean(p)
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("add %s: %w", p, err)
		}
		if seen[abs] {
			continue
		}
		seen[abs] = true
		st, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		if st.IsDir() && !recursive {
			return nil, fmt.Errorf("add: %s is a directory: use -r to add it", p)
		}
		var node files.Node
		switch {
		case st.Mode()&fs.ModeNamedPipe != 0:
			// Named on the command line, a pipe is read like a file,
			// as kubo does (opening waits for its writer). Below a
			// directory it is refused: a tree's walk must not block.
			f, err := os.Open(p)
			if err != nil {
				return nil, fmt.Errorf("add: %w", err)
			}
			node, err = files.NewReaderPathFile(abs, f, st)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("add %s: %w", p, err)
			}
		case st.IsDir():
			err = checkTree(p, hidden)
		default:
			err = checkEntry(p, st.Mode())
		}
		if err != nil {
			return nil, err
		}
		if node == nil {
			if node, err = files.NewSerialFileWithFilter(p, filter, st); err != nil {
				return nil, fmt.Errorf("add %s: %w", p, err)
			}
		}
		if err := add(filepath.Base(abs), p, node); err != nil {
			return nil, err
		}
	}
	return files.NewSliceDirectory(entries), nil
}

// checkTree checks every entry below root that an add sends.
func checkTree(root string, hidden bool) error {
	return walkUpload(root, hidden, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("add: %w", err)
		}
		return checkEntry(p, d.Type())
	})
}

// walkUpload visits what an upload of root sends: root and everything
// below it, dot files only with hidden, as the upload's filter does.
func walkUpload(root string, hidden bool, fn fs.WalkDirFunc) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root && !hidden && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		return fn(p, d, err)
	})
}

// UploadSize is how many bytes of file content an Add of paths sends, for
// a progress display. Entries that cannot be read count for nothing: Add
// reports them.
func UploadSize(paths []string, hidden bool) int64 {
	var total int64
	for _, p := range paths {
		walkUpload(p, hidden, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					total += info.Size()
				}
			}
			return nil
		})
	}
	return total
}

// checkEntry checks that the entry at p, of the given mode, can be sent:
// a regular file that opens, a directory, or a symlink (sent as a link).
func checkEntry(p string, mode fs.FileMode) error {
	switch {
	case mode.IsRegular():
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("add: %w", err)
		}
		f.Close()
	case mode.IsDir(), mode&fs.ModeSymlink != 0:
	default:
		return fmt.Errorf("add: %s: only files, directories and symlinks can be added, not %s", p, describeMode(mode))
	}
	return nil
}

// describeMode names a file type that cannot be added.
func describeMode(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeDevice != 0:
		return "a device"
	default:
		return "a special file"
	}
}

// ReaderDirectory is a tree of one file read from r, named name, for
// AddFiles: stdin, or a CAR being imported.
func ReaderDirectory(name string, r io.Reader) files.Directory {
	return files.NewSliceDirectory([]files.DirEntry{files.FileEntry(name, files.NewReaderFile(r))})
}

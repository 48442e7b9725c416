package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/ipfs/boxo/files"

	"ipfs-cluster/internal/api"
)

// Add uploads local files and directories to POST /add with the given
// query (the adder's and the pin's parameters, as the reference names
// them) and calls fn with each line of the reply. The body is streamed:
// nothing is read into memory. Directories need recursive=true in query;
// hidden=true includes dot files below them.
func (c *Client) Add(ctx context.Context, paths []string, query url.Values, fn func(api.AddedOutput) error) error {
	dir, err := uploadTree(paths, query)
	if err != nil {
		return err
	}
	return c.AddFiles(ctx, dir, query, fn)
}

// AddFiles is Add for an already built tree, such as one file read from
// stdin or a CAR.
func (c *Client) AddFiles(ctx context.Context, dir files.Directory, query url.Values, fn func(api.AddedOutput) error) error {
	mfr := files.NewMultiFileReader(dir, true, false)
	var body io.Reader = mfr
	if n, ok := ctx.Value(uploadCounterKey{}).(*atomic.Int64); ok {
		body = &countingReader{r: mfr, n: n}
	}
	r := request{method: http.MethodPost, path: "/add", query: query,
		body: body, contentType: "multipart/form-data; boundary=" + mfr.Boundary()}
	return c.stream(ctx, r, decodeItem(r, fn))
}

type uploadCounterKey struct{}

// WithUploadCounter makes the adds made with ctx count the bytes of the
// request body they have sent into n, for a progress display.
func WithUploadCounter(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, uploadCounterKey{}, n)
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// uploadTree checks every path before anything is sent and names the one
// that cannot be added.
func uploadTree(paths []string, query url.Values) (files.Directory, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("add: no path given")
	}
	recursive := query.Get("recursive") == "true"
	filter, err := files.NewFilter("", nil, query.Get("hidden") == "true")
	if err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	entries := make([]files.DirEntry, 0, len(paths))
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		if st.IsDir() && !recursive {
			return nil, fmt.Errorf("add: %s is a directory: use -r to add it", p)
		}
		if st.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return nil, fmt.Errorf("add: %w", err)
			}
			f.Close()
		}
		node, err := files.NewSerialFileWithFilter(p, filter, st)
		if err != nil {
			return nil, fmt.Errorf("add %s: %w", p, err)
		}
		entries = append(entries, files.FileEntry(filepath.Base(filepath.Clean(p)), node))
	}
	return files.NewSliceDirectory(entries), nil
}

// ReaderDirectory is a tree of one file read from r, named name, for
// AddFiles: stdin, or a CAR being imported.
func ReaderDirectory(name string, r io.Reader) files.Directory {
	return files.NewSliceDirectory([]files.DirEntry{files.FileEntry(name, files.NewReaderFile(r))})
}

package client

import (
	"context"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"ipfs-cluster/internal/api"
)

// TestAddCountsFileBytes checks the upload counter against UploadSize: it
// counts the files' content, not the multipart framing, and the wrapping
// that counts leaves symlinks as symlinks.
func TestAddCountsFileBytes(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for name, size := range map[string]int{"a": 12, "sub/b": 70000, "sub/c": 0} {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}

	srv, parts := addServer(t, `{"name":"tree","cid":"`+testCid1+`","size":70012}`)

	var sent atomic.Int64
	ctx := WithUploadCounter(context.Background(), &sent)
	c := newClient(t, Config{Hosts: []string{hostOf(t, srv)}})
	err := c.Add(ctx, []string{tree}, url.Values{"recursive": {"true"}}, func(api.AddedOutput) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := UploadSize([]string{tree}, false); sent.Load() != want || want != 70012 {
		t.Fatalf("counted %d bytes, UploadSize %d, want 70012 both", sent.Load(), want)
	}
	if parts["tree/link"].kind != "application/symlink" || parts["tree/sub/b"].kind != "application/octet-stream" {
		t.Fatalf("parts sent: %v", parts)
	}
}

// TestAddRefusesTwoEntriesOfOneName: several paths are wrapped in one
// directory, so two of them with the same name are refused before
// anything is sent.
func TestAddRefusesTwoEntriesOfOneName(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a/x", "b/x"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, Config{Hosts: []string{closedPort(t)}})
	a, b := filepath.Join(dir, "a/x"), filepath.Join(dir, "b/x")
	err := c.Add(context.Background(), []string{a, b}, url.Values{"wrap-with-directory": {"true"}}, func(api.AddedOutput) error { return nil })
	if err == nil || !strings.Contains(err.Error(), a+" and "+b+` would both be named "x"`) {
		t.Fatalf("Add = %v, want the two paths named", err)
	}
}

// TestAddReadsANamedPipe: a named pipe given as a path is sent as a file
// holding what its writer wrote, as kubo adds it.
func TestAddReadsANamedPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	const content = "through a pipe\n"
	go func() {
		// Opening blocks until the add opens the other end.
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		f.WriteString(content)
		f.Close()
	}()
	// Should the add fail before opening the pipe, the writer would
	// wait for it forever: a reader opened here releases it.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	srv, got := addServer(t, `{"name":"fifo","cid":"`+testCid1+`","size":15}`)
	c := newClient(t, Config{Hosts: []string{hostOf(t, srv)}})
	if err := c.Add(context.Background(), []string{fifo}, url.Values{}, func(api.AddedOutput) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if want := (sentPart{"application/octet-stream", content}); got["fifo"] != want {
		t.Fatalf("parts sent: %q, want fifo as %q", got, want)
	}
}

// sentPart is one multipart part an add sent.
type sentPart struct{ kind, body string }

// addServer answers POST /add with reply after reading the whole upload
// into the returned map, by file name. The map is read once the add
// returned.
func addServer(t *testing.T, reply string) (*httptest.Server, map[string]sentPart) {
	parts := map[string]sentPart{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mr, err := r.MultipartReader()
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			name, _ := url.QueryUnescape(params["filename"])
			body, _ := io.ReadAll(part)
			parts[name] = sentPart{part.Header.Get("Content-Type"), string(body)}
		}
		writeStream(w, []string{reply}, "")
	}))
	t.Cleanup(srv.Close)
	return srv, parts
}

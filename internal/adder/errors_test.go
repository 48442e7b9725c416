package adder_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	blocks "github.com/ipfs/go-block-format"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
)

// countingSink counts blocks and can fail or run a hook on a given one.
type countingSink struct {
	n      int
	failAt int // 1-based; 0: never
	err    error
	hook   func(n int)
}

func (s *countingSink) Put(_ context.Context, _ blocks.Block) error {
	s.n++
	if s.hook != nil {
		s.hook(s.n)
	}
	if s.n == s.failAt {
		return s.err
	}
	return nil
}

// mustFail runs an add that must fail with an error wrapping want and
// mentioning every one of mention, without any block reaching the sink
// when noBlocks.
func mustFail(t *testing.T, opts adder.Options, add func(context.Context, *adder.Adder) (api.Cid, error), noBlocks bool, want error, mention ...string) {
	t.Helper()
	sink := &countingSink{}
	a, err := adder.New(opts, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = add(ctxTimeout(t, time.Minute), a)
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	if noBlocks && sink.n != 0 {
		t.Errorf("%d blocks reached the sink before the error", sink.n)
	}
}

// TestUnreadablePaths checks that a file or folder the add cannot read
// fails before any block is made, naming it. Root reads every file, so
// under root the test runs itself again as user nobody.
func TestUnreadablePaths(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestUnreadablePaths")
		return
	}
	dir := t.TempDir()
	rec := adder.Options{Recursive: true}
	locked := writeFile(t, filepath.Join(dir, "locked", "deep", "secret"), []byte("s"))
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	mustFail(t, rec, addPaths(filepath.Join(dir, "locked")), true, adder.ErrInvalidInput, "secret")
	lockedDir := filepath.Join(dir, "lockeddir", "sub")
	writeFile(t, filepath.Join(lockedDir, "f"), []byte("f"))
	if err := os.Chmod(lockedDir, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(lockedDir, 0o755) })
	mustFail(t, rec, addPaths(filepath.Join(dir, "lockeddir")), true, adder.ErrInvalidInput, "sub")
}

// runAsNobody runs test in a copy of this test binary as user nobody
// (uid 65534), with a temporary folder of its own, and fails unless the
// test passed there.
func runAsNobody(t *testing.T, test string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	// The temporary folders are root's: open the way down to the copy.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(tmp, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "adder.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxTimeout(t, time.Minute), bin, "-test.run", "^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "HOME="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s as nobody: %v\n%s", test, err, out)
	}
}

func TestBadPaths(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "file"), []byte("x"))
	tree := filepath.Join(dir, "tree")
	writeFile(t, filepath.Join(tree, "big"), randomBytes(7, 1<<20))
	fifoTree := filepath.Join(dir, "fifotree")
	writeFile(t, filepath.Join(fifoTree, "a"), randomBytes(8, 1<<20))
	if err := syscall.Mkfifo(filepath.Join(fifoTree, "z-fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	writeFile(t, filepath.Join(other, "file"), []byte("y"))
	longName := filepath.Join(dir, "long")
	writeFile(t, filepath.Join(longName, "a"), []byte("a"))

	rec := adder.Options{Recursive: true}
	t.Run("missing", func(t *testing.T) {
		mustFail(t, rec, addPaths(file, filepath.Join(dir, "nope")), true, adder.ErrInvalidInput, "nope")
	})
	t.Run("through a file", func(t *testing.T) {
		mustFail(t, rec, addPaths(filepath.Join(file, "child")), true, adder.ErrInvalidInput, "file/child")
	})
	t.Run("directory without recursive", func(t *testing.T) {
		mustFail(t, adder.Options{}, addPaths(file, tree), true, adder.ErrInvalidInput, tree, "recursive")
	})
	t.Run("fifo inside a directory", func(t *testing.T) {
		mustFail(t, rec, addPaths(fifoTree), true, adder.ErrInvalidInput, "z-fifo")
	})
	t.Run("same name twice", func(t *testing.T) {
		mustFail(t, rec, addPaths(file, filepath.Join(other, "file")), true, adder.ErrInvalidInput, `"file"`)
	})
	t.Run("nothing", func(t *testing.T) {
		mustFail(t, rec, addPaths(), true, adder.ErrInvalidInput)
	})
	t.Run("same path twice is added once", func(t *testing.T) {
		once := run(t, adder.Options{Wrap: true}, addPaths(file))
		twice := run(t, adder.Options{Wrap: true}, addPaths(file, filepath.Join(dir, ".", "file")))
		if once.root != twice.root {
			t.Fatalf("root %s, want %s", twice.root, once.root)
		}
	})
}

// TestTopLevelFIFO reads a named pipe given as a path like a file, as
// kubo does.
func TestTopLevelFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(9, 3<<20)
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		f.Write(data)
		f.Close()
	}()
	// Should the add fail before opening the pipe, the writer would
	// wait for it forever: a reader opened here releases it.
	t.Cleanup(func() {
		if f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	got := run(t, adder.Options{}, addPaths(p))
	want := run(t, adder.Options{}, func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
		return a.AddReader(ctx, "pipe", bytes.NewReader(data))
	})
	if got.root != want.root {
		t.Fatalf("FIFO added as %s, its content as %s", got.root, want.root)
	}
}

// part is one multipart part as boxo's MultiFileReader writes it.
type part struct {
	name, kind, content string // kind: file, dir, symlink
}

func multipartBody(t *testing.T, parts ...part) func(context.Context, *adder.Adder) (api.Cid, error) {
	return func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
		return a.AddMultipart(ctx, multipart.NewReader(bytes.NewReader(encodeParts(parts...)), "b"))
	}
}

func TestBadMultipart(t *testing.T) {
	t.Run("duplicate names", func(t *testing.T) {
		mustFail(t, adder.Options{}, multipartBody(t,
			part{"d", "dir", ""}, part{"d/a", "file", "1"}, part{"d/a", "file", "2"}),
			false, adder.ErrInvalidInput, `"a"`, "d")
	})
	t.Run("long path", func(t *testing.T) {
		mustFail(t, adder.Options{}, multipartBody(t,
			part{"d", "dir", ""}, part{"d/" + strings.Repeat("n", 5000), "file", "1"}),
			true, adder.ErrInvalidInput, "path of 5002 bytes is longer than 4096")
		run(t, adder.Options{}, multipartBody(t,
			part{"d", "dir", ""}, part{"d/" + strings.Repeat("n", 4094), "file", "1"}))
	})
	t.Run("deep path", func(t *testing.T) {
		// A few kilobytes of body must not nest thousands of folders,
		// each kept and named in the output.
		mustFail(t, adder.Options{}, multipartBody(t,
			part{strings.Repeat("a/", 3000) + "f", "file", "1"}),
			true, adder.ErrInvalidInput, "path of 6001 bytes is longer than 4096")
	})
	t.Run("bad names", func(t *testing.T) {
		// boxo's multipart parser cleans paths, so these come from other
		// files.Directory implementations.
		for _, name := range []string{"..", ".", "a/b"} {
			mustFail(t, adder.Options{}, func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
				return a.AddFiles(ctx, files.NewSliceDirectory([]files.DirEntry{
					files.FileEntry("d", files.NewSliceDirectory([]files.DirEntry{
						files.FileEntry(name, files.NewBytesFile([]byte("x"))),
					})),
				}))
			}, true, adder.ErrInvalidInput, fmt.Sprintf("%q", name))
		}
		mustFail(t, adder.Options{}, func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
			return a.AddFiles(ctx, files.NewSliceDirectory([]files.DirEntry{
				files.FileEntry(strings.Repeat("n", 5000), files.NewBytesFile([]byte("x"))),
			}))
		}, true, adder.ErrInvalidInput, "name of 5000 bytes is longer than 4096")
	})
	t.Run("cut before the closing boundary", func(t *testing.T) {
		body := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n"
		mustFail(t, adder.Options{}, func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
			return a.AddMultipart(ctx, multipart.NewReader(strings.NewReader(body), "b"))
		}, false, adder.ErrInvalidInput, "closing boundary")
	})
	t.Run("cut inside a file", func(t *testing.T) {
		// Cut in its first chunk and in a later one: neither file may
		// be reported added.
		for _, size := range []int{100, 700_000} {
			body := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut\"\r\nContent-Type: application/octet-stream\r\n\r\n" + strings.Repeat("x", size)
			var named []string
			a, err := adder.New(adder.Options{}, &countingSink{}, func(o api.AddedOutput) {
				if o.Cid.Defined() {
					named = append(named, o.Name)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.AddMultipart(ctxTimeout(t, time.Minute), multipart.NewReader(strings.NewReader(body), "b"))
			if !errors.Is(err, adder.ErrInvalidInput) || !strings.Contains(err.Error(), "cut: the upload ended before the multipart body's closing boundary") {
				t.Errorf("%d bytes cut: %v, want an error naming the cut file", size, err)
			}
			if len(named) > 0 {
				t.Errorf("%d bytes cut: the cut file was reported added as %v", size, named)
			}
		}
	})
	t.Run("a part below a file", func(t *testing.T) {
		// boxo's parser drops such a part without a word: its content
		// would be in nothing.
		for _, opts := range []adder.Options{{}, {Wrap: true}} {
			mustFail(t, opts, multipartBody(t, part{"f", "file", "x"}, part{"f/g", "file", "y"}),
				false, adder.ErrInvalidInput, "f/g: f is not a folder")
			mustFail(t, opts, multipartBody(t, part{"d", "dir", ""}, part{"d/l", "symlink", "t"}, part{"d/l/x", "file", "y"}),
				false, adder.ErrInvalidInput, "d/l/x: d/l is not a folder")
		}
	})
	t.Run("two roots without wrap", func(t *testing.T) {
		// One add pins one root: the first file would be left unpinned.
		mustFail(t, adder.Options{}, multipartBody(t, part{"a", "file", "1"}, part{"b", "file", "2"}),
			false, adder.ErrInvalidInput, `"a" and "b"`, "wrap-with-directory")
		run(t, adder.Options{Wrap: true}, multipartBody(t, part{"a", "file", "1"}, part{"b", "file", "2"}))
	})
	t.Run("no parts", func(t *testing.T) {
		mustFail(t, adder.Options{}, multipartBody(t), true, adder.ErrInvalidInput, "nothing to add")
		mustFail(t, adder.Options{Wrap: true}, multipartBody(t), true, adder.ErrInvalidInput, "nothing to add")
	})
	t.Run("not multipart", func(t *testing.T) {
		mustFail(t, adder.Options{}, func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
			return a.AddMultipart(ctx, multipart.NewReader(strings.NewReader("garbage"), "b"))
		}, true, adder.ErrInvalidInput)
	})
	t.Run("hidden parts are skipped below the top", func(t *testing.T) {
		with := run(t, adder.Options{}, multipartBody(t,
			part{"d", "dir", ""}, part{"d/.h", "file", "h"}, part{"d/v", "file", "v"}, part{"d/l", "symlink", "v"}))
		without := run(t, adder.Options{}, multipartBody(t,
			part{"d", "dir", ""}, part{"d/v", "file", "v"}, part{"d/l", "symlink", "v"}))
		if with.root != without.root {
			t.Fatalf("a hidden part changed the root: %s, want %s", with.root, without.root)
		}
		top := run(t, adder.Options{}, multipartBody(t, part{".h", "file", "h"}))
		plain := run(t, adder.Options{}, multipartBody(t, part{"h", "file", "h"}))
		if top.root != plain.root || top.events[0].Name != ".h" {
			t.Fatalf("a hidden top-level part was not added: %+v", top)
		}
	})
}

// failingReader gives n bytes, then err.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

// TestReadErrorFailsTheFile: a read that fails, at a chunk's boundary or
// inside one, fails the add naming the file and the error, also when the
// error is io.ErrUnexpectedEOF, which boxo's size chunker would take for
// the end of the file.
func TestReadErrorFailsTheFile(t *testing.T) {
	for _, broken := range []error{errors.New("disk on fire"), io.ErrUnexpectedEOF} {
		for _, n := range []int{0, 1000, 256 << 10, 3 * 256 << 10} {
			mustFail(t, adder.Options{}, func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
				return a.AddReader(ctx, "f", &failingReader{n: n, err: broken})
			}, false, adder.ErrInvalidInput, "f: ", broken.Error())
		}
	}
}

func TestAdderOnce(t *testing.T) {
	a, err := adder.New(adder.Options{}, adder.DiscardSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, time.Minute)
	if _, err := a.AddReader(ctx, "a", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddReader(ctx, "b", strings.NewReader("b")); !errors.Is(err, adder.ErrAdderUsed) {
		t.Fatalf("second add = %v, want ErrAdderUsed", err)
	}
}

// TestSinkError stops the add at the first failing Put and returns the
// sink's error.
func TestSinkError(t *testing.T) {
	boom := errors.New("disk on fire")
	sink := &countingSink{failAt: 5, err: boom}
	a, err := adder.New(adder.Options{}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.AddReader(ctxTimeout(t, time.Minute), "f", bytes.NewReader(randomBytes(10, 10<<20)))
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want the sink's", err)
	}
	if sink.n != 5 {
		t.Fatalf("%d Puts, want the add to stop at the failing 5th", sink.n)
	}
}

func TestFanOut(t *testing.T) {
	boom := errors.New("peer down")
	ok1, ok2 := &adder.MemorySink{}, &adder.MemorySink{}
	failing := &countingSink{failAt: 2, err: boom}
	f := adder.NewFanOut(ok1, failing, ok2)
	a, err := adder.New(adder.Options{}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := a.AddReader(ctxTimeout(t, time.Minute), "f", bytes.NewReader(randomBytes(12, 3<<20)))
	if err != nil {
		t.Fatalf("add failed although two destinations were fine: %v", err)
	}
	if errs := f.Errors(); errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil {
		t.Fatalf("Errors() = %v", errs)
	}
	for _, s := range []*adder.MemorySink{ok1, ok2} {
		if b, ok := s.Get(root.Cid); !ok || len(s.Blocks()) != 13 {
			t.Fatalf("a healthy destination has %d blocks, root present %v (%v)", len(s.Blocks()), ok, b)
		}
	}

	all := adder.NewFanOut(&countingSink{failAt: 1, err: boom}, &countingSink{failAt: 3, err: boom})
	a, err = adder.New(adder.Options{}, all, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddReader(ctxTimeout(t, time.Minute), "f", bytes.NewReader(randomBytes(13, 3<<20))); !errors.Is(err, boom) {
		t.Fatalf("add with every destination failed = %v, want the failures", err)
	}
}

// TestIdentityHashTooLarge adds, with the identity "hash", content whose
// blocks exceed the 128 bytes kubo allows in a CID: the add fails as kubo's
// does, naming the limit.
func TestIdentityHashTooLarge(t *testing.T) {
	a, err := adder.New(adder.Options{HashFunction: "identity"}, adder.DiscardSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.AddReader(t.Context(), "big", bytes.NewReader(randomBytes(7, 300)))
	if !errors.Is(err, adder.ErrInvalidInput) || !strings.Contains(err.Error(), "digest too large") {
		t.Fatalf("identity add of 300 bytes: %v, want the digest limit", err)
	}
}

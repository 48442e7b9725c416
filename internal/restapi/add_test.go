package restapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/car"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon/daemontest"
)

// TestAddClientKilledMidway cuts an upload in the middle: the peer pins
// nothing, keeps answering, and the goroutines the add used are gone.
func TestAddClientKilledMidway(t *testing.T) {
	p := daemontest.Start(t, nil)
	cl := p.Client(t)
	// Settle the peer's background work before counting goroutines.
	time.Sleep(500 * time.Millisecond)
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	sent := make(chan struct{})
	go func() {
		chunk := make([]byte, 256<<10)
		for i := 0; ; i++ {
			rand.Read(chunk)
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			if i == 40 { // 10 MiB on its way: kill the client
				close(sent)
			}
		}
	}()
	go func() {
		<-sent
		cancel()
	}()
	err := cl.AddFiles(ctx, client.ReaderDirectory("endless.bin", pr), url.Values{"name": {"cut"}}, func(api.AddedOutput) error { return nil })
	pw.CloseWithError(io.ErrClosedPipe)
	if err == nil {
		t.Fatal("an add cut in the middle succeeded")
	}
	var pins []api.Pin
	if err := cl.Allocations(t.Context(), api.AllType, func(p api.Pin) error { pins = append(pins, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pins) != 0 {
		t.Fatalf("the cut add left pins: %+v", pins)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			stacks := string(buf[:n])
			if strings.Contains(stacks, "adder") || strings.Contains(stacks, "restapi.(*Server).add") {
				t.Fatalf("%d goroutines before the add, %d after:\n%s", before, runtime.NumGoroutine(), stacks)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cl.ID(t.Context()); err != nil {
		t.Fatalf("the peer stopped answering: %v", err)
	}
}

// TestAddRefusesBadParameters checks that /add parameters are refused
// before the body is read, naming the parameter.
func TestAddRefusesBadParameters(t *testing.T) {
	p := daemontest.Start(t, nil)
	for query, want := range map[string]string{
		"shard=true":                          "parameter shard: not supported",
		"nocopy=true":                         "parameter nocopy: not supported",
		"format=tar":                          "unknown format",
		"hash=md4":                            "hash",
		"chunker=size-0":                      "chunker",
		"cid-version=2":                       "cid-version",
		"format=car&wrap-with-directory=true": "cannot be combined",
		"local=maybe":                         "local",
	} {
		r := do(t, p, http.MethodPost, "/add?"+query)
		if r.code != http.StatusBadRequest || !strings.Contains(string(r.body), want) {
			t.Errorf("POST /add?%s = %d %s, want 400 mentioning %q", query, r.code, r.body, want)
		}
	}
}

// slowReader hands out at most 64 KiB per read, a few milliseconds apart,
// as an upload over a slow link arrives; done is closed at its end.
type slowReader struct {
	data []byte
	done chan struct{}
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		select {
		case <-r.done:
		default:
			close(r.done)
		}
		return 0, io.EOF
	}
	time.Sleep(4 * time.Millisecond)
	n := copy(p[:min(len(p), 64<<10)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestAddRepliesWhileUploading uploads three files slowly, with progress:
// reply lines reach the client while the upload is still going, and the
// peer adds exactly the bytes sent. Replying while the upload is unread is
// what once made the server drop 256 KiB of it and add other content.
func TestAddRepliesWhileUploading(t *testing.T) {
	p := daemontest.Start(t, nil)
	cl := p.Client(t)

	want := map[string]api.Cid{}
	local, err := adder.New(adder.Options{Wrap: true}, adder.DiscardSink{}, func(o api.AddedOutput) {
		if o.Cid.Defined() {
			want[o.Name] = o.Cid
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var entries, localEntries []files.DirEntry
	var last *slowReader
	for i := range 3 {
		data := make([]byte, 3<<20)
		rand.Read(data)
		name := fmt.Sprintf("part%d.bin", i)
		last = &slowReader{data: data, done: make(chan struct{})}
		entries = append(entries, files.FileEntry(name, files.NewReaderFile(last)))
		localEntries = append(localEntries, files.FileEntry(name, files.NewBytesFile(data)))
	}
	if _, err := local.AddFiles(t.Context(), files.NewSliceDirectory(localEntries)); err != nil {
		t.Fatal(err)
	}

	got := map[string]api.Cid{}
	early := 0
	err = cl.AddFiles(t.Context(), files.NewSliceDirectory(entries), url.Values{"progress": {"true"}, "wrap-with-directory": {"true"}}, func(o api.AddedOutput) error {
		select {
		case <-last.done:
		default:
			early++
		}
		if o.Cid.Defined() {
			got[o.Name] = o.Cid
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("the peer added %v, the bytes sent make %v", got, want)
	}
	if early == 0 {
		t.Fatal("no reply line reached the client before the upload ended")
	}
}

// TestAddsReuseTheConnection sends small chunked adds one after another
// on one connection, as a client keeping it alive does: every one is
// answered. The end of a chunked upload left to net/http once made about
// one add in five panic in the server, which closed the connection.
func TestAddsReuseTheConnection(t *testing.T) {
	p := daemontest.Start(t, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.APIURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	replies := bufio.NewReader(conn)
	for i := range 40 {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		part, err := mw.CreateFormFile("file", "small.txt")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(part, "small file %d\n", i)
		mw.Close()
		// A reader of unknown length: the request goes chunked.
		req, err := http.NewRequest(http.MethodPost, p.APIURL+"/add?no-pin=true", io.MultiReader(&body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if err := req.Write(conn); err != nil {
			t.Fatalf("add %d on the kept-alive connection: send: %v", i, err)
		}
		resp, err := http.ReadResponse(replies, req)
		if err != nil {
			t.Fatalf("add %d on the kept-alive connection: %v", i, err)
		}
		reply, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Trailer.Get("X-Stream-Error") != "" {
			t.Fatalf("add %d: %d %s %q (%v)", i, resp.StatusCode, reply, resp.Trailer.Get("X-Stream-Error"), err)
		}
		// The reference's headers, but Connection: close.
		for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-cache", "X-Chunked-Output": "1"} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("add %d: %s: %q, want %q", i, k, got, v)
			}
		}
	}
}

// TestBadCarErrorReachesTheClient imports a 32 MiB CAR whose first block
// is corrupt: the peer refuses it at once, while the client is still
// uploading, and the client must read that refusal, not a connection
// reset, every time.
func TestBadCarErrorReachesTheClient(t *testing.T) {
	p := daemontest.Start(t, nil)
	cl := p.Client(t)
	data, bad := corruptCar(t, 32)
	for i := range 5 {
		err := cl.AddFiles(t.Context(), client.ReaderDirectory("bad.car", bytes.NewReader(data)), url.Values{"format": {"car"}}, func(api.AddedOutput) error { return nil })
		if err == nil || !strings.Contains(err.Error(), bad.String()) {
			t.Fatalf("import %d of a CAR with a corrupt first block: %v, want the refusal naming the block", i, err)
		}
	}
}

// TestBadCarRefusedWhileStillUploading: a client that keeps sending after
// its CAR was refused (a large upload on a slow link) gets the refusal
// once the drain's bound has passed, not when it has sent everything.
func TestBadCarRefusedWhileStillUploading(t *testing.T) {
	p := daemontest.Start(t, func(c *config.Config) {
		c.API.RestAPI.AddIdleTimeout = config.Duration(300 * time.Millisecond)
	})
	data, bad := corruptCar(t, 2)
	start := time.Now()
	// More bytes every 50 ms, for 30 s unless the request ends first.
	rest := &trickle{until: start.Add(30 * time.Second)}
	err := p.Client(t).AddFiles(t.Context(), client.ReaderDirectory("bad.car", io.MultiReader(bytes.NewReader(data), rest)),
		url.Values{"format": {"car"}}, func(api.AddedOutput) error { return nil })
	if err == nil || !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("import of a CAR with a corrupt first block: %v, want the refusal naming the block", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the refusal came after %s, while the client was still sending", took)
	}
}

// trickle sends 8 KiB of zeros every 50 ms until a deadline.
type trickle struct{ until time.Time }

func (tr *trickle) Read(p []byte) (int, error) {
	if time.Now().After(tr.until) {
		return 0, io.EOF
	}
	time.Sleep(50 * time.Millisecond)
	n := min(len(p), 8<<10)
	clear(p[:n])
	return n, nil
}

// corruptCar is a CAR of n random 1 MiB raw blocks, the first (the root)
// with one byte flipped, and that block's CID.
func corruptCar(t *testing.T, n int) ([]byte, cid.Cid) {
	var buf bytes.Buffer
	blocks := make([][]byte, n)
	cids := make([]cid.Cid, n)
	for i := range blocks {
		blocks[i] = make([]byte, 1<<20)
		rand.Read(blocks[i])
		var err error
		if cids[i], err = (cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: -1}).Sum(blocks[i]); err != nil {
			t.Fatal(err)
		}
	}
	w, err := car.NewWriter(&buf, cids[:1])
	if err != nil {
		t.Fatal(err)
	}
	blocks[0][100] ^= 1
	for i := range blocks {
		if err := w.PutRaw(cids[i], blocks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), cids[0]
}

// TestAddFromURL: a path that is a URL is fetched by the client and added
// under its last path element, with the same CID as the same bytes from a
// file; a URL that does not answer 2xx fails before anything is sent.
func TestAddFromURL(t *testing.T) {
	p := daemontest.Start(t, nil)
	cl := p.Client(t)
	content := []byte("served over http\n")
	var fetches int
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dir/page.txt" {
			http.NotFound(w, r)
			return
		}
		fetches++
		w.Write(content)
	}))
	defer web.Close()
	file := filepath.Join(t.TempDir(), "page.txt")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	add := func(path string) ([]api.AddedOutput, error) {
		var out []api.AddedOutput
		err := cl.Add(t.Context(), []string{path}, url.Values{}, func(o api.AddedOutput) error {
			out = append(out, o)
			return nil
		})
		return out, err
	}
	fromFile, err := add(file)
	if err != nil {
		t.Fatal(err)
	}
	fromURL, err := add(web.URL + "/dir/page.txt")
	if err != nil {
		t.Fatal(err)
	}
	last := fromURL[len(fromURL)-1]
	if last.Name != "page.txt" || last.Cid != fromFile[len(fromFile)-1].Cid || fetches != 1 {
		t.Fatalf("added %+v from the URL (%d fetches), want the CID of %+v", last, fetches, fromFile[len(fromFile)-1])
	}
	if _, err := add(web.URL + "/missing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a URL that answers 404: %v", err)
	}
	if n := p.DB.Len(); n != 1 {
		t.Fatalf("%d pins after the failed URL add, want 1", n)
	}
}

// TestStalledUploadTimesOut: a client that stops sending mid-upload gets
// an error after add_idle_timeout, nothing is pinned, and the peer keeps
// adding for others.
func TestStalledUploadTimesOut(t *testing.T) {
	p := daemontest.Start(t, func(c *config.Config) {
		c.API.RestAPI.AddIdleTimeout = config.Duration(300 * time.Millisecond)
	})
	cl := p.Client(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		chunk := make([]byte, 1<<20)
		rand.Read(chunk)
		pw.Write(chunk) // then nothing more, and no end
	}()
	start := time.Now()
	err := cl.AddFiles(t.Context(), client.ReaderDirectory("stalled.bin", pr), url.Values{}, func(api.AddedOutput) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "the upload sent nothing for 300ms") {
		t.Fatalf("stalled upload: %v", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the stalled upload failed after %s", took)
	}
	if n := p.DB.Len(); n != 0 {
		t.Fatalf("%d pins after a stalled add", n)
	}
	if err := cl.AddFiles(t.Context(), client.ReaderDirectory("ok.txt", strings.NewReader("fine\n")), url.Values{}, func(api.AddedOutput) error { return nil }); err != nil {
		t.Fatalf("add after the stalled one: %v", err)
	}
}

// TestAddFailingEverywhereSaysOnlySo: with the only destination's kubo
// dead, a small add (its blocks wait in the stream's buffer, so the add
// fails at its end, once the root is known) replies with its error,
// without a line saying the root was added.
func TestAddFailingEverywhereSaysOnlySo(t *testing.T) {
	p := daemontest.Start(t, nil)
	p.Kubo.Kill()
	var outs []api.AddedOutput
	err := p.Client(t).AddFiles(t.Context(), client.ReaderDirectory("f.txt", strings.NewReader("small enough to be buffered")), url.Values{},
		func(o api.AddedOutput) error {
			outs = append(outs, o)
			return nil
		})
	if err == nil || !strings.Contains(err.Error(), "every destination") {
		t.Fatalf("add with kubo dead: %v, want the failure", err)
	}
	for _, o := range outs {
		if o.Cid.Defined() {
			t.Fatalf("the failed add still told the client %s was added", o.Cid)
		}
	}
}

// TestAddFailingMidwayShowsTheFilesDone: an add that fails on its third
// file (too large for an identity CID) still lists the two files added
// before, as kubo does, then the error.
func TestAddFailingMidwayShowsTheFilesDone(t *testing.T) {
	p := daemontest.Start(t, nil)
	dir := files.NewSliceDirectory([]files.DirEntry{files.FileEntry("d", files.NewSliceDirectory([]files.DirEntry{
		files.FileEntry("a", files.NewBytesFile([]byte("a"))),
		files.FileEntry("b", files.NewBytesFile([]byte("b"))),
		files.FileEntry("c", files.NewBytesFile(bytes.Repeat([]byte("c"), 200))),
	}))})
	var names []string
	err := p.Client(t).AddFiles(t.Context(), dir, url.Values{"hash": {"identity"}},
		func(o api.AddedOutput) error {
			if o.Cid.Defined() {
				names = append(names, o.Name)
			}
			return nil
		})
	if err == nil || !strings.Contains(err.Error(), "200 bytes") {
		t.Fatalf("add: %v, want the identity block of 200 bytes refused", err)
	}
	if strings.Join(names, " ") != "d/a d/b" {
		t.Fatalf("files listed before the error: %q, want d/a d/b", names)
	}
}

// TestCarImportOutput imports CARs that kubo exported, of a file and of a
// folder: the output line names the root with the reference's fields,
// the blocks' total in bytes, the file's size (none for a folder) and the
// allocations, here this one peer.
func TestCarImportOutput(t *testing.T) {
	p := daemontest.Start(t, nil)
	cl := p.Client(t)
	dir := t.TempDir()
	content := make([]byte, 600<<10)
	rand.Read(content)
	file := filepath.Join(dir, "folder", "file.bin")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, wantSize := range map[string]uint64{file: uint64(len(content)), filepath.Dir(file): 0} {
		root, err := p.Kubo.Run(t.Context(), "add", "-Q", "-r", path)
		if err != nil {
			t.Fatal(err)
		}
		data, err := p.Kubo.Run(t.Context(), "dag", "export", strings.TrimSpace(root))
		if err != nil {
			t.Fatal(err)
		}
		rd, err := car.NewReader(strings.NewReader(data), car.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var wantBytes uint64
		for {
			b, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			wantBytes += uint64(len(b.RawData()))
		}
		var out []api.AddedOutput
		err = cl.AddFiles(t.Context(), client.ReaderDirectory("x.car", strings.NewReader(data)), url.Values{"format": {"car"}},
			func(o api.AddedOutput) error { out = append(out, o); return nil })
		if err != nil {
			t.Fatal(err)
		}
		got := out[len(out)-1]
		if got.Cid.String() != strings.TrimSpace(root) || got.Bytes != wantBytes || got.Size != wantSize ||
			len(got.Allocations) != 1 || got.Allocations[0] != p.Identity.ID {
			t.Errorf("import of %s: %+v, want root %s, bytes %d, size %d, allocated to %s",
				filepath.Base(path), got, strings.TrimSpace(root), wantBytes, wantSize, p.Identity.ID)
		}
	}
}

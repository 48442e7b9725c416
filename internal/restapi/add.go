package restapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/julienschmidt/httprouter"
	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/car"
	"ipfs-cluster/internal/cluster"
)

// addReadBuffer is the read buffer of an add's request body.
const addReadBuffer = 256 << 10

// add is POST /add: a multipart body of files (or one CAR with
// format=car) whose DAG goes to the kubo daemons of the allocated peers
// and is then pinned. Every parameter is checked before the body is read.
// The reply is NDJSON AddedOutput, or one JSON array with
// stream-channels=false.
func (s *Server) add(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	// The reply streams while the upload is still being read: progress
	// events, and one line per file as each is done. Go's HTTP/1 server
	// would otherwise silently discard up to 256 KiB of the unread upload
	// once the reply starts, and add content the user never sent. HTTP/2
	// is always full duplex.
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.writeError(w, http.StatusInternalServerError, fmt.Errorf("add: %w", err))
		return
	}
	// The drain reads the body itself: through the idle reader below,
	// each read would move the deadline past the drain's bound.
	body := r.Body
	defer drainUpload(rc, body, min(drainTimeout, s.cfg.AddIdleTimeout))
	q := r.URL.Query()
	opts, err := adder.ParseQuery(q)
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err)
		return
	}
	pinOpts, ok := s.pinOptions(w, r)
	if !ok {
		return
	}
	var params cluster.AddParams
	params.Pin = pinOpts
	flags := map[string]*bool{"local": &params.Local, "no-pin": &params.NoPin}
	for name, dst := range flags {
		if *dst, ok = s.boolParam(w, q.Get(name), name); !ok {
			return
		}
	}
	stream := true
	if v := q.Get("stream-channels"); v != "" {
		if stream, ok = s.boolParam(w, v, "stream-channels"); !ok {
			return
		}
	}
	for _, name := range []string{"shard", "nocopy"} {
		if on, ok := s.boolParam(w, q.Get(name), name); !ok {
			return
		} else if on {
			s.writeError(w, http.StatusBadRequest, fmt.Errorf("parameter %s: not supported: adds go whole to each allocated peer's repository", name))
			return
		}
	}
	format := q.Get("format")
	switch format {
	case "", "unixfs":
	case "car":
		if opts.Wrap {
			s.writeError(w, http.StatusBadRequest, errors.New("format=car cannot be combined with wrap-with-directory"))
			return
		}
	default:
		s.writeError(w, http.StatusBadRequest, fmt.Errorf("parameter format: unknown format %q (want unixfs or car)", format))
		return
	}
	// multipart reads its body 4 KiB at a time, and net/http passes each
	// read on to the socket: one syscall per 4 KiB, a fifth of a daemon's
	// CPU while it adds. A large buffer in between reads what the socket
	// holds at once.
	//
	// An upload that stops sending for AddIdleTimeout fails, so that a
	// stalled client cannot hold the add's streams to kubo forever.
	idle := &idleReader{r: r.Body, rc: rc, idle: s.cfg.AddIdleTimeout}
	r.Body = struct {
		io.Reader
		io.Closer
	}{bufio.NewReaderSize(idle, addReadBuffer), r.Body}
	mr, err := r.MultipartReader()
	if err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Errorf("add needs a multipart/form-data body: %w", err))
		return
	}

	produce := func(ctx context.Context, emit func(api.AddedOutput) error) error {
		var emitErr error
		var allocs []peer.ID
		params.Allocated = func(a []peer.ID) { allocs = a }
		// The latest output waits for the next one, so that the last,
		// the root's, can tell which destinations failed once the add
		// knows.
		var held *api.AddedOutput
		release := func() {
			if held != nil && emitErr == nil {
				emitErr = emit(*held)
			}
			held = nil
		}
		// Each added file or folder names where the pin goes, as in
		// the reference; progress events do not.
		out := func(o api.AddedOutput) {
			if o.Cid.Defined() {
				o.Allocations = allocs
			}
			release()
			held = &o
		}
		var build func(ctx context.Context, sink adder.BlockSink) (api.Cid, error)
		if format == "car" {
			build, err = carBuild(mr, &params, out)
			if err != nil {
				return err
			}
		} else {
			build = func(ctx context.Context, sink adder.BlockSink) (api.Cid, error) {
				a, err := adder.New(opts, sink, out)
				if err != nil {
					return api.Cid{}, err
				}
				return a.AddMultipart(ctx, mr)
			}
		}
		built := false // the DAG is whole: the held line is the root's
		res, err := s.cluster.Add(ctx, params, func(ctx context.Context, sink adder.BlockSink) (api.Cid, error) {
			root, err := build(ctx, sink)
			built = err == nil
			return root, err
		})
		switch {
		case err != nil && built:
			// The root's line would say it was added: the error
			// says what happened instead, failed destinations
			// included. Failed while building, the held line is
			// a file done before the failure, shown as kubo does.
			held = nil
		case held != nil && held.Cid.Defined() && len(res.Failed) > 0:
			held.FailedDestinations = res.FailedDestinations()
		}
		release()
		if err != nil {
			// net/http cancels the request once a read fails, so the
			// add may only have seen its context end.
			if idle.err != nil {
				return idle.err
			}
			return addError(err)
		}
		return emitErr
	}
	if stream {
		streamEach(s, w, r, produce)
		return
	}
	all := []api.AddedOutput{}
	err = produce(r.Context(), func(o api.AddedOutput) error {
		all = append(all, o)
		return nil
	})
	s.reply(w, all, err)
}

// idleReader fails a read that waits longer than idle for the client. It
// belongs to the handler's goroutine; err is read once the add is over.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	err  error // the timeout, once it happened
}

func (ir *idleReader) Read(p []byte) (int, error) {
	// Without a connection deadline to set (HTTP/2, a test writer), the
	// read is unbounded as before.
	_ = ir.rc.SetReadDeadline(time.Now().Add(ir.idle))
	n, err := ir.r.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		ir.err = fmt.Errorf("%w: add: the upload sent nothing for %s", cluster.ErrInvalidRequest, ir.idle)
		err = ir.err
	}
	return n, err
}

// drainTimeout bounds how long an add reads the rest of an upload it
// no longer needs (or add_idle_timeout, when shorter).
const drainTimeout = 10 * time.Second

// drainUpload reads what is left of the upload before the handler returns,
// for at most timeout. A client still uploading when an early error
// reply went out then reads that reply, instead of the connection reset
// a socket closed with unread data gets. And in full duplex, a body left
// for net/http to finish (a chunked upload's last bytes) is read at the
// same time as the next request on the connection, which panics
// (golang/go#68560).
func drainUpload(rc *http.ResponseController, body io.Reader, timeout time.Duration) {
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return
	}
	if _, err := io.Copy(io.Discard, body); err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
}

// carBuild reads the CAR that is the body's first file: its header names
// the root (exactly one) before any block moves, and the build streams its
// blocks, each checked against its CID, to the sink.
func carBuild(mr *multipart.Reader, params *cluster.AddParams, out func(api.AddedOutput)) (func(context.Context, adder.BlockSink) (api.Cid, error), error) {
	part, err := mr.NextPart()
	if err != nil {
		return nil, fmt.Errorf("%w: format=car: no file in the body: %w", cluster.ErrInvalidRequest, err)
	}
	if ctype, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); ctype == "application/x-directory" || ctype == "multipart/form-data" {
		return nil, fmt.Errorf("%w: format=car: %s is a directory, not a CAR file", cluster.ErrInvalidRequest, part.FileName())
	}
	rd, err := car.NewReader(part, car.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cluster.ErrInvalidRequest, err)
	}
	root, err := car.SingleRoot(rd.Roots())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cluster.ErrInvalidRequest, err)
	}
	params.Root = api.NewCid(root)
	name := part.FileName()
	if name == "" {
		// Named by its root, as an add of stdin names its file.
		name = root.String()
	}
	return func(ctx context.Context, sink adder.BlockSink) (api.Cid, error) {
		var bytes, size uint64
		hasRoot := false
		for {
			b, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return api.Cid{}, fmt.Errorf("%w: %w", cluster.ErrInvalidRequest, err)
			}
			if b.Cid().Equals(root) {
				hasRoot, size = true, fileSize(b)
			}
			bytes += uint64(len(b.RawData()))
			if err := sink.Put(ctx, b); err != nil {
				return api.Cid{}, err
			}
		}
		// Other blocks may be missing on purpose, for kubo to fetch as
		// dag import does, but a CAR without its root is cut short or
		// not the CAR the user meant.
		if !hasRoot {
			return api.Cid{}, fmt.Errorf("%w: car: the root block %s is not in the CAR", cluster.ErrInvalidRequest, root)
		}
		out(api.AddedOutput{Name: name, Cid: params.Root, Bytes: bytes, Size: size})
		return params.Root, nil
	}, nil
}

// fileSize is the size of the file a UnixFS root block describes, and 0
// for a folder or any other block: what the reference reports as a CAR's
// size (its bytes are the blocks' total).
func fileSize(b blocks.Block) uint64 {
	if b.Cid().Prefix().Codec != cid.DagProtobuf {
		return 0
	}
	nd, err := merkledag.DecodeProtobufBlock(b)
	if err != nil {
		return 0
	}
	fs, err := unixfs.ExtractFSNode(nd)
	if err != nil || fs.IsDir() {
		return 0
	}
	return fs.FileSize()
}

// addError marks the add errors the client caused as such, so that they
// answer 400: bad input found while reading the body.
func addError(err error) error {
	if errors.Is(err, adder.ErrInvalidInput) || errors.Is(err, adder.ErrInvalidOption) {
		return fmt.Errorf("%w: %w", cluster.ErrInvalidRequest, err)
	}
	return err
}

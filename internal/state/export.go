package state

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/stripe"
)

// ErrInvalidExport is returned by DecodeExport for input that is not a
// state export.
var ErrInvalidExport = errors.New("state: invalid export")

// maxExportLine bounds the memory a single line of an export may take.
const maxExportLine = 16 << 20

// Export writes the pinset in the reference's export format: one JSON pin
// per line (json.Marshal of the pin followed by '\n'), in CID-byte order,
// from a consistent snapshot.
//
// pending are changes committed but not yet applied (a consensus journal
// after a crash): each CID's pin replaces the stored one, or removes it
// when nil. The export is the pinset they lead to; pins only pending come
// last.
func (db *DB) Export(ctx context.Context, w io.Writer, pending map[api.Cid]*api.Pin) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	// Encoder.Encode writes exactly json.Marshal's bytes and a newline,
	// reusing its buffer.
	enc := json.NewEncoder(bw)
	seen := make(map[api.Cid]bool, len(pending))
	err := db.List(ctx, func(p api.Pin) error {
		if change, ok := pending[p.Cid]; ok {
			seen[p.Cid] = true
			if change == nil {
				return nil
			}
			p = *change
		}
		return enc.Encode(p)
	})
	if err == nil {
		added := make([]*api.Pin, 0, len(pending)-len(seen))
		for c, p := range pending {
			if !seen[c] && p != nil {
				added = append(added, p)
			}
		}
		slices.SortFunc(added, func(a, b *api.Pin) int { return strings.Compare(a.Cid.KeyString(), b.Cid.KeyString()) })
		for _, p := range added {
			if err = enc.Encode(*p); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("state: export: %w", err)
	}
	return nil
}

// DecodeExport reads an export (one JSON pin per line, or a pin spread
// over lines, as jq prints it; blank lines are skipped) and calls fn with
// each pin. It accepts the reference's exports,
// with cid either a string or {"/": "..."}. A line that is not a valid pin
// stops it with an ErrInvalidExport error naming the line and the problem;
// an error of fn stops it and is returned as is. It never panics on any
// input, and everything it accepts can be stored.
//
// Accepted pins are normalised as the state stores them: a missing
// max_depth follows mode, mode then follows max_depth (0 is direct), and a
// reference to no CID is dropped.
func DecodeExport(r io.Reader, fn func(api.Pin) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for n := 1; ; n++ {
		var err error
		line, err = readLine(br, line[:0])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			return fmt.Errorf("%w: line %d: %w", ErrInvalidExport, n, err)
		}
		if err != nil {
			return fmt.Errorf("state: import: line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		start := n
		p, err := decodePinLine(line)
		// A pin spread over several lines (an export pretty-printed by
		// jq, say) is read on until it is whole.
		for incomplete(err, line) {
			next, rerr := readLine(br, nil)
			if rerr != nil {
				break // the file ends inside the pin: err says so
			}
			n++
			if len(line)+1+len(next) > maxExportLine {
				return fmt.Errorf("%w: line %d: pin %w", ErrInvalidExport, start, errLineTooLong)
			}
			line = append(append(line, '\n'), next...)
			p, err = decodePinLine(line)
		}
		if err != nil {
			return fmt.Errorf("%w: line %d: %w", ErrInvalidExport, start, err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
}

var errLineTooLong = fmt.Errorf("longer than %d bytes", maxExportLine)

// incomplete reports whether err says that data ends before its JSON
// value does.
func incomplete(err error, data []byte) bool {
	var se *json.SyntaxError
	return errors.As(err, &se) && strings.Contains(se.Error(), "unexpected end of JSON input") &&
		se.Offset >= int64(len(bytes.TrimRight(data, " \t\r\n")))
}

// readLine appends the next line of br, without its line ending, to line.
// It returns io.EOF only when no bytes are left.
func readLine(br *bufio.Reader, line []byte) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > maxExportLine {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return bytes.TrimSuffix(line, []byte("\r")), nil
		case err != nil:
			return line, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
		return line, nil
	}
}

// decodePinLine decodes and checks one export line.
func decodePinLine(line []byte) (api.Pin, error) {
	// MaxDepth and Type shadow the pin's own fields so that a missing
	// max_depth can be told from 0, and the type named as written.
	var in struct {
		api.Pin
		MaxDepth *api.PinDepth `json:"max_depth"`
		Type     *string       `json:"type"`
	}
	if err := json.Unmarshal(line, &in); err != nil {
		// Named in JSON's words, not Go's. Only json's own error: the
		// decoders of CIDs and such say what they want themselves.
		te, ok := err.(*json.UnmarshalTypeError)
		switch {
		case !ok:
		case te.Field == "":
			err = fmt.Errorf("want one JSON object per pin, one after the other (as state export writes them), got a JSON %s", te.Value)
		default:
			// Field is a Go path through the embedded structs.
			err = fmt.Errorf("%q: invalid value: a JSON %s", te.Field[strings.LastIndex(te.Field, ".")+1:], te.Value)
		}
		return api.Pin{}, err
	}
	p := in.Pin
	if !p.Cid.Defined() {
		return api.Pin{}, errors.New("pin has no cid")
	}
	if in.Type == nil {
		return api.Pin{}, errors.New(`pin has no "type" (pin, meta-pin, clusterdag-pin or shard-pin)`)
	}
	switch p.Type = api.PinTypeFromString(*in.Type); p.Type {
	case api.DataType, api.MetaType, api.ClusterDAGType, api.ShardType:
	default:
		return api.Pin{}, fmt.Errorf("invalid pin type %q: want pin, meta-pin, clusterdag-pin or shard-pin", *in.Type)
	}
	if err := checkStorable(&p); err != nil {
		return api.Pin{}, err
	}
	switch {
	case in.MaxDepth != nil:
		p.MaxDepth = *in.MaxDepth
	case p.Mode == api.PinModeDirect:
		p.MaxDepth = 0
	default:
		p.MaxDepth = -1
	}
	p.Mode = api.PinModeRecursive
	if p.MaxDepth == 0 {
		p.Mode = api.PinModeDirect
	}
	if p.Reference != nil && !p.Reference.Defined() {
		p.Reference = nil
	}
	return p, nil
}

// Clear removes every pin, tracker record and removal record in one synced
// batch, as `state cleanup` and an import (which replaces the state) need.
// It waits for writes in progress and holds new ones until it is done;
// listings in progress keep seeing their snapshot.
func (db *DB) Clear(ctx context.Context) error {
	if db.closed.Load() {
		return ErrClosed
	}
	all := stripe.All()
	all.Lock(&db.pinMu)
	defer all.Unlock(&db.pinMu)
	all.Lock(&db.statusMu)
	defer all.Unlock(&db.statusMu)
	if err := ctx.Err(); err != nil {
		return err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	err := errors.Join(
		b.DeleteRange([]byte{prefixPin}, []byte{prefixRemoved + 1}, nil),
		b.DeleteRange([]byte{prefixSys, metaPinCount}, []byte{prefixSys, metaPinCount + 1}, nil),
		b.DeleteRange([]byte{prefixSys, metaStatusCount}, []byte{prefixSys, metaStatusCount + 1}, nil),
	)
	if err == nil {
		err = db.commit(b, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("state: clear: %w", err)
	}
	db.pinCount = [stripe.N]uint64{}
	db.pins.Store(0)
	db.statusCount = [stripe.N]statusCounts{}
	db.totalsMu.Lock()
	db.totals = statusCounts{}
	db.totalsMu.Unlock()
	return nil
}

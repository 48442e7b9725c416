package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Frame kinds (see the package documentation for the layout).
const (
	frameUnary  byte = 'R' // request of a unary call
	frameStream byte = 'S' // request of a server-streaming call
	frameValue  byte = 'V' // one value
	frameError  byte = 'E' // the call failed; ends the call
	frameEnd    byte = 'Z' // a stream ended normally
)

// Error codes carried by error frames.
const (
	codeHandler    byte = 'H' // the handler returned an error
	codeNotAllowed byte = 'A' // unknown method, or not allowed for the caller
	codeBadRequest byte = 'B' // malformed request, or one of the wrong kind
	codeBusy       byte = 'U' // too many calls from the caller in flight
)

const (
	// DefaultMaxFrameSize bounds a frame's body; a longer frame is
	// refused before its body is read.
	DefaultMaxFrameSize = 16 << 20
	// maxMethodLen bounds method names ("PinTracker.StatusAll").
	maxMethodLen = 128
	// readChunk is how much a frame buffer grows at a time beyond its
	// capacity, so that a peer announcing a large frame must send the
	// bytes before they are allocated.
	readChunk = 64 << 10
)

var (
	// ErrFrameTooLarge is returned for a frame over the size limit.
	ErrFrameTooLarge = errors.New("rpc: frame too large")
	// ErrProtocol is returned for bytes that do not follow the wire format.
	ErrProtocol = errors.New("rpc: protocol violation")
)

// frameReader reads frames from a buffered stream. The body it returns is
// valid until the next call. Not safe for concurrent use.
type frameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func (fr *frameReader) next() (kind byte, body []byte, err error) {
	kind, err = fr.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := fr.length()
	if err != nil {
		return 0, nil, err
	}
	if n > uint64(fr.max) {
		return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	size := int(n)
	if size <= cap(fr.buf) {
		fr.buf = fr.buf[:size]
		if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
			return 0, nil, truncated("frame body", err)
		}
		return kind, fr.buf, nil
	}
	fr.buf = fr.buf[:0]
	for len(fr.buf) < size {
		chunk := min(size-len(fr.buf), max(len(fr.buf), readChunk))
		fr.buf = slices.Grow(fr.buf, chunk)
		start := len(fr.buf)
		fr.buf = fr.buf[:start+chunk]
		if _, err := io.ReadFull(fr.r, fr.buf[start:]); err != nil {
			return 0, nil, truncated("frame body", err)
		}
	}
	return kind, fr.buf, nil
}

// length reads a frame length: a uvarint of at most 64 bits.
func (fr *frameReader) length() (uint64, error) {
	var n uint64
	for shift := 0; shift < 64; shift += 7 {
		b, err := fr.r.ReadByte()
		if err != nil {
			return 0, truncated("frame length", err)
		}
		if shift == 63 && b > 1 {
			break
		}
		n |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrProtocol)
}

// truncated reports an end of stream inside a frame as a protocol
// violation (only an end between frames is clean); other read errors
// (deadline, reset) pass through.
func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s cut short", ErrProtocol, what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// appendFrame appends a frame holding body to dst.
func appendFrame(dst []byte, kind byte, body []byte) []byte {
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

// appendRequest appends the body of a request frame: the method name,
// then the encoded argument.
func appendRequest(dst []byte, method string, arg []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(method)))
	dst = append(dst, method...)
	return append(dst, arg...)
}

// parseRequest splits a request body into the method name and the encoded
// argument (which aliases body).
func parseRequest(body []byte) (method string, arg []byte, err error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n == 0 || n > maxMethodLen || n > uint64(len(body)-k) {
		return "", nil, fmt.Errorf("%w: bad method name", ErrProtocol)
	}
	end := k + int(n)
	return string(body[k:end]), body[end:], nil
}

// appendErrorBody appends the body of an error frame.
func appendErrorBody(dst []byte, code byte, msg string) []byte {
	dst = append(dst, code)
	return append(dst, msg...)
}

// parseErrorBody splits an error frame body into its code and message.
func parseErrorBody(body []byte) (code byte, msg string, err error) {
	if len(body) == 0 {
		return 0, "", fmt.Errorf("%w: empty error frame", ErrProtocol)
	}
	return body[0], string(body[1:]), nil
}
